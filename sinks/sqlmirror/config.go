package sqlmirror

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/kanal-cdc/kanal/internal/dbconn"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// conn is the target's TLS and password settings; server names it in errors.
func (c *Config) conn(server string) *dbconn.Settings {
	return &dbconn.Settings{TLS: c.TLS, PasswordFile: c.PasswordFile, Server: c.Dialect + " target " + server}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("sqlmirror: invalid configuration")

// The dialects.
const (
	Postgres = "postgres" // PostgreSQL through pgx/v5
	MySQL    = "mysql"    // MySQL or MariaDB through go-sql-driver/mysql
	Phoenix  = "phoenix"  // Apache Phoenix through the Phoenix Query Server (Avatica)
)

// Config configures one mirror: one target database. Start from DefaultConfig.
// Mirror one source to several targets by running one handler (and so one
// consumer group) per target.
type Config struct {
	// Name is the handler name (metrics, logs, dead letters, default consumer
	// group "kanal-<name>").
	Name string `yaml:"name"`
	// Dialect is "postgres", "mysql" (also MariaDB) or "phoenix".
	Dialect string `yaml:"dialect"`
	// DSN is the target's connection string: a postgres:// URL, a
	// go-sql-driver/mysql DSN, or a Phoenix Query Server URL
	// ("http://pqs:8765"). It is a secret: it never appears in logs or errors.
	DSN string `yaml:"dsn"`
	// PasswordFile (postgres and mysql dialects) is a file holding the
	// password (a mounted secret), used instead of the DSN's; its trailing
	// line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS (postgres and mysql dialects) to the target: `true` (the system's
	// roots) or a mapping naming the CA, a client certificate and key, the
	// server name. It replaces the DSN's own TLS settings (sslmode=…, tls=…),
	// which still work without it.
	TLS tlsconfig.Config `yaml:"tls"`
	// Tables maps source tables to target tables. A change of a table not listed
	// goes to a target table named like the source table (without its
	// database), all columns copied under their names.
	Tables []TableConfig `yaml:"tables"`
	// VersionColumn is the column every target table must have (BIGINT NOT
	// NULL) holding the change sequence (Change.Seq) of the row's last write;
	// older changes never overwrite newer rows. Default "_kanal_version". A
	// source column of that name is never copied.
	VersionColumn string `yaml:"version_column"`
	// OffsetsTable is the table, created on first use, holding the consumer
	// offsets the mirror writes in the same transaction as the rows. Default
	// "kanal_offsets".
	OffsetsTable string `yaml:"offsets_table"`
	// MaxOpenConns bounds the connections to the target. Default 8.
	MaxOpenConns int `yaml:"max_open_conns"`
	// WriteServerID (mysql dialect, MariaDB targets) is the session server_id
	// the mirror's connections set, so the target's binlog events of the
	// mirror's writes carry it. A mirror in the opposite direction lists it in
	// SkipServerIDs: that is kanal's loop safety for two-way setups. 0 leaves
	// the server_id alone. Needs the SUPER or BINLOG ADMIN privilege.
	WriteServerID uint32 `yaml:"write_server_id"`
	// SkipServerIDs: changes whose Source.ServerID is listed are not applied
	// (they were written by a mirror; see WriteServerID).
	SkipServerIDs []uint32 `yaml:"skip_server_ids"`
	// CaseSensitive (phoenix dialect) keeps identifiers as written; by default
	// they are upper-cased, as Phoenix does with unquoted names. Identifiers are
	// always double-quoted.
	CaseSensitive bool `yaml:"case_sensitive"`
	// TruncateToMillis (phoenix dialect) lets DATETIME/TIMESTAMP values with
	// sub-millisecond digits be truncated to milliseconds (Avatica's
	// precision) instead of being dead-lettered.
	TruncateToMillis bool `yaml:"truncate_to_millis"`
}

// TableConfig maps one source table to a target table.
type TableConfig struct {
	// Source is the source table, "db.table".
	Source string `yaml:"source"`
	// Target is the target table, optionally schema-qualified ("public.items").
	// Default: the source table's name.
	Target string `yaml:"target"`
	// Include lists the source columns copied (default all). Primary-key
	// columns are always copied.
	Include []string `yaml:"include"`
	// Exclude lists source columns not copied.
	Exclude []string `yaml:"exclude"`
	// Rename maps source column names to target column names.
	Rename map[string]string `yaml:"rename"`
}

// DefaultConfig returns a configuration with every default filled in; Name,
// Dialect and DSN must still be set.
func DefaultConfig() Config {
	return Config{
		VersionColumn: "_kanal_version",
		OffsetsTable:  "kanal_offsets",
		MaxOpenConns:  8,
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)

func bad(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// validIdent accepts target identifiers: letters, digits, '_' and '$', and one
// optional schema qualifier.
func validIdent(s string, qualified bool) bool {
	if qualified {
		if a, b, ok := strings.Cut(s, "."); ok {
			return identRE.MatchString(a) && identRE.MatchString(b)
		}
	}
	return identRE.MatchString(s)
}

// Validate checks the configuration and names the first bad field. It never
// includes the DSN in its errors.
func (c *Config) Validate() error {
	if err := sinkconf.CheckName("name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case c.Dialect != Postgres && c.Dialect != MySQL && c.Dialect != Phoenix:
		return bad("dialect", "%q is not postgres, mysql or phoenix", c.Dialect)
	case c.DSN == "":
		return bad("dsn", "must be set")
	case !validIdent(c.VersionColumn, false):
		return bad("version_column", "%q is not a plain identifier", c.VersionColumn)
	case !validIdent(c.OffsetsTable, true):
		return bad("offsets_table", "%q is not a plain identifier", c.OffsetsTable)
	case c.MaxOpenConns < 1:
		return bad("max_open_conns", "must be >= 1, got %d", c.MaxOpenConns)
	case c.WriteServerID != 0 && c.Dialect != MySQL:
		return bad("write_server_id", "only the mysql dialect can mark its writes")
	case c.CaseSensitive && c.Dialect != Phoenix:
		return bad("case_sensitive", "only applies to the phoenix dialect")
	case c.TruncateToMillis && c.Dialect != Phoenix:
		return bad("truncate_to_millis", "only applies to the phoenix dialect")
	case c.Dialect == Phoenix && (c.TLS.Enabled || c.PasswordFile != ""):
		return bad("tls", "tls and password_file apply to the postgres and mysql dialects; Phoenix takes an https:// URL")
	}
	if err := c.TLS.Validate("tls"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Dialect == Phoenix && strings.Contains(c.OffsetsTable, "$") {
		return bad("offsets_table", "%q: Phoenix names cannot hold '$'", c.OffsetsTable)
	}
	seen := map[string]bool{}
	for i, t := range c.Tables {
		f := fmt.Sprintf("tables[%d]", i)
		db, tb, ok := strings.Cut(t.Source, ".")
		if !ok || db == "" || tb == "" || strings.Contains(tb, ".") {
			return bad(f+".source", "%q must be db.table", t.Source)
		}
		if _, err := path.Match(t.Source, ""); err != nil || strings.ContainsAny(t.Source, "*?[") {
			return bad(f+".source", "%q must name one table (no globs)", t.Source)
		}
		if seen[t.Source] {
			return bad(f+".source", "%q is mapped twice", t.Source)
		}
		seen[t.Source] = true
		if t.Target != "" && !validIdent(t.Target, true) {
			return bad(f+".target", "%q is not an identifier (schema.table allowed)", t.Target)
		}
		if len(t.Include) > 0 && len(t.Exclude) > 0 {
			return bad(f, "include and exclude are exclusive")
		}
		targets := map[string]string{}
		for src, dst := range t.Rename {
			if !validIdent(dst, false) {
				return bad(f+".rename."+src, "%q is not an identifier", dst)
			}
			if dst == c.VersionColumn {
				return bad(f+".rename."+src, "%q is the version column", dst)
			}
			if o, dup := targets[strings.ToLower(dst)]; dup {
				return bad(f+".rename", "%q and %q both map to %q", o, src, dst)
			}
			targets[strings.ToLower(dst)] = src
		}
	}
	return nil
}
