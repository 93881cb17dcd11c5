package consumer

import (
	"fmt"
	"net"
	"time"

	"github.com/kanal-cdc/kanal/kafkaconn"
)

// Policy says what happens to a record whose retries ran out.
type Policy string

// The failure policies.
const (
	// Halt stops the partition at the failing record: nothing after it is applied,
	// /readyz reports the partition, table, key and offset, and the record is
	// retried every RetryConfig.MaxInterval until it succeeds (a sink that comes
	// back resumes the partition by itself) or the process stops.
	Halt Policy = "halt"
	// DeadLetter writes the record to "<prefix>._dlq.<group>", counts it and goes on.
	DeadLetter Policy = "dead-letter"
)

func (p Policy) valid() bool { return p == Halt || p == DeadLetter }

// Config is the Runner's configuration. Start from DefaultConfig.
type Config struct {
	// Kafka is the connection (brokers, TLS, SASL) and topic prefix, the same as the
	// producer's.
	Kafka kafkaconn.Config `yaml:"-"`
	// Start is where a group without committed offsets begins: "earliest" (the
	// oldest retained change; on compacted topics, the current state of every row)
	// or "latest" (only new changes).
	Start string `yaml:"start"`
	// Concurrency bounds how many partitions of one group are handled at once.
	Concurrency int `yaml:"concurrency"`
	// BatchMaxRecords bounds the records passed to one Handle call. Batches are not
	// held back to fill up: a partition's handler gets whatever has arrived. A
	// handler may set its own bound (BatchSizer; the aggregate handler's
	// batch_max_records).
	BatchMaxRecords int `yaml:"batch_max_records"`
	// QueueMaxRecords is how many fetched records may wait per partition before
	// fetching that partition pauses.
	QueueMaxRecords int `yaml:"queue_max_records"`
	// FetchMaxWait is how long the broker may hold a fetch that has no new data.
	// A partition whose fetching was paused (its queue was full) is fetched again
	// only with the next fetch request, so a long wait here stalls it while the
	// other partitions are caught up: with Kafka's 5s default a handler that
	// fills its queue ran at a tenth of its speed (docs/bench.md).
	FetchMaxWait time.Duration `yaml:"fetch_max_wait"`
	// CommitInterval is how often applied offsets are committed to Kafka. A crash
	// replays at most this much work (more if a commit failed).
	CommitInterval time.Duration `yaml:"commit_interval"`
	// RevokeTimeout bounds how long a partition being revoked (rebalance, shutdown)
	// may take to finish its in-flight batch; after it the handler's context is
	// cancelled. Offsets are committed before the partition is released.
	RevokeTimeout time.Duration `yaml:"revoke_timeout"`
	// SessionTimeout is the group session timeout: how long the group waits for a
	// member that stopped heartbeating (crashed) before reassigning its partitions.
	// A crashed member that is restarted with the same InstanceID gets its
	// partitions back at once, without waiting for it.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// InstanceID makes the Runner a static member of its groups (KIP-345,
	// group.instance.id): a member restarted after a crash with the same id takes
	// its partitions back at once, without a rebalance and without waiting for
	// SessionTimeout. "auto" (default) is "<hostname>-<n>", n being the lowest
	// number no other Runner of this host uses for the same group and brokers (a
	// lock file in the system's temporary directory; a crashed process's lock is
	// released with it). "none" is dynamic membership. Any other value is used as
	// is and must be unique per member of a group: a Kubernetes StatefulSet pod
	// name (${POD_NAME}) or a systemd instance name. A graceful stop always
	// leaves the group, so its partitions move at once.
	InstanceID string `yaml:"instance_id"`
	// MetadataMaxAge is how often topic metadata is refreshed, so topics of tables
	// created while running are picked up.
	MetadataMaxAge time.Duration `yaml:"metadata_max_age"`
	// Retry and OnFailure are the defaults for routes that do not set their own.
	Retry     RetryConfig `yaml:"retry"`
	OnFailure Policy      `yaml:"on_failure"`
	// DLQPartitions is the partition count of dead-letter and retry topics kanal
	// creates.
	DLQPartitions int32 `yaml:"dlq_partitions"`
	// DLQMaxValueBytes bounds the value of a dead letter: a longer value is cut to
	// its first DLQMaxValueBytes bytes, with its length and SHA-256 in headers
	// (kanal.dlq.truncated, kanal.dlq.value_sha256), so that no record is too
	// large to dead-letter. When the broker still refuses the size, the value is
	// cut further, down to nothing.
	DLQMaxValueBytes int `yaml:"dlq_max_value_bytes"`
	// Heartbeats enables reading "<prefix>._heartbeats" to tell a quiet source
	// from a stuck pipeline in the freshness metric.
	Heartbeats bool `yaml:"heartbeats"`
	// MetricsAddr, when set, is the host:port of an HTTP server with /metrics,
	// /healthz and /readyz. Without a host (":9464") it listens on 127.0.0.1
	// only; to be reached from elsewhere (Prometheus, Kubernetes probes) name
	// the interface: "0.0.0.0:9464", or the pod's IP as ${POD_IP}:9464.
	MetricsAddr string `yaml:"metrics_addr"`
	// StatusInterval is how often each group publishes its status record
	// (handlers, halted partitions) to "<prefix>._status" for `kanal status`
	// (0 publishes none).
	StatusInterval time.Duration `yaml:"status_interval"`
}

// DefaultConfig returns a configuration with every default filled in (brokers
// still need to be set).
func DefaultConfig() Config {
	return Config{
		Kafka:            kafkaconn.Default(),
		Start:            "earliest",
		Concurrency:      8,
		BatchMaxRecords:  500,
		QueueMaxRecords:  5000,
		FetchMaxWait:     100 * time.Millisecond,
		CommitInterval:   time.Second,
		RevokeTimeout:    30 * time.Second,
		SessionTimeout:   45 * time.Second,
		InstanceID:       InstanceAuto,
		MetadataMaxAge:   30 * time.Second,
		Retry:            DefaultRetry(),
		OnFailure:        Halt,
		DLQPartitions:    1,
		DLQMaxValueBytes: 256 << 10,
		Heartbeats:       true,
		StatusInterval:   5 * time.Second,
	}
}

// Validate checks the configuration and names the first bad field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case c.Start != "earliest" && c.Start != "latest":
		return bad("start", "%q is not earliest or latest", c.Start)
	case c.Concurrency < 1:
		return bad("concurrency", "must be >= 1")
	case c.BatchMaxRecords < 1:
		return bad("batch_max_records", "must be >= 1")
	case c.QueueMaxRecords < c.BatchMaxRecords:
		return bad("queue_max_records", "must be >= batch_max_records (%d)", c.BatchMaxRecords)
	case c.FetchMaxWait < 10*time.Millisecond || c.FetchMaxWait > time.Minute:
		// franz-go refuses less than 10ms, and only at Run: say so here.
		return bad("fetch_max_wait", "%v is not between 10ms and 1m", c.FetchMaxWait)
	case c.CommitInterval <= 0:
		return bad("commit_interval", "must be positive")
	case c.RevokeTimeout <= 0:
		return bad("revoke_timeout", "must be positive")
	case c.SessionTimeout < time.Second:
		return bad("session_timeout", "must be >= 1s")
	case c.MetadataMaxAge < 100*time.Millisecond:
		return bad("metadata_max_age", "must be >= 100ms")
	case !c.OnFailure.valid():
		return bad("on_failure", "%q is not halt or dead-letter", c.OnFailure)
	case c.DLQPartitions < 1:
		return bad("dlq_partitions", "must be >= 1")
	case c.DLQMaxValueBytes < 0 || c.DLQMaxValueBytes > maxDLQValueBytes:
		return bad("dlq_max_value_bytes", "%d is not between 0 and %d", c.DLQMaxValueBytes, maxDLQValueBytes)
	case !validInstanceID(c.InstanceID):
		return bad("instance_id", "%q is not auto, none or 1-200 printable characters without spaces", c.InstanceID)
	case c.StatusInterval < 0 || c.StatusInterval > 0 && c.StatusInterval < 100*time.Millisecond:
		return bad("status_interval", "must be 0 (off) or >= 100ms")
	}
	if err := c.Retry.validate("retry."); err != nil {
		return err
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return bad("metrics_addr", "%q is not host:port", c.MetricsAddr)
		}
	}
	return nil
}
