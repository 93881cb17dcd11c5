package rabbitmqsink

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("rabbitmq sink: invalid configuration")

// Message body formats.
const (
	// FormatJSON is the kanal JSON change envelope (docs/formats.md).
	FormatJSON = "json"
	// FormatCanalJSON is Canal's FlatMessage, as Canal's RabbitMQ mode publishes it.
	FormatCanalJSON = "canal-json"
)

// Header names set on every message besides the AMQP properties and the
// headers named like the Kafka record's (schemas.HeaderSeq, the change's
// sequence: the dedupe key with kanal.key; schemas.HeaderOp: c, u, d, r or t;
// schemas.HeaderPos: the binlog file:pos of the change).
const (
	HeaderKey   = "kanal.key"   // the Kafka record key "<db>.<table>:<pk>" ("<db>.<table>" for a truncate)
	HeaderTable = "kanal.table" // "db.table"
	// HeaderTombstone is "true" on the message of a delete whose change record
	// was compacted away (only its tombstone was left): its body carries the key
	// only.
	HeaderTombstone = "kanal.tombstone"
)

// Config configures the RabbitMQ publisher. Start from DefaultConfig.
type Config struct {
	// Name is the handler name: metrics, logs, dead letters and the default consumer
	// group "kanal-<name>". It must stay stable.
	Name string `yaml:"name"`
	// URL is the broker, "amqp://user:password@host:5672/vhost" (amqps:// for
	// TLS). The password never appears in logs or errors.
	URL string `yaml:"url"`
	// PasswordFile is a file holding the password of the URL's user instead
	// (a mounted secret); its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS of an amqps:// URL: a mapping naming the CA (default: the system's
	// roots), a client certificate and key, the server name.
	TLS tlsconfig.Config `yaml:"tls"`
	// Exchange is where messages are published.
	Exchange string `yaml:"exchange"`
	// ExchangeType is the type the exchange is declared with: topic (default),
	// direct, fanout or headers.
	ExchangeType string `yaml:"exchange_type"`
	// Declare declares the exchange (durable) on every connection; false expects
	// it to exist.
	Declare bool `yaml:"declare"`
	// RoutingKey is the routing key template of tables without their own: "{db}",
	// "{table}", "{op}" (c, u, d, r, t), "{key}" (the record key) and "{pk}" (its
	// primary-key part; empty for a truncate) are replaced; "{{" and "}}" are
	// literal braces. Default "{db}.{table}".
	RoutingKey string `yaml:"routing_key"`
	// Format is the body: "json" (the kanal envelope, default) or "canal-json".
	Format string `yaml:"format"`
	// Mandatory publishes with the mandatory flag: a message no queue is bound
	// for comes back, and its record goes to the dead-letter topic. Default true.
	Mandatory bool `yaml:"mandatory"`
	// Window bounds the messages of one channel awaiting confirmation.
	Window int `yaml:"window"`
	// ConfirmTimeout bounds the wait for the broker's confirmation of a window.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// DialTimeout bounds connecting (TCP, TLS and the AMQP handshake).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Heartbeat is the AMQP heartbeat interval.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Retry is how a batch is retried inside Handle when the broker is down, a
	// channel or connection closes or the broker nacks: messages not yet confirmed
	// are published again after a backoff. When attempts run out Handle returns
	// the error and the Runner retries the batch with its own backoff.
	Retry RetryConfig `yaml:"retry"`
	// Tables says which tables are published and how; the first entry whose
	// Match matches "db.table" applies. Tables matching no entry are skipped.
	Tables []TableConfig `yaml:"tables"`
}

// RetryConfig is the in-handler backoff: waits double from InitialInterval up
// to MaxInterval.
type RetryConfig = sinkconf.RetryConfig

// TableConfig is the publishing rule of matching tables.
type TableConfig struct {
	// Match is a "db.table" glob (path.Match syntax: "shop.orders", "shop.*").
	Match string `yaml:"match"`
	// RoutingKey overrides Config.RoutingKey for these tables.
	RoutingKey string `yaml:"routing_key"`
}

// DefaultConfig returns a Config with every default filled in; the URL and
// tables still need to be set.
func DefaultConfig() Config {
	return Config{
		Name:           "rabbitmq",
		Exchange:       "kanal",
		ExchangeType:   "topic",
		Declare:        true,
		RoutingKey:     "{db}.{table}",
		Format:         FormatJSON,
		Mandatory:      true,
		Window:         1000,
		ConfirmTimeout: 30 * time.Second,
		DialTimeout:    10 * time.Second,
		Heartbeat:      10 * time.Second,
		Retry:          RetryConfig{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second},
	}
}

// Validate checks the configuration and names the first bad field. It never
// includes the password.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if err := sinkconf.CheckName("name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return bad("url", "required")
	case err != nil:
		return bad("url", "not a URL") // the parse error would repeat the password
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return bad("url", "scheme %q is not amqp or amqps", u.Scheme)
	case u.Host == "":
		return bad("url", "no host")
	case c.TLS.Enabled && u.Scheme != "amqps":
		return bad("url", "tls is set, so the URL must be amqps://")
	case c.PasswordFile != "" && u.User == nil:
		return bad("url", "password_file needs the user in the URL (amqp://user@host/)")
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		if err := secret.Check("password", pw, c.PasswordFile); err != nil {
			return fmt.Errorf("%w: %w (the URL holds a password)", ErrConfig, err)
		}
	}
	if err := c.TLS.Validate("tls"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch c.ExchangeType {
	case "topic", "direct", "fanout", "headers":
	default:
		return bad("exchange_type", "%q is not topic, direct, fanout or headers", c.ExchangeType)
	}
	if _, err := parseTemplate(c.RoutingKey); err != nil {
		return bad("routing_key", "%v", err)
	}
	switch {
	case c.Exchange == "" && c.Declare:
		return bad("exchange", "the default exchange cannot be declared; name one or set declare: false")
	case c.Format != FormatJSON && c.Format != FormatCanalJSON:
		return bad("format", "%q is not json or canal-json", c.Format)
	case c.Window < 1:
		return bad("window", "must be >= 1")
	case c.ConfirmTimeout <= 0:
		return bad("confirm_timeout", "must be positive")
	case c.DialTimeout <= 0:
		return bad("dial_timeout", "must be positive")
	case c.Heartbeat < 0:
		return bad("heartbeat", "must be >= 0")
	}
	if err := c.Retry.Validate("retry"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.Tables) == 0 {
		return bad("tables", "at least one table is required")
	}
	for i, t := range c.Tables {
		f := fmt.Sprintf("tables[%d]", i)
		if err := sinkconf.CheckMatch(f+".match", t.Match); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if t.RoutingKey != "" {
			if _, err := parseTemplate(t.RoutingKey); err != nil {
				return bad(f+".routing_key", "%v", err)
			}
		}
	}
	return nil
}

// TablePatterns returns the Match patterns of the configured tables, for
// consumer.Tables when registering the handler.
func (c *Config) TablePatterns() []string {
	return sinkconf.Patterns(c.Tables, func(t *TableConfig) string { return t.Match })
}

// Redacted returns the URL without its password, for logs and errors.
func (c *Config) Redacted() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// LogValue keeps the password out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.String("url", c.Redacted()),
		slog.String("exchange", c.Exchange), slog.String("format", c.Format))
}
