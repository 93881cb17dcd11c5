package aggregators

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/kanal-cdc/kanal/internal/dbconn"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("aggregators: invalid configuration")

// Target drivers.
const (
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
)

// TargetConfig is the database the summaries live in.
type TargetConfig struct {
	// Driver is "postgres" (pgx) or "mysql" (MySQL or MariaDB, go-sql-driver).
	Driver string `yaml:"driver"`
	// DSN is the connection string: a postgres:// URL or key=value string for
	// Postgres, a go-sql-driver DSN ("user:pass@tcp(host:3306)/db") for MySQL. It
	// usually holds a password: write it as ${VAR} in the file. It never appears in
	// logs or errors.
	DSN string `yaml:"dsn"`
	// MaxConns bounds the connection pool. One connection per partition being
	// applied at a time is enough.
	MaxConns int `yaml:"max_conns"`
	// ConnectTimeout bounds connecting to the database.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// PasswordFile is a file holding the password (a mounted secret), used
	// instead of the DSN's; its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS to the database: `true` (the system's roots) or a mapping naming the
	// CA, a client certificate and key, the server name. It replaces the
	// DSN's own TLS settings (sslmode=…, tls=…), which still work without it.
	TLS tlsconfig.Config `yaml:"tls"`
}

// conn is the target's TLS and password settings; server names it in errors.
func (t *TargetConfig) conn(server string) *dbconn.Settings {
	return &dbconn.Settings{TLS: t.TLS, PasswordFile: t.PasswordFile, Field: "target", Server: t.Driver + " target " + server}
}

// Config is an aggregator: summary tables in one target database, kept by one
// consumer handler (and so one consumer group) whose offsets live in that
// database. Start from DefaultConfig.
type Config struct {
	// Name is the handler name: its consumer group is "kanal-<name>" and its
	// offsets are stored under that group. Keep it stable.
	Name string `yaml:"name"`
	// Target is the database of the summary tables.
	Target TargetConfig `yaml:"target"`
	// OffsetsTable is the table, in the target database, holding the consumer
	// offsets (shared by every aggregator using that database).
	OffsetsTable string `yaml:"offsets_table"`
	// Summaries are the summary tables. Go programs may add more to New.
	Summaries []SummaryConfig `yaml:"summaries"`
	// BatchMaxRecords bounds the records of one batch, in place of the
	// consumer's batch_max_records (consumer.BatchSizer; never more than its
	// queue_max_records). Every batch is a database transaction with a fixed
	// number of statements, whose cost per record falls as batches grow;
	// batches still hold only what has arrived, so this only matters while
	// the consumer is behind. 0: the consumer's.
	BatchMaxRecords int `yaml:"batch_max_records"`
}

// DefaultConfig returns a configuration with every default filled in; Name,
// Target.Driver, Target.DSN and the summaries remain to be set.
func DefaultConfig() Config {
	return Config{
		Target:          TargetConfig{MaxConns: 8, ConnectTimeout: 10 * time.Second},
		OffsetsTable:    "kanal_offsets",
		BatchMaxRecords: 4000,
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Validate checks the configuration (without connecting) and names the first
// bad field. It never quotes the DSN.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !nameRE.MatchString(c.Name):
		return bad("name", "%q must be 1-100 letters, digits, '_' or '-'", c.Name)
	case c.Target.Driver != DriverPostgres && c.Target.Driver != DriverMySQL:
		return bad("target.driver", "%q is not postgres or mysql", c.Target.Driver)
	case c.Target.DSN == "":
		return bad("target.dsn", "is required")
	case c.Target.MaxConns < 1:
		return bad("target.max_conns", "must be >= 1")
	case c.Target.ConnectTimeout <= 0:
		return bad("target.connect_timeout", "must be positive")
	case c.BatchMaxRecords < 0:
		return bad("batch_max_records", "must be >= 0")
	}
	if err := checkTable(c.OffsetsTable); err != nil {
		return bad("offsets_table", "%v", err)
	}
	if err := checkDSN(c.Target.Driver, c.Target.DSN); err != nil {
		return bad("target.dsn", "%v", err)
	}
	if err := c.Target.TLS.Validate("target.tls"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for i := range c.Summaries {
		if _, err := c.Summaries[i].Compile(); err != nil {
			return err
		}
	}
	return nil
}

// LogValue keeps the DSN out of logs when a Config is logged.
func (c Config) LogValue() slog.Value {
	tables := make([]string, len(c.Summaries))
	for i, s := range c.Summaries {
		tables[i] = s.Table
	}
	return slog.GroupValue(
		slog.String("name", c.Name),
		slog.String("driver", c.Target.Driver),
		slog.String("dsn", "[redacted]"),
		slog.Any("summaries", tables),
	)
}

// String never shows the DSN.
func (t TargetConfig) String() string {
	return fmt.Sprintf("%s (dsn redacted, max_conns %d)", t.Driver, t.MaxConns)
}
