package kafkaconn

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"
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
	// TLS settings for an https:// URL.
	TLS RegistryTLS `yaml:"tls"`
	// Compatibility, when set, is the compatibility level kanal sets on every
	// subject it registers a schema under (BACKWARD, BACKWARD_TRANSITIVE,
	// FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE). Empty leaves the
	// registry's own setting (BACKWARD unless changed).
	Compatibility string `yaml:"compatibility"`
	// Timeout bounds each request.
	Timeout time.Duration `yaml:"timeout"`
}

// RegistryTLS configures TLS towards the registry.
type RegistryTLS struct {
	// CAFile is a PEM file of CA certificates to trust instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (PEM), for registries that
	// require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify turns off certificate verification (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
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
	case r.Password != "" && r.User == "":
		return bad("user", "required with password")
	case (r.TLS.CertFile == "") != (r.TLS.KeyFile == ""):
		return bad("tls", "cert_file and key_file go together")
	case !compatibilityLevels[r.Compatibility]:
		return bad("compatibility", "%q is not BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE", r.Compatibility)
	case r.Timeout < 0:
		return bad("timeout", "must not be negative")
	}
	return nil
}

// LogValue keeps the password out of logs.
func (r SchemaRegistryConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", r.URL), slog.String("user", r.User),
		slog.String("password", Redact(r.Password)), slog.String("compatibility", r.Compatibility))
}
