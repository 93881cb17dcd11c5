package tlsconfig_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

type holder struct {
	TLS tlsconfig.Config `yaml:"tls"`
}

func decode(t *testing.T, text string) (tlsconfig.Config, error) {
	t.Helper()
	var h holder
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	err := dec.Decode(&h)
	return h.TLS, err
}

// TestYAML: `tls: true|false` and the mapping (on unless enabled: false);
// unknown keys are errors, as everywhere in the file.
func TestYAML(t *testing.T) {
	for text, want := range map[string]tlsconfig.Config{
		"tls: true":                          {Enabled: true},
		"tls: false":                         {},
		"tls: {}":                            {Enabled: true},
		"tls: {ca: /a.pem, server_name: db}": {Enabled: true, CA: "/a.pem", ServerName: "db"},
		"tls: {enabled: false, ca: /a.pem}":  {CA: "/a.pem"},
		"tls:\n  cert: c.pem\n  key: k.pem\n  insecure_skip_verify: true": {Enabled: true, Cert: "c.pem", Key: "k.pem", InsecureSkipVerify: true},
	} {
		got, err := decode(t, text)
		if err != nil || got != want {
			t.Errorf("%q: got %+v, %v; want %+v", text, got, err, want)
		}
	}
	for _, text := range []string{"tls: {cafile: /a.pem}", "tls: maybe", "tls: [a]"} {
		if _, err := decode(t, text); err == nil {
			t.Errorf("%q: accepted", text)
		} else {
			t.Logf("%q: %v", text, err)
		}
	}
}

// TestClientErrorsNameFieldAndFile: every bad setting is reported with its
// key and the file, and never with the file's content.
func TestClientErrorsNameFieldAndFile(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not-a-certificate-SECRETISH"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c     tlsconfig.Config
		field string
		says  string
	}{
		{tlsconfig.Config{Enabled: true, CA: filepath.Join(dir, "missing.pem")}, "source.tls.ca", "missing.pem: no such file"},
		{tlsconfig.Config{Enabled: true, CA: junk}, "source.tls.ca", "junk.pem holds no PEM certificate"},
		{tlsconfig.Config{Enabled: true, Cert: certs.ClientCert}, "source.tls.key", "required with cert"},
		{tlsconfig.Config{Enabled: true, Key: certs.ClientKey}, "source.tls.cert", "required with key"},
		{tlsconfig.Config{Enabled: true, Cert: certs.ClientCert, Key: certs.ServerKey}, "source.tls.cert", "does not match"},
		{tlsconfig.Config{Enabled: true, Cert: junk, Key: certs.ClientKey}, "source.tls.cert", "junk.pem"},
		{tlsconfig.Config{CA: certs.CA}, "source.tls.enabled", "other TLS settings"},
	} {
		_, err := tc.c.Client("source.tls")
		var fe *tlsconfig.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tlsconfig.ErrConfig) {
			t.Errorf("%+v: got %v, want field %s", tc.c, err, tc.field)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "SECRETISH") {
			t.Errorf("%+v: %q does not say %q (or shows the file's content)", tc.c, err, tc.says)
		}
	}
	good := tlsconfig.Config{Enabled: true, CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey, ServerName: "db"}
	tc, err := good.Client("source.tls")
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "db" {
		t.Fatalf("Client: %+v, %v", tc, err)
	}
	if tc, err := (&tlsconfig.Config{}).Client("x"); tc != nil || err != nil {
		t.Fatalf("off: %v, %v", tc, err)
	}
}

func TestRemote(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:3306": false, "[::1]:6379": false, "localhost:9092": false, "db.localhost:1": false,
		"/var/run/postgresql": false, "": false,
		"10.0.0.5:3306": true, "mysql:3306": true, "kafka-0.kafka.svc:9092": true, "[2001:db8::1]:5432": true,
	} {
		if got := tlsconfig.Remote(addr); got != want {
			t.Errorf("Remote(%q) = %v", addr, got)
		}
	}
}

// TestWarnPlaintextOnce: a plaintext connection to another machine is warned
// about once per process and server, however often it is set up; loopback
// and verified TLS are not; TLS without verification is, as such.
func TestWarnPlaintextOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for range 3 {
		tlsconfig.WarnPlaintext(log, "source", "10.20.30.40:3306", "source.tls", &tlsconfig.Config{})
		tlsconfig.WarnPlaintext(log, "kafka broker", "kafka-0.test:9092", "kafka.tls", nil)
		tlsconfig.WarnPlaintext(log, "source", "127.0.0.1:3306", "source.tls", &tlsconfig.Config{})
		tlsconfig.WarnPlaintext(log, "redis instance a", "10.20.30.41:6379", "instances.a.tls", &tlsconfig.Config{Enabled: true})
		tlsconfig.WarnPlaintext(log, "redis instance b", "10.20.30.42:6379", "instances.b.tls", &tlsconfig.Config{Enabled: true, InsecureSkipVerify: true})
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d warnings, want 3 (two plaintext, one unverified):\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"10.20.30.40:3306", "kafka-0.test:9092", "10.20.30.42:6379"} {
		if !strings.Contains(lines[i], "level=WARN") || !strings.Contains(lines[i], want) {
			t.Errorf("warning %d: %s", i, lines[i])
		}
	}
	if !strings.Contains(lines[0], "set source.tls") || !strings.Contains(lines[2], "insecure_skip_verify") {
		t.Errorf("the warnings do not say what to set:\n%s", buf.String())
	}
}
