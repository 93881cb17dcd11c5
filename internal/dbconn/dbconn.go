// Package dbconn applies kanal's connection settings (tls:, password_file:) to
// the MySQL and Postgres drivers, and explains their connection errors: which
// server refused, and whether TLS is what it wants. The producer's source, the
// SQL sinks and the aggregators connect through it, so a server requiring TLS
// is reported the same way wherever it sits in the file.
package dbconn

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// Settings are a connection's settings besides its address: TLS and where the
// password comes from.
type Settings struct {
	// TLS of the connection; off leaves the driver's own (a DSN's tls= or
	// sslmode=) alone.
	TLS tlsconfig.Config
	// PasswordFile, when set, replaces the password with the file's content.
	PasswordFile string
	// Field is where the settings sit in the file ("target", "source"): errors
	// name Field+".tls" and Field+".password_file".
	Field string
	// Server names the server for people: "mysql target 10.0.0.7:3306".
	Server string
}

func (s *Settings) tlsField() string { return join(s.Field, "tls") }

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// ApplyMySQL sets mc's TLS and password from s.
func (s *Settings) ApplyMySQL(mc *mysql.Config) error {
	tc, err := s.TLS.Client(s.tlsField())
	if err != nil {
		return err
	}
	if tc != nil {
		mc.TLS = tc
		mc.TLSConfig = ""
		mc.AllowFallbackToPlaintext = false
	}
	if s.PasswordFile != "" {
		pw, err := secret.Password(join(s.Field, "password"), "", s.PasswordFile)
		if err != nil {
			return err
		}
		mc.Passwd = pw
	}
	return nil
}

// ApplyPostgres sets cc's TLS and password from s. TLS set here is the only
// attempt: the plaintext fallback of sslmode=prefer is dropped with it.
func (s *Settings) ApplyPostgres(cc *pgx.ConnConfig) error {
	tc, err := s.TLS.Client(s.tlsField())
	if err != nil {
		return err
	}
	if tc != nil {
		if tc.ServerName == "" && !tc.InsecureSkipVerify && !strings.HasPrefix(cc.Host, "/") {
			tc.ServerName = cc.Host
		}
		cc.TLSConfig = tc
		cc.Fallbacks = nil
	}
	if s.PasswordFile != "" {
		pw, err := secret.Password(join(s.Field, "password"), "", s.PasswordFile)
		if err != nil {
			return err
		}
		cc.Password = pw
	}
	return nil
}

// verifies reports whether tc checks the server's certificate: the standard
// way, or through its own callback (pgx's sslmode=verify-ca).
func verifies(tc *tls.Config) bool {
	return tc != nil && (!tc.InsecureSkipVerify || tc.VerifyPeerCertificate != nil || tc.VerifyConnection != nil)
}

// WarnMySQL warns once when mc reaches another machine without verified TLS.
func (s *Settings) WarnMySQL(log *slog.Logger, mc *mysql.Config) {
	if verifies(mc.TLS) {
		return
	}
	c := s.TLS
	if mc.TLS != nil {
		c = tlsconfig.Config{Enabled: true, InsecureSkipVerify: true}
	}
	tlsconfig.WarnPlaintext(log, s.Server, mc.Addr, s.tlsField(), &c)
}

// WarnPostgres warns once when cc may reach another machine without verified
// TLS (sslmode disable, allow or prefer, or require without a CA).
func (s *Settings) WarnPostgres(log *slog.Logger, cc *pgx.ConnConfig) {
	addr := net.JoinHostPort(cc.Host, fmt.Sprint(cc.Port))
	if strings.HasPrefix(cc.Host, "/") {
		return
	}
	verified := verifies(cc.TLSConfig)
	for _, f := range cc.Fallbacks {
		verified = verified && verifies(f.TLSConfig)
	}
	if verified {
		return
	}
	c := tlsconfig.Config{}
	if cc.TLSConfig != nil && len(cc.Fallbacks) == 0 {
		c = tlsconfig.Config{Enabled: true, InsecureSkipVerify: true}
	}
	tlsconfig.WarnPlaintext(log, s.Server, addr, s.tlsField()+" (or sslmode=verify-full)", &c)
}

// MySQLConnector returns a connector for mc whose connection errors name the
// server and say when TLS is the problem (see ExplainMySQL).
func (s *Settings) MySQLConnector(mc *mysql.Config) (driver.Connector, error) {
	c, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	return &mysqlConnector{Connector: c, s: s, addr: mc.Addr, tls: mc.TLS != nil}, nil
}

type mysqlConnector struct {
	driver.Connector
	s    *Settings
	addr string
	tls  bool
}

func (c *mysqlConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, c.s.ExplainMySQL(ctx, err, c.addr, c.tls)
	}
	return conn, nil
}

// MySQL's ER_SECURE_TRANSPORT_REQUIRED; MariaDB says 1045 (access denied)
// instead, which offersTLS then tells apart from a wrong password.
const (
	erAccessDenied            = 1045
	erSecureTransportRequired = 3159
)

// ExplainMySQL turns a MySQL connection error about TLS into a
// *tlsconfig.Error naming the server and what to set; other errors are
// returned as they are. It says when TLS is what the server wants: MySQL's "insecure transport prohibited", or
// MariaDB's "access denied" to a plaintext login on a server that offers TLS
// (require_secure_transport=ON, or a user created REQUIRE SSL).
func (s *Settings) ExplainMySQL(ctx context.Context, err error, addr string, usedTLS bool) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && !usedTLS {
		switch {
		case me.Number == erSecureTransportRequired:
			return tlsconfig.Required(s.Server, s.tlsField(), err)
		case me.Number == erAccessDenied && offersTLS(ctx, addr):
			return &tlsconfig.Error{Server: s.Server, Err: err,
				Hint: "login refused over plaintext; the server offers TLS, and refuses plaintext logins with require_secure_transport=ON or to users created REQUIRE SSL: set " +
					s.tlsField() + " (or check the user and password)"}
		}
	}
	return tlsconfig.Explain(s.Server, s.tlsField(), err)
}

// ExplainPostgres turns a Postgres connection error about TLS into a
// *tlsconfig.Error naming the server: a plaintext connection refused
// (pg_hba.conf has only hostssl lines for it) or a certificate not trusted.
// Other errors are returned as they are.
func (s *Settings) ExplainPostgres(err error) error {
	if err == nil {
		return nil
	}
	var te *tlsconfig.Error
	if errors.As(err, &te) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "28000" && strings.Contains(pe.Message, "no encryption") {
		return tlsconfig.Required(s.Server, s.tlsField()+" (or sslmode=verify-full in the DSN)", err)
	}
	return tlsconfig.Explain(s.Server, s.tlsField(), err)
}

// PostgresConnector returns a database/sql connector for cc whose connection
// errors name the server and say when TLS is the problem (ExplainPostgres).
func (s *Settings) PostgresConnector(cc *pgx.ConnConfig) driver.Connector {
	return &pgConnector{Connector: stdlib.GetConnector(*cc), s: s}
}

type pgConnector struct {
	driver.Connector
	s *Settings
}

func (c *pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, c.s.ExplainPostgres(err)
	}
	return conn, nil
}
