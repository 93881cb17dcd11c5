package memcachedsink

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("memcached sink: invalid configuration")

// Reserved member names of a stored value: the row's version and the mark of a
// tombstone, so no (renamed) column may use them.
const (
	FieldVersion = "__v"
	FieldDeleted = "__deleted"
)

// maxTombstoneTTL is the longest tombstone TTL: memcached reads expirations
// above 30 days as Unix times, and the sink sends relative ones.
const maxTombstoneTTL = 30 * 24 * time.Hour

// Config configures the memcached sink. Start from DefaultConfig.
type Config struct {
	// Name is the handler name: metrics, logs, dead letters and the default consumer
	// group "kanal-<name>". It must stay stable.
	Name string `yaml:"name"`
	// Servers are the memcached servers, "host:port". Keys are spread over them
	// by gomemcache's server selection (CRC32 of the key modulo the server count):
	// every writer and reader must list the same servers in the same order.
	Servers []string `yaml:"servers"`
	// Key is the item key template of tables without their own: "{key}" (the
	// Kafka record key "<db>.<table>:<pk>"), "{db}", "{table}" and "{pk}" (the
	// record key's primary-key part) are replaced; "{{" and "}}" are literal
	// braces. Default "{key}".
	Key string `yaml:"key"`
	// TombstoneTTL is how long a deleted row's tombstone (its version) stays
	// under the row's key. A change older than the delete arriving after that
	// (a replay) brings the row back. At most 30 days.
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
	// Timeout bounds each memcached operation (a read or a write).
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is the number of rows written at once: memcached's text
	// protocol answers one command per round trip, so a batch is applied over
	// this many connections.
	Concurrency int `yaml:"concurrency"`
	// CASAttempts bounds the read-compare-swap rounds of one row when other
	// writers keep changing it; then the batch fails and is retried.
	CASAttempts int `yaml:"cas_attempts"`
	// Tables says how each table is stored; the first entry whose Match matches
	// "db.table" applies. Tables matching no entry are skipped.
	Tables []TableConfig `yaml:"tables"`
}

// TableConfig says how the rows of matching tables are stored.
type TableConfig struct {
	// Match is a "db.table" glob (path.Match syntax: "shop.orders", "shop.*").
	Match string `yaml:"match"`
	// Key overrides Config.Key for these tables.
	Key string `yaml:"key"`
	// Columns selects and renames the stored columns.
	Columns ColumnsConfig `yaml:"columns"`
}

// ColumnsConfig selects and renames the stored columns; a renamed column is
// stored under its new member name.
type ColumnsConfig = sinkconf.ColumnsConfig

// DefaultConfig returns a Config with every default filled in; servers and
// tables still need to be set.
func DefaultConfig() Config {
	return Config{
		Name:         "memcached",
		Key:          "{key}",
		TombstoneTTL: 24 * time.Hour,
		Timeout:      time.Second,
		Concurrency:  16,
		CASAttempts:  100,
	}
}

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if err := sinkconf.CheckName("name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.Servers) == 0 {
		return bad("servers", "at least one server is required")
	}
	for i, s := range c.Servers {
		if !strings.Contains(s, ":") {
			return bad(fmt.Sprintf("servers[%d]", i), "%q is not host:port", s)
		}
	}
	if _, err := parseKeyTemplate(c.Key); err != nil {
		return bad("key", "%v", err)
	}
	switch {
	case c.TombstoneTTL < time.Second:
		return bad("tombstone_ttl", "must be at least 1s (memcached counts in seconds)")
	case c.TombstoneTTL > maxTombstoneTTL:
		return bad("tombstone_ttl", "must be at most 30 days")
	case c.Timeout <= 0:
		return bad("timeout", "must be positive")
	case c.Concurrency < 1:
		return bad("concurrency", "must be >= 1")
	case c.CASAttempts < 1:
		return bad("cas_attempts", "must be >= 1")
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
	f := fmt.Sprintf("tables[%d]", i)
	if err := sinkconf.CheckMatch(f+".match", t.Match); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if t.Key != "" {
		if _, err := parseKeyTemplate(t.Key); err != nil {
			return fmt.Errorf("%w: %s.key: %v", ErrConfig, f, err)
		}
	}
	if err := t.Columns.Validate(f+".columns", reserved); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// reserved refuses the member names the sink's own members use.
func reserved(name string) error {
	if name == FieldVersion || name == FieldDeleted {
		return fmt.Errorf("%q is reserved", name)
	}
	return nil
}

// TablePatterns returns the Match patterns of the configured tables, for
// consumer.Tables when registering the handler.
func (c *Config) TablePatterns() []string {
	return sinkconf.Patterns(c.Tables, func(t *TableConfig) string { return t.Match })
}
