package producer

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// SourceConfig says which MySQL/MariaDB server to read and how.
type SourceConfig struct {
	// Name identifies this source: the position record's key, the transactional.id
	// ("kanal-<name>") and source.name in every change. Changing it starts afresh.
	Name string `yaml:"name"`
	// Flavor is "auto" (detected from the server version), "mysql" or "mariadb".
	Flavor string `yaml:"flavor"`
	// Addr is host:port of the server.
	Addr     string `yaml:"addr"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// PasswordFile is a file holding the password instead (a mounted secret);
	// its trailing line break is dropped.
	PasswordFile string `yaml:"password_file"`
	// TLS to the server, for the binlog stream and the SQL queries alike:
	// `true` (the system's roots) or a mapping naming the CA, a client
	// certificate and key, the server name.
	TLS tlsconfig.Config `yaml:"tls"`
	// ServerID is the replica server_id kanal registers with; unique among replicas.
	ServerID uint32 `yaml:"server_id"`
	// Start says where to begin when no position is stored: "current" (the server's
	// current binlog position), "earliest" (the oldest binlog file still on the
	// server) or "snapshot" (the current position, after a backfill of every captured
	// table: existing rows are written as snapshot reads, then changes follow).
	Start string `yaml:"start"`
	// SnapshotChunkSize is the number of rows a backfill reads per chunk (one
	// consistent SELECT in key order); a request may ask for another size.
	SnapshotChunkSize int `yaml:"snapshot_chunk_size"`
	// SnapshotWatermark is how a backfill learns the binlog position of each
	// chunk's snapshot: "snapshot-position" reads the server's
	// binlog_snapshot_file/position (read-only; MariaDB, Percona Server);
	// "table" first writes one row to signal_table, then reads SHOW MASTER STATUS
	// (MySQL; needs write access to that table); "auto" uses snapshot-position
	// where the server has it, else table when signal_table is set.
	SnapshotWatermark string `yaml:"snapshot_watermark"`
	// SignalTable is the watermark table ("db.table") of snapshot_watermark
	// table: one row per source, created by the producer if missing and never
	// captured, whatever tables.include says.
	SignalTable string `yaml:"signal_table"`
	// NoPrimaryKey is the policy for tables without a primary key: "all-columns" keys
	// rows by every column; "refuse" stops with an error naming the table.
	NoPrimaryKey string `yaml:"no_primary_key"`
	// HeartbeatInterval is how often an idle producer writes a heartbeat (0 disables).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// ConnectTimeout bounds each connection attempt to the server (and the first
	// request to the Kafka brokers).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxRetryDuration, when set, is how long the producer keeps retrying while the
	// source or Kafka fails without any progress (checked after each failed
	// attempt); then it exits 1 naming what failed. 0 (default): retry forever.
	MaxRetryDuration time.Duration `yaml:"max_retry_duration"`
}

// KafkaConfig says where and how changes are written: the connection shared with
// every other client (brokers, topic prefix, TLS, SASL) and the producer's own
// settings, side by side in the YAML file's kafka section.
type KafkaConfig struct {
	kafkaconn.Config `yaml:",inline"`
	// Partitions and ReplicationFactor apply to table topics kanal creates
	// (-1 replication factor = the broker's default).
	Partitions        int32 `yaml:"partitions"`
	ReplicationFactor int16 `yaml:"replication_factor"`
	// CleanupPolicy of table topics: "compact" (default: each row's latest change is
	// kept forever), "delete" or "compact,delete".
	CleanupPolicy string `yaml:"cleanup_policy"`
	// MinCompactionLag is min.compaction.lag.ms of compacted table topics kanal
	// creates: changes younger than this are never compacted away, so a replay
	// from earliest sees every change of that period, not just each row's latest.
	// 0 compacts as soon as the cleaner runs.
	MinCompactionLag time.Duration `yaml:"min_compaction_lag"`
	// Format of record values: "json" (kanal envelope), "json-compact" (the
	// envelope's per-change fields and rows as arrays, columns and table in a
	// descriptor per table version in "<prefix>._schemas"), "canal-json" (Canal
	// FlatMessage), "avro" (Avro single-object encoding, schemas in
	// "<prefix>._schemas") or "avro-confluent" (Confluent wire format, schemas in
	// the kafka.schema_registry).
	Format string `yaml:"format"`
	// Tombstones: follow every delete with a null-value record so compaction drops
	// the row's key.
	Tombstones bool `yaml:"tombstones"`
	// A Kafka transaction is committed when one of these is reached at a binlog
	// transaction boundary, or inside a binlog transaction larger than them.
	FlushRecords  int           `yaml:"flush_records"`
	FlushBytes    int           `yaml:"flush_bytes"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	// FlushIdle: at a binlog transaction boundary the Kafka transaction is also
	// committed when no further binlog event arrives within this time (0: as soon
	// as none is queued). The wait keeps a busy source from committing every few
	// binlog transactions; an idle source's last change becomes visible this much
	// later.
	FlushIdle time.Duration `yaml:"flush_idle"`
	// Compression of record batches: snappy, lz4, zstd, gzip or none. snappy
	// costs least per byte saved (docs/bench.md, round 7d: on narrow rows none
	// saved the producer nothing and cost the broker 4× the CPU for 6× the
	// bytes; lz4 and zstd cost 1.2–1.4× and 1.5–1.7× snappy's producer CPU for
	// 0.78× and 0.47× its bytes).
	Compression string `yaml:"compression"`
	// TransactionTimeout is the broker-side timeout of a Kafka transaction.
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// MaxBufferedBytes bounds the records held in memory before they are acknowledged.
	MaxBufferedBytes int `yaml:"max_buffered_bytes"`
	// MaxBufferedRecords bounds the number of records handed to the Kafka client
	// and not yet acknowledged: reading the binlog waits when it is reached. The
	// memory of acknowledged records is reused before the transaction commits, so
	// this, not flush_records, is what sizes the producer's record memory.
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// MaxRecordBytes is the largest record (key, value and headers) the producer
	// writes. Topics kanal creates get max.message.bytes to match (plus 1 KiB of
	// batch framing), and record batches are sized by it; a topic that already
	// exists with a smaller max.message.bytes lowers it for that topic. Above
	// ~100 MiB the brokers' socket.request.max.bytes must be raised too.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// OversizePolicy is what happens to a change whose record is larger still:
	// "fail" stops the producer (exit 1) with an error naming table, key, binlog
	// position and size; "skip" writes a small marker record in its place (same
	// key, header kanal.format=oversize; never a tombstone) and a copy to
	// "<prefix>._oversize", counts it and goes on. Never an endless retry.
	OversizePolicy string `yaml:"oversize_policy"`
}

// TablesConfig selects tables by "db.table" glob patterns (path.Match syntax: "shop.*",
// "shop.order_*"). A table is captured when it matches an include pattern (or there
// are none) and no exclude pattern.
type TablesConfig struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Config is the whole producer configuration.
type Config struct {
	Source SourceConfig `yaml:"source"`
	Kafka  KafkaConfig  `yaml:"kafka"`
	Tables TablesConfig `yaml:"tables"`
	// HA runs several `kanal produce` processes of one source, one active.
	HA HAConfig `yaml:"ha"`
	// Admin is the producer's HTTP endpoint, status records and source monitor.
	Admin AdminConfig `yaml:"admin"`
}

// DefaultConfig returns a configuration with every default filled in; a YAML file
// decoded on top of it overrides only what it names.
func DefaultConfig() Config {
	return Config{
		Source: SourceConfig{
			Flavor:            "auto",
			ServerID:          1001,
			Start:             "current",
			SnapshotChunkSize: defaultChunkSize,
			SnapshotWatermark: "auto",
			NoPrimaryKey:      "all-columns",
			HeartbeatInterval: 5 * time.Second,
			ConnectTimeout:    10 * time.Second,
		},
		Kafka: KafkaConfig{
			Config:             kafkaconn.Default(),
			Partitions:         6,
			ReplicationFactor:  -1,
			CleanupPolicy:      "compact",
			MinCompactionLag:   7 * 24 * time.Hour,
			Format:             "json",
			Tombstones:         true,
			FlushRecords:       20000,
			FlushBytes:         16 << 20,
			FlushInterval:      50 * time.Millisecond,
			FlushIdle:          200 * time.Microsecond,
			Compression:        "snappy",
			TransactionTimeout: time.Minute,
			MaxBufferedBytes:   64 << 20,
			MaxBufferedRecords: 8192,
			MaxRecordBytes:     16 << 20,
			OversizePolicy:     "fail",
		},
		HA:    DefaultHAConfig(),
		Admin: DefaultAdminConfig(),
	}
}

// ErrConfig is wrapped by every validation error.
var ErrConfig = errors.New("invalid configuration")

var sourceNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	if err := c.Source.Validate(); err != nil {
		return err
	}
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.HA.Validate(); err != nil {
		return err
	}
	if err := c.Admin.Validate(); err != nil {
		return err
	}
	return c.Tables.Validate()
}

func bad(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// Validate checks the source section, naming the bad field.
func (s *SourceConfig) Validate() error {
	switch {
	case !sourceNameRE.MatchString(s.Name):
		return bad("source.name", "%q must be 1-200 characters of letters, digits, '.', '_' or '-'", s.Name)
	case s.Addr == "":
		return bad("source.addr", "required (host:port)")
	case !strings.Contains(s.Addr, ":"):
		return bad("source.addr", "%q is not host:port", s.Addr)
	case s.User == "":
		return bad("source.user", "required")
	case s.ServerID == 0:
		return bad("source.server_id", "must be > 0 and unique among the server's replicas")
	case s.Flavor != "auto" && s.Flavor != "mysql" && s.Flavor != "mariadb":
		return bad("source.flavor", "%q is not auto, mysql or mariadb", s.Flavor)
	case s.Start != "current" && s.Start != "earliest" && s.Start != "snapshot":
		return bad("source.start", "%q is not current, earliest or snapshot", s.Start)
	case s.SnapshotChunkSize < 1 || s.SnapshotChunkSize > maxChunkSize:
		return bad("source.snapshot_chunk_size", "%d is not between 1 and %d", s.SnapshotChunkSize, maxChunkSize)
	case s.NoPrimaryKey != "all-columns" && s.NoPrimaryKey != "refuse":
		return bad("source.no_primary_key", "%q is not all-columns or refuse", s.NoPrimaryKey)
	case s.SnapshotWatermark != watermarkAuto && s.SnapshotWatermark != watermarkPosition && s.SnapshotWatermark != watermarkTable:
		return bad("source.snapshot_watermark", "%q is not auto, snapshot-position or table", s.SnapshotWatermark)
	case s.SnapshotWatermark == watermarkTable && s.SignalTable == "":
		return bad("source.signal_table", "required with source.snapshot_watermark: table (a db.table the producer may create and write, e.g. kanal.kanal_watermarks)")
	case s.HeartbeatInterval < 0:
		return bad("source.heartbeat_interval", "must not be negative")
	case s.ConnectTimeout <= 0:
		return bad("source.connect_timeout", "must be positive")
	case s.MaxRetryDuration < 0:
		return bad("source.max_retry_duration", "must not be negative (0 = retry forever)")
	}
	if s.SignalTable != "" {
		if err := checkSignalTable(s.SignalTable); err != nil {
			return bad("source.signal_table", "%v", err)
		}
	}
	if err := secret.Check("source.password", s.Password, s.PasswordFile); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := s.TLS.Validate("source.tls"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Validate checks the kafka section, naming the bad field.
func (k *KafkaConfig) Validate() error {
	if err := k.Config.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case k.Partitions < 1:
		return bad("kafka.partitions", "must be >= 1")
	case k.ReplicationFactor == 0 || k.ReplicationFactor < -1:
		return bad("kafka.replication_factor", "must be >= 1, or -1 for the broker default")
	case k.CleanupPolicy != "compact" && k.CleanupPolicy != "delete" && k.CleanupPolicy != "compact,delete":
		return bad("kafka.cleanup_policy", "%q is not compact, delete or compact,delete", k.CleanupPolicy)
	case k.MinCompactionLag < 0 || k.MinCompactionLag%time.Millisecond != 0:
		return bad("kafka.min_compaction_lag", "%v is not a whole number of milliseconds >= 0", k.MinCompactionLag)
	case !schemas.KnownFormat(k.Format):
		return bad("kafka.format", "%q is not one of %s", k.Format, strings.Join(schemas.Formats(), ", "))
	case schemas.FormatNeedsRegistry(k.Format) && k.SchemaRegistry == nil:
		return bad("kafka.schema_registry.url", "required with kafka.format %s", k.Format)
	case k.FlushRecords < 1:
		return bad("kafka.flush_records", "must be >= 1")
	case k.FlushBytes < 1024:
		return bad("kafka.flush_bytes", "must be >= 1024")
	case k.FlushInterval <= 0:
		return bad("kafka.flush_interval", "must be positive")
	case k.FlushIdle < 0 || k.FlushIdle >= k.FlushInterval:
		return bad("kafka.flush_idle", "%v is not between 0 and flush_interval (%v)", k.FlushIdle, k.FlushInterval)
	case compressionCodec(k.Compression) == nil:
		return bad("kafka.compression", "%q is not snappy, lz4, zstd, gzip or none", k.Compression)
	case k.TransactionTimeout < time.Second:
		return bad("kafka.transaction_timeout", "must be >= 1s")
	case k.MaxBufferedBytes < 1<<20:
		return bad("kafka.max_buffered_bytes", "must be >= 1MiB")
	case k.MaxBufferedRecords < 1:
		return bad("kafka.max_buffered_records", "must be >= 1")
	case k.MaxRecordBytes < 64<<10 || k.MaxRecordBytes > maxRecordBytesLimit:
		return bad("kafka.max_record_bytes", "%d is not between 64KiB and 1GiB-1MiB", k.MaxRecordBytes)
	case k.MaxBufferedBytes < k.MaxRecordBytes+recordOverhead:
		return bad("kafka.max_buffered_bytes", "%d must be at least max_record_bytes + 1KiB (%d)", k.MaxBufferedBytes, k.MaxRecordBytes+recordOverhead)
	case k.OversizePolicy != "fail" && k.OversizePolicy != "skip":
		return bad("kafka.oversize_policy", "%q is not fail or skip", k.OversizePolicy)
	}
	return nil
}

// Validate checks the table patterns, naming the bad one.
func (t *TablesConfig) Validate() error {
	for i, p := range append(append([]string{}, t.Include...), t.Exclude...) {
		field := fmt.Sprintf("tables.include[%d]", i)
		if i >= len(t.Include) {
			field = fmt.Sprintf("tables.exclude[%d]", i-len(t.Include))
		}
		if !strings.Contains(p, ".") {
			return bad(field, "%q must be a db.table pattern such as shop.* ", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return bad(field, "%q: %v", p, err)
		}
	}
	return nil
}

// LogValue keeps the passwords out of logs when a Config is logged.
func (c Config) LogValue() slog.Value {
	c.Source.Password = secret.Redact(c.Source.Password)
	c.Kafka.Config = c.Kafka.Config.Redacted()
	return slog.AnyValue(struct {
		Source SourceConfig
		Kafka  KafkaConfig
		Tables TablesConfig
		HA     HAConfig
		Admin  AdminConfig
	}{c.Source, c.Kafka, c.Tables, c.HA, c.Admin})
}

// filter decides which tables are captured.
// filter selects the captured tables; hide ("db.table") is never captured: the
// watermark table (source.signal_table).
type filter struct {
	include, exclude []string
	hide             string
}

// captureFilter is the filter of cfg: its tables section, and its signal table hidden.
func captureFilter(cfg *Config) filter {
	return filter{include: cfg.Tables.Include, exclude: cfg.Tables.Exclude, hide: cfg.Source.SignalTable}
}

func (f filter) match(db, table string) bool {
	name := db + "." + table
	if f.hide != "" && strings.EqualFold(name, f.hide) { // names may be case-insensitive on the server
		return false
	}
	ok := len(f.include) == 0
	for _, p := range f.include {
		if m, _ := path.Match(p, name); m {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for _, p := range f.exclude {
		if m, _ := path.Match(p, name); m {
			return false
		}
	}
	return true
}
