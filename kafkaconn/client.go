package kafkaconn

import (
	"context"
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
		// A plaintext client of a TLS-only broker gets franz-go's own clear
		// error ("the broker requires TLS but the client is using plaintext"):
		// only TLS connections need explaining, per broker.
		opts = append(opts, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			d := &tlsconfig.Dialer{Server: "kafka broker " + host, Field: "kafka.tls", TLS: tc, Timeout: 10 * time.Second}
			return d.DialContext(ctx, network, host)
		}))
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
