package tlsconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// Dialer connects to one server, with TLS when TLS is set, and explains the
// failures a user fixes in the settings: the handshake's (certificate not
// trusted, client certificate refused) and a first read that fails because
// the server wanted the other kind of connection.
type Dialer struct {
	// Server names the server for people: "redis instance users (10.0.0.9:6379)".
	Server string
	// Field is the TLS setting that fixes it ("instances.users.tls").
	Field string
	// TLS is the client configuration; nil dials plaintext. An empty
	// ServerName is set to the dialed host.
	TLS *tls.Config
	// Timeout bounds the TCP connect (0: none but the context's).
	Timeout time.Duration
}

// DialContext dials addr.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: d.Timeout, KeepAlive: 30 * time.Second}
	if d.TLS == nil {
		conn, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &firstRead{Conn: conn, explain: d.plaintextRead, tlsAnswer: d.tlsAnswer}, nil
	}
	tc := d.TLS.Clone()
	if tc.ServerName == "" {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = h
		}
	}
	conn, err := (&tls.Dialer{NetDialer: nd, Config: tc}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, Explain(d.Server, d.Field, err)
	}
	return &firstRead{Conn: conn, explain: func(err error) error { return Explain(d.Server, d.Field, err) }}, nil
}

// plaintextRead explains a plaintext connection the server dropped before
// answering anything: a TLS-only port reads the first request as a broken
// handshake and hangs up.
func (d *Dialer) plaintextRead(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return &Error{Server: d.Server, Err: err,
			Hint: "the server closed the connection before answering; it may accept only TLS (set " + d.Field + ")"}
	}
	return err
}

// tlsAnswer is the error of a plaintext connection whose server answered
// with a TLS record (an alert about our "handshake"): it speaks only TLS.
func (d *Dialer) tlsAnswer() error {
	return &Error{Server: d.Server, Err: errors.New("the answer is a TLS record"),
		Hint: "the server speaks TLS on this port and this connection is plaintext: set " + d.Field}
}

// firstRead passes the error of a connection's first read, before any byte
// arrived, through explain. With TLS 1.3 a server refusing the client
// certificate says so only then, after the handshake. On plaintext
// connections (tlsAnswer set) a first answer that is a TLS record fails too.
type firstRead struct {
	net.Conn
	explain   func(error) error
	tlsAnswer func() error
	got       bool
}

func (c *firstRead) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.got {
		c.got = true
		// A TLS record starts with its type (0x15 alert, 0x16 handshake) and
		// the major version 3; no plaintext protocol kanal speaks does.
		if c.tlsAnswer != nil && n >= 2 && (p[0] == 0x15 || p[0] == 0x16) && p[1] == 0x03 {
			return 0, outer{c.tlsAnswer()}
		}
	}
	if err != nil && !c.got {
		if e := c.explain(err); e != err {
			err = outer{e}
		}
	}
	return n, err
}

// outer holds an explained error one level down: go-redis returns
// errors.Unwrap of a failed connection setup's error, which then is the
// explanation rather than the bare network error under it.
type outer struct{ error }

func (o outer) Unwrap() error { return o.error }
