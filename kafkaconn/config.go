package kafkaconn

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrConfig matches every validation error of this package (errors.Is).
var ErrConfig = errors.New("invalid configuration")

// FieldError is a bad setting: the field as the YAML file spells it and what is
// wrong with it. Callers wrap it with their own configuration sentinel; errors.Is
// matches ErrConfig as well.
type FieldError struct {
	Field   string // "kafka.brokers"
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrConfig) true.
func (e *FieldError) Is(target error) bool { return target == ErrConfig }

// DefaultTopicPrefix is the topic prefix when none is configured.
const DefaultTopicPrefix = "kanal"

// Config is the connection to one Kafka cluster and the namespace of kanal's topics
// in it. In the YAML file these keys sit in the `kafka:` section next to the
// producer's own settings.
type Config struct {
	// Brokers are the Kafka bootstrap servers, host:port.
	Brokers []string `yaml:"brokers"`
	// TopicPrefix prefixes every topic: "<prefix>.<db>.<table>", "<prefix>._positions".
	TopicPrefix string `yaml:"topic_prefix"`
	// SASL, when set, authenticates with PLAIN or SCRAM-SHA-256/512.
	SASL *SASLConfig `yaml:"sasl"`
	// TLS to the brokers: `true` (the system's roots) or a mapping naming the
	// CA, a client certificate and key, the server name.
	TLS tlsconfig.Config `yaml:"tls"`
	// SchemaRegistry, when set, is the schema registry of the avro-confluent
	// format (required by it).
	SchemaRegistry *SchemaRegistryConfig `yaml:"schema_registry"`
}

// SASLConfig holds SASL credentials for Kafka.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	// User is the SASL user name.
	User string `yaml:"user"`
	// Password of the SASL user. Write it as ${VAR}, or use password_file: it
	// never appears in logs or errors.
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password instead (a mounted secret);
	// its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
}

// Default returns the defaults (no brokers).
func Default() Config { return Config{TopicPrefix: DefaultTopicPrefix} }

var topicPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate checks the connection settings and names the first bad field, as
// "kafka.<field>".
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: "kafka." + field, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(c.Brokers) == 0:
		return bad("brokers", "at least one broker is required")
	case !topicPrefixRE.MatchString(c.TopicPrefix):
		return bad("topic_prefix", "%q must be letters, digits, '.', '_' or '-'", c.TopicPrefix)
	}
	for i, b := range c.Brokers {
		if b == "" {
			return bad(fmt.Sprintf("brokers[%d]", i), "empty")
		}
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return bad("sasl.mechanism", "%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
		}
		if s.User == "" {
			return bad("sasl.user", "required with sasl")
		}
		var se *secret.FieldError
		if err := secret.Check("kafka.sasl.password", s.Password, s.PasswordFile); errors.As(err, &se) {
			return &FieldError{Field: se.Field, Problem: se.Problem}
		}
	}
	var te *tlsconfig.FieldError
	if err := c.TLS.Validate("kafka.tls"); errors.As(err, &te) {
		return &FieldError{Field: te.Field, Problem: te.Problem}
	}
	if c.SchemaRegistry != nil {
		return c.SchemaRegistry.Validate()
	}
	return nil
}

// String never shows the password.
func (s SASLConfig) String() string { return s.Mechanism + " user " + s.User }

// LogValue keeps the password out of logs.
func (s SASLConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("user", s.User),
		slog.String("password", Redact(s.Password)))
}

// Redacted returns a copy of c whose secrets are replaced by "[redacted]", for
// printing a configuration.
func (c Config) Redacted() Config {
	if c.SASL != nil {
		s := *c.SASL
		s.Password = Redact(s.Password)
		c.SASL = &s
	}
	if c.SchemaRegistry != nil {
		r := *c.SchemaRegistry
		r.Password = Redact(r.Password)
		c.SchemaRegistry = &r
	}
	return c
}

// Redact returns "[redacted]" for a set secret and "" for an unset one, so that a
// printed configuration still tells the two apart.
func Redact(s string) string { return secret.Redact(s) }
