package kafkaconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// SchemaRegistryConfig is the Confluent-compatible schema registry (Confluent
// Schema Registry, Redpanda, Apicurio's ccompat API) of the avro-confluent
// format: the producer registers a schema per table version under the subject
// "<topic>-value", consumers look records' schema ids up there.
type SchemaRegistryConfig struct {
	// URL of the registry, http:// or https://.
	URL string `yaml:"url"`
	// User and Password, when set, are sent as HTTP basic auth.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password instead (a mounted secret);
	// its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS of an https:// URL: a mapping naming the CA (default: the system's
	// roots), a client certificate and key, the server name.
	TLS tlsconfig.Config `yaml:"tls"`
	// Compatibility, when set, is the compatibility level kanal sets on every
	// subject it registers a schema under (BACKWARD, BACKWARD_TRANSITIVE,
	// FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE). Empty leaves the
	// registry's own setting (BACKWARD unless changed).
	Compatibility string `yaml:"compatibility"`
	// Timeout bounds each request.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultRegistryTimeout is SchemaRegistryConfig.Timeout when unset.
const DefaultRegistryTimeout = 10 * time.Second

var compatibilityLevels = map[string]bool{"": true, "BACKWARD": true, "BACKWARD_TRANSITIVE": true, "FORWARD": true,
	"FORWARD_TRANSITIVE": true, "FULL": true, "FULL_TRANSITIVE": true, "NONE": true}

// Validate checks the registry settings, naming the field as
// "kafka.schema_registry.<field>".
func (r *SchemaRegistryConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: "kafka.schema_registry." + field, Problem: fmt.Sprintf(format, args...)}
	}
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == "":
		return bad("url", "required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return bad("url", "%q is not an http:// or https:// URL", r.URL)
	case u.User != nil:
		return bad("url", "put credentials in user and password, not in the URL")
	case (r.Password != "" || r.PasswordFile != "") && r.User == "":
		return bad("user", "required with password")
	case r.TLS.Enabled && u.Scheme != "https":
		return bad("url", "tls is set, so the URL must be https://")
	case !compatibilityLevels[r.Compatibility]:
		return bad("compatibility", "%q is not BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE", r.Compatibility)
	case r.Timeout < 0:
		return bad("timeout", "must not be negative")
	}
	var se *secret.FieldError
	if err := secret.Check("kafka.schema_registry.password", r.Password, r.PasswordFile); errors.As(err, &se) {
		return &FieldError{Field: se.Field, Problem: se.Problem}
	}
	var te *tlsconfig.FieldError
	if err := r.TLS.Validate("kafka.schema_registry.tls"); errors.As(err, &te) {
		return &FieldError{Field: te.Field, Problem: te.Problem}
	}
	return nil
}

// LogValue keeps the password out of logs.
func (r SchemaRegistryConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", r.URL), slog.String("user", r.User),
		slog.String("password", Redact(r.Password)), slog.String("compatibility", r.Compatibility))
}
