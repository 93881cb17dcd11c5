// Package tlsconfig is the TLS setting every connection of kanal shares: the MySQL
// source, Kafka and its schema registry, Redis, the SQL targets, Elasticsearch and
// RabbitMQ all take a Config and turn it into a *tls.Config here, so that `tls:`
// means the same everywhere in the file and a bad certificate file is reported the
// same way, naming the setting and the file. It also explains TLS failures (which
// server, what to set) and warns about plaintext connections to other machines.
//
// In YAML a Config is either a boolean (`tls: true`: TLS with the system's roots)
// or a mapping:
//
//	tls:
//	  ca: /etc/kanal/tls/ca.pem       # the roots that sign the server's certificate
//	  cert: /etc/kanal/tls/client.pem # a client certificate, for servers that ask for one
//	  key: /etc/kanal/tls/client.key
//	  server_name: db.internal         # when the address is not the certificate's name
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrConfig matches every error about the settings or their files (errors.Is).
var ErrConfig = errors.New("invalid TLS configuration")

// FieldError is a bad setting or file: the key as the YAML file spells it
// ("source.tls.ca") and what is wrong, never a file's content.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrConfig) true.
func (e *FieldError) Is(target error) bool { return target == ErrConfig }

func bad(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Config is the TLS settings of one connection. Writing `tls: true` is short for a
// mapping with no other key: TLS, verifying the server against the system's roots.
// A mapping turns TLS on unless it says `enabled: false`.
type Config struct {
	// Enabled turns TLS on. It is true when the tls mapping is written at all
	// (or `tls: true`); `enabled: false` keeps the rest of the mapping for later.
	Enabled bool `yaml:"enabled"`
	// CA is a PEM file of the certificate authorities that sign the server's
	// certificate; empty: the system's roots.
	CA string `yaml:"ca"`
	// Cert is a PEM file of the client certificate (mutual TLS), with its
	// chain; it needs Key.
	Cert string `yaml:"cert"`
	// Key is the PEM file of Cert's private key.
	Key string `yaml:"key"`
	// ServerName is the name the server's certificate must carry; empty: the
	// host of the address connected to.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate: the connection is
	// encrypted but the server is not authenticated, so anyone in the path can
	// read it. For trying things out only; kanal logs a warning.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// UnmarshalYAML takes a boolean or a mapping of the keys of Config; unknown keys
// are errors, as everywhere in the file.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var on bool
		if err := n.Decode(&on); err != nil {
			return fmt.Errorf("line %d: tls is true, false or a mapping (ca, cert, key, server_name, insecure_skip_verify)", n.Line)
		}
		*c = Config{Enabled: on}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: tls is true, false or a mapping (ca, cert, key, server_name, insecure_skip_verify)", n.Line)
	}
	known := yamlKeys()
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !known[k] {
			return fmt.Errorf("line %d: field %s not found in tls (known: ca, cert, key, server_name, insecure_skip_verify, enabled)", n.Content[i].Line, k)
		}
	}
	// A defined type without the method, so that Decode does not recurse.
	type plain Config
	p := plain{Enabled: true}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

func yamlKeys() map[string]bool {
	t := reflect.TypeFor[Config]()
	keys := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		keys[name] = true
	}
	return keys
}

// Validate checks the settings without reading their files (a configuration is
// checked where the files may not exist: a laptop, a CI job); Client reads them.
// field is where the settings sit in the file ("source.tls"); errors name it
// and the key.
func (c *Config) Validate(field string) error {
	switch {
	case !c.Enabled && (c.CA != "" || c.Cert != "" || c.Key != "" || c.ServerName != "" || c.InsecureSkipVerify):
		return bad(field+".enabled", "false, but other TLS settings are given: remove them or enable TLS")
	case c.Cert != "" && c.Key == "":
		return bad(field+".key", "required with cert (%s)", c.Cert)
	case c.Key != "" && c.Cert == "":
		return bad(field+".cert", "required with key (%s)", c.Key)
	}
	return nil
}

// Client returns the *tls.Config of a client connection, or nil when TLS is off,
// reading the files. field names the settings in errors, as in Validate; a file
// error names the file and never shows its content. ServerName is left empty
// unless configured: every driver kanal uses fills it in from the address it
// dials, which is what the certificate is checked against.
func (c *Config) Client(field string) (*tls.Config, error) {
	if err := c.Validate(field); err != nil || !c.Enabled {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CA != "" {
		pool, err := LoadCA(c.CA)
		if err != nil {
			return nil, bad(field+".ca", "%v", err)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, bad(field+".cert", "%s with key %s: %v", c.Cert, c.Key, fileError(err))
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// LoadCA reads a PEM file of CA certificates into a pool. The error names the file.
func LoadCA(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// fileError keeps the path and the reason of file errors (os.PathError says both)
// and tidies the rest.
func fileError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
