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
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
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
type RetryConfig = sinkconf.RetryConfig

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

// ColumnsConfig selects and renames the indexed columns; a renamed column is
// indexed under its new field name.
type ColumnsConfig = sinkconf.ColumnsConfig

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

// indexTemplate is a parsed index name template: "{db}" and "{table}" are
// replaced, the result lower-cased.
type indexTemplate struct{ sinkconf.Template }

// indexLiteralRE is what an index name template may hold besides its
// placeholders: an index name is lower-case and starts with a letter or digit.
var indexLiteralRE = regexp.MustCompile(`^[a-z0-9_.+-]*$`)

// parseIndexTemplate parses an index name template, refusing one that cannot
// give a valid index name.
func parseIndexTemplate(s string) (indexTemplate, error) {
	t, err := sinkconf.ParseTemplate(s, "db", "table")
	lower := strings.ToLower(s)
	if err != nil || s == "" || strings.ContainsRune("_.+-", rune(lower[0])) || !indexLiteralRE.MatchString(strings.ToLower(t.Literals())) {
		return indexTemplate{}, fmt.Errorf("%q: an index name of lower-case letters, digits, '_', '-', '.', '+' with {db} and {table}", s)
	}
	return indexTemplate{t}, nil
}

// render returns the index name of table ("db.table").
func (t *indexTemplate) render(table string) string {
	db, tbl, _ := strings.Cut(table, ".")
	return strings.ToLower(t.Render(db, tbl))
}

// Validate checks the configuration and names the first bad field. It never
// includes a password or API key.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if err := sinkconf.CheckName("name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
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
	}
	if err := c.Retry.Validate("retry"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.Tables) == 0 {
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
	f := fmt.Sprintf("tables[%d]", i)
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s.%s: %s", ErrConfig, f, field, fmt.Sprintf(format, args...))
	}
	if err := sinkconf.CheckMatch(f+".match", t.Match); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if t.Index != "" {
		if _, err := parseIndexTemplate(t.Index); err != nil {
			return bad("index", "%v", err)
		}
	}
	if t.DateFormat != "" && t.DateColumn == "" {
		return bad("date_format", "needs date_column")
	}
	if err := t.Columns.Validate(f+".columns", reservedField); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
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

// reservedField refuses the document fields Elasticsearch and the sink keep
// for themselves: "_id", "_source", "__kanal" and the like.
func reservedField(name string) error {
	if name == FieldMeta || strings.HasPrefix(name, "_") {
		return fmt.Errorf("%q: field names starting with '_' are reserved", name)
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
	return sinkconf.Patterns(c.Tables, func(t *TableConfig) string { return t.Match })
}

// LogValue keeps credentials out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", c.Name), slog.Any("urls", c.URLs), slog.String("username", c.Username),
		slog.Bool("api_key", c.APIKey != ""))
}
