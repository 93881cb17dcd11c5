package dbconn

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// TestWarnings: a connection to another machine is warned about unless its
// TLS checks the server, whichever way the DSN or kanal's tls setting asks for
// it; unverified TLS gets its own warning.
func TestWarnings(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	for i, tc := range []struct {
		dsn  string
		tls  tlsconfig.Config
		want string // "" (no warning), "plaintext" or "insecure"
	}{
		{"postgres://u@10.9.1.%d/db?sslmode=disable", tlsconfig.Config{}, "plaintext"},
		{"postgres://u@10.9.1.%d/db", tlsconfig.Config{}, "plaintext"}, // prefer: may fall back
		{"postgres://u@10.9.1.%d/db?sslmode=require", tlsconfig.Config{}, "insecure"},
		{"postgres://u@10.9.1.%d/db?sslmode=verify-ca&sslrootcert=" + certs.CA, tlsconfig.Config{}, ""},
		{"postgres://u@10.9.1.%d/db?sslmode=verify-full&sslrootcert=" + certs.CA, tlsconfig.Config{}, ""},
		{"postgres://u@10.9.1.%d/db?sslmode=disable", tlsconfig.Config{Enabled: true, CA: certs.CA}, ""},
		{"postgres://u@127.0.0.1:%d/db?sslmode=disable", tlsconfig.Config{}, ""},
		{"u@tcp(10.9.2.%d:3306)/db", tlsconfig.Config{}, "plaintext"},
		{"u@tcp(10.9.2.%d:3306)/db?tls=skip-verify", tlsconfig.Config{}, "insecure"},
		{"u@tcp(10.9.2.%d:3306)/db?tls=true", tlsconfig.Config{}, ""},
		{"u@tcp(10.9.2.%d:3306)/db", tlsconfig.Config{Enabled: true, CA: certs.CA}, ""},
		{"u@tcp(10.9.2.%d:3306)/db", tlsconfig.Config{Enabled: true, InsecureSkipVerify: true}, "insecure"},
	} {
		dsn := fmt.Sprintf(tc.dsn, i+1) // a fresh address each: warnings are once per server
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		s := &Settings{TLS: tc.tls, Field: "target", Server: "target " + dsn}
		if strings.HasPrefix(dsn, "postgres:") {
			cc, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.ApplyPostgres(cc); err != nil {
				t.Fatal(err)
			}
			s.WarnPostgres(log, cc)
		} else {
			mc, err := mysql.ParseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.ApplyMySQL(mc); err != nil {
				t.Fatal(err)
			}
			s.WarnMySQL(log, mc)
		}
		got := ""
		switch {
		case strings.Contains(buf.String(), "plaintext"):
			got = "plaintext"
		case strings.Contains(buf.String(), "insecure_skip_verify"):
			got = "insecure"
		}
		if got != tc.want {
			t.Errorf("%s with tls %+v: warning %q, want %q:\n%s", dsn, tc.tls, got, tc.want, buf.String())
		}
	}
}
