package essink

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("elasticsearch sink: invalid configuration")

// FieldMeta is the member of joined documents (a parent's document with child
// rows in it) holding the versions of the rows it is made of.
const FieldMeta = "__kanal"

// Join kinds.
const (
	// JoinArray puts a parent's child rows in an array field (one-to-many).
	JoinArray = "array"
	// JoinObject puts the child row in an object field (one-to-one; with several
	// live children, the one changed last).
	JoinObject = "object"
)

// Config configures the Elasticsearch / OpenSearch sink. Start from DefaultConfig.
type Config struct {
	// Name is the handler name: metrics, logs, dead letters and the default consumer
	// group "kanal-<name>". It must stay stable.
	Name string `yaml:"name"`
	// URLs are the cluster's HTTP endpoints ("https://es-1:9200"); requests go to
	// them in turn, and to the next one when one cannot be reached.
	URLs []string `yaml:"urls"`
	// Username and Password authenticate with HTTP basic auth; APIKey (the
	// base64 "id:key" Elasticsearch returns) with "Authorization: ApiKey". None
	// appears in logs or errors.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	APIKey   string `yaml:"api_key"`
	// PasswordFile is a file holding the password instead (a mounted secret);
	// its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS of https endpoints: a mapping naming the CA (a private CA's
	// certificates; default: the system's roots), a client certificate and
	// key, the server name. https:// URLs use TLS with or without it.
	TLS tlsconfig.Config `yaml:"tls"`
	// Timeout bounds one HTTP request.
	Timeout time.Duration `yaml:"timeout"`
	// BulkMaxActions and BulkMaxBytes bound one _bulk request; a batch needing
	// more is sent as several, in order.
	BulkMaxActions int `yaml:"bulk_max_actions"`
	BulkMaxBytes   int `yaml:"bulk_max_bytes"`
	// Refresh is the _bulk refresh parameter: "" (the index's refresh interval
	// decides), "wait_for" or "true".
	Refresh string `yaml:"refresh"`
	// Retry is how items (and requests) the cluster rejects for load (429) or
	// fails with a 5xx are sent again inside Handle; when attempts run out Handle
	// returns the error and the Runner retries the batch.
	Retry RetryConfig `yaml:"retry"`
	// Tables says how each table is indexed; the first entry whose Match matches
	// "db.table" applies. Tables matching no entry are skipped.
	Tables []TableConfig `yaml:"tables"`
}

// RetryConfig is the in-handler backoff: waits double from InitialInterval up
// to MaxInterval.
type RetryConfig struct {
	// MaxAttempts bounds the tries, the first included.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialInterval is the wait before the second try.
	InitialInterval time.Duration `yaml:"initial_interval"`
	// MaxInterval caps the doubling waits.
	MaxInterval time.Duration `yaml:"max_interval"`
}

// TableConfig says how the rows of matching tables are indexed.
type TableConfig struct {
	// Match is a "db.table" glob (path.Match syntax: "shop.orders", "shop.*").
	Match string `yaml:"match"`
	// Index is the index name template: "{db}" and "{table}" are replaced, the
	// result lower-cased. Default "{db}.{table}".
	Index string `yaml:"index"`
	// DateColumn, when set, makes one index per period: the row's value of this
	// column (DATE, DATETIME or TIMESTAMP), formatted with DateFormat, is
	// appended to the index name after a '-' ("orders-2024.05"). A row whose date
	// changes moves to the other index.
	DateColumn string `yaml:"date_column"`
	// DateFormat is a Go time layout; default "2006.01.02" (daily indexes).
	DateFormat string `yaml:"date_format"`
	// Columns selects and renames the indexed columns.
	Columns ColumnsConfig `yaml:"columns"`
	// Join, when set, puts this (child) table's rows into the documents of its
	// parent table instead of documents of their own.
	Join *JoinConfig `yaml:"join"`
}

// ColumnsConfig selects and renames columns. Names are source column names.
type ColumnsConfig struct {
	// Include, when not empty, indexes only these columns.
	Include []string `yaml:"include"`
	// Exclude leaves these columns out.
	Exclude []string `yaml:"exclude"`
	// Rename maps a source column name to the document field name.
	Rename map[string]string `yaml:"rename"`
}

// JoinConfig joins a child table's rows into its parent's documents, one level
// deep: the document of parent row P gets, in Field, the child rows whose
// ParentKey columns equal P's primary key.
type JoinConfig struct {
	// Parent is the parent table, "db.table" (no glob); a table rule without a
	// date column and without a join of its own must match it.
	Parent string `yaml:"parent"`
	// Field is the parent document's field holding the child rows.
	Field string `yaml:"field"`
	// ParentKey are the child's columns holding the parent's primary key, in the
	// order of the parent's key columns.
	ParentKey []string `yaml:"parent_key"`
	// Kind is "array" (default: every child row, ordered by the child's key) or
	// "object" (one child row).
	Kind string `yaml:"kind"`
}

// DefaultConfig returns a Config with every default filled in; URLs and tables
// still need to be set.
func DefaultConfig() Config {
	return Config{
		Name:           "elasticsearch",
		Timeout:        30 * time.Second,
		BulkMaxActions: 1000,
		BulkMaxBytes:   5 << 20,
		Retry:          RetryConfig{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second},
	}
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	indexRE = regexp.MustCompile(`^[a-z0-9{][a-z0-9_.{}+-]*$`)
)

// Validate checks the configuration and names the first bad field. It never
// includes a password or API key.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if !nameRE.MatchString(c.Name) {
		return bad("name", "%q must be 1-100 letters, digits, '_' or '-'", c.Name)
	}
	if err := secret.Check("password", c.Password, c.PasswordFile); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.TLS.Validate("tls"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.URLs) == 0 {
		return bad("urls", "at least one URL is required")
	}
	for i, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(fmt.Sprintf("urls[%d]", i), "not an http(s)://host:port URL")
		}
		if c.TLS.Enabled && u.Scheme != "https" {
			return bad(fmt.Sprintf("urls[%d]", i), "tls is set, so the URL must be https://")
		}
		if u.User != nil {
			return bad(fmt.Sprintf("urls[%d]", i), "credentials belong in username/password or api_key, not the URL")
		}
	}
	switch {
	case c.APIKey != "" && (c.Username != "" || c.Password != "" || c.PasswordFile != ""):
		return bad("api_key", "set either api_key or username/password")
	case (c.Password != "" || c.PasswordFile != "") && c.Username == "":
		return bad("username", "required with a password")
	case c.Timeout <= 0:
		return bad("timeout", "must be positive")
	case c.BulkMaxActions < 1:
		return bad("bulk_max_actions", "must be >= 1")
	case c.BulkMaxBytes < 1024:
		return bad("bulk_max_bytes", "must be >= 1024")
	case c.Refresh != "" && c.Refresh != "wait_for" && c.Refresh != "true" && c.Refresh != "false":
		return bad("refresh", "%q is not \"\", wait_for, true or false", c.Refresh)
	case c.Retry.MaxAttempts < 1:
		return bad("retry.max_attempts", "must be >= 1")
	case c.Retry.InitialInterval <= 0:
		return bad("retry.initial_interval", "must be positive")
	case c.Retry.MaxInterval < c.Retry.InitialInterval:
		return bad("retry.max_interval", "must be >= initial_interval")
	case len(c.Tables) == 0:
		return bad("tables", "at least one table is required")
	}
	for i := range c.Tables {
		if err := c.validateTable(i); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateTable(i int) error {
	t := &c.Tables[i]
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: tables[%d].%s: %s", ErrConfig, i, field, fmt.Sprintf(format, args...))
	}
	db, table, ok := strings.Cut(t.Match, ".")
	if !ok || db == "" || table == "" || strings.Contains(table, ".") {
		return bad("match", "%q must look like db.table (globs allowed: shop.*)", t.Match)
	}
	if _, err := path.Match(t.Match, ""); err != nil {
		return bad("match", "%q: %v", t.Match, err)
	}
	if t.Index != "" {
		if !indexRE.MatchString(strings.ToLower(t.Index)) || strings.ContainsAny(strings.NewReplacer("{db}", "", "{table}", "").Replace(t.Index), "{}") {
			return bad("index", "%q: an index name of lower-case letters, digits, '_', '-', '.', '+' with {db} and {table}", t.Index)
		}
	}
	if t.DateFormat != "" && t.DateColumn == "" {
		return bad("date_format", "needs date_column")
	}
	if len(t.Columns.Include) > 0 && len(t.Columns.Exclude) > 0 {
		return bad("columns", "include and exclude are exclusive")
	}
	targets := map[string]string{}
	for from, to := range t.Columns.Rename {
		switch {
		case from == "" || to == "":
			return bad("columns.rename", "empty column name")
		case to == FieldMeta || strings.HasPrefix(to, "_"):
			return bad("columns.rename."+from, "%q: field names starting with '_' are reserved", to)
		}
		if other, dup := targets[to]; dup {
			return bad("columns.rename", "%q and %q both become %q", other, from, to)
		}
		targets[to] = from
	}
	if j := t.Join; j != nil {
		switch {
		case strings.ContainsAny(j.Parent, "*?[") || strings.Count(j.Parent, ".") != 1:
			return bad("join.parent", "%q must be one db.table", j.Parent)
		case j.Field == "" || strings.HasPrefix(j.Field, "_") || strings.Contains(j.Field, "."):
			return bad("join.field", "%q: a field name, not starting with '_', without '.'", j.Field)
		case len(j.ParentKey) == 0:
			return bad("join.parent_key", "the child's columns holding the parent's key are required")
		case j.Kind != "" && j.Kind != JoinArray && j.Kind != JoinObject:
			return bad("join.kind", "%q is not array or object", j.Kind)
		case t.DateColumn != "":
			return bad("join", "a joined table has no index of its own: no date_column")
		}
		p := c.rule(j.Parent)
		switch {
		case p < 0:
			return bad("join.parent", "no table rule matches %q", j.Parent)
		case c.Tables[p].Join != nil:
			return bad("join.parent", "%q is itself joined into another table (one level only)", j.Parent)
		case c.Tables[p].DateColumn != "":
			return bad("join.parent", "%q has a date_column: joined documents need one index", j.Parent)
		}
		for k := range c.Tables {
			if k != i && c.Tables[k].Join != nil && c.Tables[k].Join.Parent == j.Parent && c.Tables[k].Join.Field == j.Field {
				return bad("join.field", "%q of %s is also used by tables[%d]", j.Field, j.Parent, k)
			}
		}
	}
	return nil
}

// rule returns the index of the first table rule matching "db.table", or -1.
func (c *Config) rule(table string) int {
	for i, t := range c.Tables {
		if m, _ := path.Match(t.Match, table); m {
			return i
		}
	}
	return -1
}

// TablePatterns returns the Match patterns of the configured tables, for
// consumer.Tables when registering the handler.
func (c *Config) TablePatterns() []string {
	out := make([]string, 0, len(c.Tables))
	for _, t := range c.Tables {
		out = append(out, t.Match)
	}
	return out
}

// LogValue keeps credentials out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.Any("urls", c.URLs), slog.String("username", c.Username),
		slog.Bool("api_key", c.APIKey != ""))
}
