// Package producer reads a MySQL/MariaDB row-based binlog as a replica and writes every
// row change to Kafka exactly once: changes and the source position that covers them
// are committed in one Kafka transaction, and a restarted producer resumes right after
// the last committed position.
package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// Stats are counters a running producer keeps; read them with Producer.Stats.
type Stats struct {
	Changes      atomic.Uint64 // change records written (committed or in the open transaction)
	Transactions atomic.Uint64 // binlog transactions read
	Commits      atomic.Uint64 // Kafka transactions committed
	// Committed is the value Changes had at the last successful Kafka commit: the
	// changes of this process that read_committed consumers can see (a restart
	// after an aborted transaction rewrites, and counts again, what was lost).
	Committed  atomic.Uint64
	Heartbeats atomic.Uint64
	Restarts   atomic.Uint64 // reconnects after a transient error
	// SlowRowsEvents counts rows events of captured tables decoded by go-mysql's
	// generic decoder instead of kanal's own (column types or row images the
	// latter leaves to it, such as BIT, SET, TIME or JSON columns, pre-1970 dates).
	SlowRowsEvents atomic.Uint64
	// InvalidText counts text values decoded from bytes that are not valid in
	// their column's character set (possible with lax SQL modes): the invalid
	// sequences became U+FFFD, and the record names the column in its
	// kanal.invalid_text header.
	InvalidText atomic.Uint64
	// CommitNanos is the time the session spent waiting for Kafka commits
	// (flushing the transaction's records and ending it), during which no binlog
	// event is handled: a commit runs while the session goes on encoding, which
	// waits only when the next commit is due or its pending records fill the
	// client's buffer.
	CommitNanos atomic.Int64
	// CommittedBytes counts the key and value bytes of the records in committed
	// Kafka transactions (changes, tombstones, positions, schemas), before
	// compression: what a format costs per change.
	CommittedBytes atomic.Uint64
	// OversizeSkipped counts changes too large for Kafka that were replaced by an
	// oversize marker (kafka.oversize_policy: skip).
	OversizeSkipped atomic.Uint64
	// SnapshotRows counts rows written as snapshot reads (op "r") by backfills.
	SnapshotRows atomic.Uint64
}

// Producer captures one source. Create it with New and call Run.
type Producer struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	// registry registers Avro schemas (avro-confluent); it outlives sessions so
	// that its cache spares reconnects the registrations.
	registry schemas.SchemaRegistry
	// snapshots is the backfill state as the session last changed it.
	snapshots atomic.Pointer[schemas.SnapshotState]
	// emitHook, set only by tests, runs after each change is handed to Kafka.
	emitHook func(changes uint64)
	// limitsLogged: the brokers' record size limits were logged, and the table
	// patterns checked (once per process).
	limitsLogged, includeChecked bool
	// brokers logs Kafka connection failures while the client retries them.
	brokers *brokerWatch
	// beforeFence, set by a Leader, runs right before each session fences the
	// transactional id; an error (wrapping ErrFenced) stops Run.
	beforeFence func(ctx context.Context) error
	// led is set by the Leader of this Producer (there is at most one).
	led atomic.Bool

	live    *live
	metrics *metrics
	// snapReadHook, set only by tests, runs after a backfill chunk's snapshot
	// began and before its SELECT (see snapReader.hook).
	snapReadHook func(table string, chunk int)
	// heldAfter is heldCommitAfter; tests shorten it.
	heldAfter time.Duration
	// commitHook, set only by tests, runs after each Kafka commit with the
	// position it stored.
	commitHook func(pos schemas.Position)
}

// New validates cfg and returns a producer. A nil logger discards logs.
func New(cfg Config, log *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsconfig.WarnPlaintext(log, "source", cfg.Source.Addr, "source.tls", &cfg.Source.TLS)
	cfg.Kafka.WarnPlaintext(log)
	log = log.With("source", cfg.Source.Name)
	p := &Producer{cfg: cfg, log: log, brokers: newBrokerWatch(log, &cfg.Kafka.Config), live: newLive(), heldAfter: heldCommitAfter}
	var err error
	if p.metrics, err = newMetrics(p); err != nil {
		return nil, err
	}
	if schemas.FormatNeedsRegistry(cfg.Kafka.Format) {
		reg, err := schemastore.NewRegistry(cfg.Kafka.SchemaRegistry, p.log)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		p.registry = reg
	}
	return p, nil
}

// Stats returns the producer's live counters.
func (p *Producer) Stats() *Stats { return &p.stats }

// Progress returns where the producer stands in the binlog.
func (p *Producer) Progress() Progress { return p.live.snapshot() }

// Metrics returns the registry of the producer's Prometheus metrics; more
// collectors may be registered on it.
func (p *Producer) Metrics() *prometheus.Registry { return p.metrics.reg }

// permanent reports errors that a reconnect cannot fix. A TLS failure (a
// server certificate not trusted, a server that wants TLS) is one: retrying
// would only repeat it, and a stopped producer is what a supervisor shows.
func permanent(err error) bool {
	var rowErr *RowError
	var tlsErr *tlsconfig.Error
	return errors.Is(err, ErrServerConfig) || errors.Is(err, ErrBinlogPurged) || errors.Is(err, ErrNoPrimaryKey) || errors.Is(err, ErrCharset) ||
		errors.Is(err, ErrFenced) || errors.Is(err, ErrConfig) || errors.Is(err, schemas.ErrSchemaRejected) || errors.Is(err, ErrOversize) ||
		errors.Is(err, ErrAccess) ||
		errors.As(err, &rowErr) || errors.As(err, &tlsErr)
}

// Run captures changes until ctx is cancelled (then it commits what it has and
// returns nil) or a permanent error occurs (configuration, access denied, purged
// binlog, fencing, a change too large). Transient failures of MySQL or Kafka are
// retried with exponential backoff, each time resuming from the last committed
// position and logging what fails and for how long; after
// source.max_retry_duration of failures without progress Run gives up (ErrGaveUp).
func (p *Producer) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	bo.MaxElapsedTime = 0
	var failingSince time.Time // first failure since the last progress
	for {
		progressed, err := p.runOnce(ctx)
		err = classify(err)
		if ctx.Err() != nil {
			if err != nil {
				// Nothing is lost: the aborted part is re-read from the last
				// committed position on the next start.
				p.log.Warn("stopped without committing the last transaction", "err", err)
			}
			return nil
		}
		if err == nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		if progressed {
			bo.Reset()
		}
		if progressed || failingSince.IsZero() {
			failingSince = time.Now()
		}
		down := time.Since(failingSince)
		if limit := p.cfg.Source.MaxRetryDuration; limit > 0 && down >= limit {
			return gaveUp(err, down, limit)
		}
		wait := bo.NextBackOff()
		p.stats.Restarts.Add(1)
		msg, args := p.brokers.retryMessage(err, down, wait)
		p.log.Warn(msg, args...)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
