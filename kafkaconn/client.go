package kafkaconn

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ClientOptions returns the franz-go options that connect to the configured brokers
// (seeds, TLS, SASL). Every client of one installation starts from them, so that all
// connect the same way.
//
// Validate reads the TLS files and the password file first; should one become
// unreadable afterwards, the clients fail to connect with that error instead.
func (c *Config) ClientOptions() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	tc, err := c.TLS.Client("kafka.tls")
	switch {
	case err != nil:
		opts = append(opts, kgo.Dialer(func(context.Context, string, string) (net.Conn, error) { return nil, err }))
	case tc != nil:
		// franz-go sets ServerName to each broker's host when it is empty.
		opts = append(opts, kgo.Dialer((&dialer{tc: tc}).dial))
	}
	if s := c.SASL; s != nil {
		user, pwField, value, file := s.User, "kafka.sasl.password", s.Password, s.PasswordFile
		password := func() (string, error) { return secret.Password(pwField, value, file) }
		switch s.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Plain(func(context.Context) (plain.Auth, error) {
				pw, err := password()
				return plain.Auth{User: user, Pass: pw}, err
			})))
		case "SCRAM-SHA-256", "SCRAM-SHA-512":
			auth := func(context.Context) (scram.Auth, error) {
				pw, err := password()
				return scram.Auth{User: user, Pass: pw}, err
			}
			if s.Mechanism == "SCRAM-SHA-256" {
				opts = append(opts, kgo.SASL(scram.Sha256(auth)))
			} else {
				opts = append(opts, kgo.SASL(scram.Sha512(auth)))
			}
		}
	}
	return opts
}

// dialer connects to one broker with TLS and explains the failures users can
// fix in the kafka section: which broker, and what about TLS went wrong. (A
// plaintext client of a TLS-only broker gets franz-go's own clear error:
// "the broker requires TLS but the client is using plaintext".)
type dialer struct{ tc *tls.Config }

func (d *dialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 20 * time.Second}
	tc := d.tc.Clone()
	if tc.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			tc.ServerName = h
		}
	}
	conn, err := (&tls.Dialer{NetDialer: nd, Config: tc}).DialContext(ctx, network, host)
	if err != nil {
		return nil, tlsconfig.Explain("kafka broker "+host, "kafka.tls", err)
	}
	return &tlsConn{Conn: conn, host: host}, nil
}

// WarnPlaintext logs a warning, once per process and broker, for each broker
// off this machine that is reached without TLS.
func (c *Config) WarnPlaintext(log *slog.Logger) {
	for _, b := range c.Brokers {
		tlsconfig.WarnPlaintext(log, "kafka broker", b, "kafka.tls", &c.TLS)
	}
}

// Logger passes franz-go's warnings and errors to log, prefixed "kafka: ".
func Logger(log *slog.Logger) kgo.Logger { return kgoLogger{log} }

type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelInfo:
		lv = slog.LevelInfo
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}

// tlsConn is a TLS connection to a broker. With TLS 1.3 a server that refuses
// the client certificate says so only after the handshake, in answer to the
// first request: that first read's error is explained as the handshake's is.
type tlsConn struct {
	net.Conn
	host string
	read bool
}

func (c *tlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read = true
	}
	if err != nil && !c.read {
		err = tlsconfig.Explain("kafka broker "+c.host, "kafka.tls", err)
	}
	return n, err
}
