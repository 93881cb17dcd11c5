package redissink

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("redis sink: invalid configuration")

// The row layouts.
const (
	// LayoutHash stores a row as a hash with one field per (non-NULL) column.
	LayoutHash = "hash"
	// LayoutJSON stores a row as a string holding one JSON object.
	LayoutJSON = "json"
)

// Reserved field names: they hold the row's version, its NULL columns and its
// secondary-set memberships, so no (renamed) column may use them.
const (
	FieldVersion = "__v"
	FieldNulls   = "__nulls"
	FieldSets    = "__sets"
)

// Config configures the Redis materialiser. Start from DefaultConfig.
type Config struct {
	// Name is the handler name: metrics, logs, dead letters and the default consumer
	// group "kanal-<name>". It must stay stable.
	Name string `yaml:"name"`
	// Instances are the Redis servers (or databases of one server) rows may go to,
	// by a name tables refer to.
	Instances map[string]InstanceConfig `yaml:"instances"`
	// DefaultInstances is where tables without their own instances go; when empty
	// and exactly one instance is configured, that one.
	DefaultInstances []string `yaml:"default_instances"`
	// KeyPrefix is put in front of every row key of tables without their own.
	KeyPrefix string `yaml:"key_prefix"`
	// TombstonePrefix is put in front of a deleted row's key to name its tombstone.
	TombstonePrefix string `yaml:"tombstone_prefix"`
	// TombstoneTTL is how long a delete's version is kept after the delete, also
	// when the row is created again meanwhile. Only batches without Kafka
	// coordinates (ApplyChanges) check it; for them a replay of the row's older
	// changes arriving after that would resurrect it, so it must cover their longest
	// replay window. 0 keeps tombstones forever (a re-create then removes its row's).
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
	// PipelineMax bounds the row changes sent in one pipeline round trip of a batch
	// without Kafka coordinates (as script calls of up to 64 changes each). A
	// fenced batch is one transaction per instance, whatever its size.
	PipelineMax int `yaml:"pipeline_max"`
	// RingVNodes is the number of points each instance gets on a hash ring.
	RingVNodes int `yaml:"ring_vnodes"`
	// Tables says how each table is stored; the first entry whose Match matches
	// "db.table" applies. Tables matching no entry are skipped.
	Tables []TableConfig `yaml:"tables"`
}

// InstanceConfig is one Redis server, and the database used on it.
type InstanceConfig struct {
	// Addr is "host:port".
	Addr string `yaml:"addr"`
	// Username and Password authenticate (ACL user, or just a password with
	// requirepass). The password never appears in logs or errors.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password instead (a mounted secret);
	// its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// DB is the database number.
	DB int `yaml:"db"`
	// TLS to the instance (Redis' tls-port): `true` (the system's roots) or a
	// mapping naming the CA, a client certificate and key (tls-auth-clients),
	// the server name.
	TLS tlsconfig.Config `yaml:"tls"`
	// PoolSize bounds the connections to this instance (0: go-redis' default,
	// 10 per CPU).
	PoolSize     int           `yaml:"pool_size"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// LogValue keeps the password out of logs.
func (c InstanceConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", c.Addr), slog.Int("db", c.DB), slog.String("username", c.Username),
		slog.Bool("tls", c.TLS.Enabled))
}

// Buffer sizes of each connection to an instance (see ClientOptions).
const (
	writeBufferSize = 64 << 10
	readBufferSize  = 32 << 10
)

// ClientOptions returns the go-redis options that reach the instance named
// name with its address, database, credentials (the password file read now)
// and TLS; connection errors about TLS name the instance. Applications reading
// what the handler wrote can connect the same way.
func (c InstanceConfig) ClientOptions(name string) (*redis.Options, error) {
	field := "instances." + name
	pw, err := secret.Password(field+".password", c.Password, c.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	tc, err := c.TLS.Client(field + ".tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	d := &tlsconfig.Dialer{Server: fmt.Sprintf("redis instance %s (%s)", name, c.Addr), Field: field + ".tls", TLS: tc, Timeout: c.DialTimeout}
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second // go-redis' default
	}
	return &redis.Options{
		Addr:         c.Addr,
		Username:     c.Username,
		Password:     pw,
		DB:           c.DB,
		PoolSize:     c.PoolSize,
		DialTimeout:  c.DialTimeout,
		ReadTimeout:  c.ReadTimeout,
		WriteTimeout: c.WriteTimeout,
		// TLS is the dialer's, so that its errors name the instance.
		Dialer: d.DialContext,
		// go-redis would otherwise send CLIENT SETINFO, which Redis < 7.2
		// rejects (harmlessly, but with a log line per connection).
		DisableIdentity: true,
		// A fenced batch is one MULTI … EXEC of ~300 bytes a row: through
		// go-redis' old 4 KiB buffer it took a write system call per ~13 rows, ~10 %
		// of bench 4b's consumer CPU. 64 KiB (~200 rows a write) cost least in
		// BenchmarkServerCostMix, less than 256 KiB too, which leaves Redis idle
		// until the whole batch is encoded (docs/bench.md, round 7f). Replies are
		// short ("+QUEUED", integers), so reads keep 32 KiB.
		WriteBufferSize: writeBufferSize,
		ReadBufferSize:  readBufferSize,
	}, nil
}

// TableConfig says where and how the rows of matching tables are stored.
type TableConfig struct {
	// Match is a "db.table" glob (path.Match syntax: "shop.orders", "shop.*").
	Match string `yaml:"match"`
	// Instances are the instance names the table's rows go to: one for a table of
	// its own, several for a consistent-hash ring over them. Empty: DefaultInstances.
	Instances []string `yaml:"instances"`
	// Layout is "hash" (default) or "json".
	Layout string `yaml:"layout"`
	// KeyPrefix overrides Config.KeyPrefix for this table; nil inherits it.
	KeyPrefix *string `yaml:"key_prefix"`
	// Columns selects and renames the stored columns.
	Columns ColumnsConfig `yaml:"columns"`
	// Sets are secondary sets the table's rows are members of.
	Sets []SetConfig `yaml:"sets"`
}

// ColumnsConfig selects and renames the stored columns; a renamed column is
// stored under its new field name.
type ColumnsConfig = sinkconf.ColumnsConfig

// SetConfig is one secondary set: every row is a member of the set named by Key
// rendered with the row's values. Templates refer to source columns as "{column}";
// "{{" and "}}" are literal braces. A row with a NULL in any referenced column is in
// no set of this kind.
type SetConfig struct {
	// Key names the set, e.g. "user:{user_id}:orders". It is used as written: the
	// table's key prefix is not added.
	Key string `yaml:"key"`
	// Member is the member, e.g. "{id}"; empty: the row's primary key as it appears
	// in the record key (composite keys comma-joined and escaped).
	Member string `yaml:"member"`
}

// DefaultConfig returns a Config with every default filled in; instances and tables
// still need to be set.
func DefaultConfig() Config {
	return Config{
		Name:            "redis",
		TombstonePrefix: "__kanal:tomb:",
		TombstoneTTL:    24 * time.Hour,
		PipelineMax:     1000,
		RingVNodes:      160,
	}
}

// Validate checks the configuration and names the first bad field. It never
// includes a password.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if err := sinkconf.CheckName("name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.Instances) == 0 {
		return bad("instances", "at least one instance is required")
	}
	names := make([]string, 0, len(c.Instances))
	for n := range c.Instances {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		in := c.Instances[n]
		f := "instances." + n
		switch {
		case sinkconf.CheckName(f, n) != nil:
			return bad(f, "instance name must be 1-100 letters, digits, '_' or '-'")
		case in.Addr == "":
			return bad(f+".addr", "required")
		case !strings.Contains(in.Addr, ":"):
			return bad(f+".addr", "%q is not host:port", in.Addr)
		case in.DB < 0:
			return bad(f+".db", "must be >= 0")
		case in.PoolSize < 0:
			return bad(f+".pool_size", "must be >= 0")
		case in.DialTimeout < 0 || in.ReadTimeout < 0 || in.WriteTimeout < 0:
			return bad(f, "timeouts must be >= 0")
		}
		if err := secret.Check(f+".password", in.Password, in.PasswordFile); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if err := in.TLS.Validate(f + ".tls"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := c.checkInstances("default_instances", c.DefaultInstances); err != nil {
		return err
	}
	switch {
	case c.TombstonePrefix == "":
		return bad("tombstone_prefix", "required (tombstones must not share the row keys' names)")
	case c.TombstonePrefix == c.KeyPrefix:
		return bad("tombstone_prefix", "must differ from key_prefix")
	case c.TombstoneTTL < 0:
		return bad("tombstone_ttl", "must be >= 0 (0 keeps tombstones forever)")
	case c.TombstoneTTL > 0 && c.TombstoneTTL < time.Millisecond:
		return bad("tombstone_ttl", "must be at least 1ms")
	case c.PipelineMax < 1:
		return bad("pipeline_max", "must be >= 1")
	case c.RingVNodes < 1:
		return bad("ring_vnodes", "must be >= 1")
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

func (c *Config) checkInstances(field string, names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := c.Instances[n]; !ok {
			return fmt.Errorf("%w: %s: unknown instance %q", ErrConfig, field, n)
		}
		if seen[n] {
			return fmt.Errorf("%w: %s: instance %q listed twice", ErrConfig, field, n)
		}
		seen[n] = true
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
	if len(t.Instances) == 0 && c.defaultInstances() == nil {
		return bad("instances", "required: no default_instances and more than one instance configured")
	}
	if err := c.checkInstances(f+".instances", t.Instances); err != nil {
		return err
	}
	switch t.Layout {
	case "", LayoutHash, LayoutJSON:
	default:
		return bad("layout", "%q is not hash or json", t.Layout)
	}
	prefix := c.KeyPrefix
	if t.KeyPrefix != nil {
		prefix = *t.KeyPrefix
	}
	if prefix == c.TombstonePrefix {
		return bad("key_prefix", "must differ from tombstone_prefix")
	}
	if err := t.Columns.Validate(f+".columns", reserved); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for j, s := range t.Sets {
		sf := fmt.Sprintf("sets[%d]", j)
		kt, err := parseTemplate(s.Key)
		if err != nil {
			return bad(sf+".key", "%v", err)
		}
		if len(kt.cols) == 0 {
			return bad(sf+".key", "%q refers to no column: every row would be in the same set", s.Key)
		}
		if s.Member != "" {
			if _, err := parseTemplate(s.Member); err != nil {
				return bad(sf+".member", "%v", err)
			}
		}
	}
	return nil
}

// defaultInstances returns where tables without instances go, or nil.
func (c *Config) defaultInstances() []string {
	if len(c.DefaultInstances) > 0 {
		return c.DefaultInstances
	}
	if len(c.Instances) == 1 {
		for n := range c.Instances {
			return []string{n}
		}
	}
	return nil
}

// TablePatterns returns the Match patterns of the configured tables, for
// consumer.Tables when registering the handler.
func (c *Config) TablePatterns() []string {
	return sinkconf.Patterns(c.Tables, func(t *TableConfig) string { return t.Match })
}

// reserved refuses the field names of the sink's own fields.
func reserved(name string) error {
	if isReserved(name) {
		return fmt.Errorf("%q is reserved", name)
	}
	return nil
}

func isReserved(name string) bool {
	return name == FieldVersion || name == FieldNulls || name == FieldSets
}
