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
		return &firstRead{Conn: conn, explain: d.plaintextRead}, nil
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

// firstRead passes the error of a connection's first read, before any byte
// arrived, through explain. With TLS 1.3 a server refusing the client
// certificate says so only then, after the handshake.
type firstRead struct {
	net.Conn
	explain func(error) error
	got     bool
}

func (c *firstRead) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.got = true
	}
	if err != nil && !c.got {
		err = c.explain(err)
	}
	return n, err
}
