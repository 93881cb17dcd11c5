package cdctest

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// Logger returns a logger for components under test: verbose runs (-v) show their
// logs, others discard them.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// ProducerConfig is a producer configuration for a test source on m writing to k:
// start at the earliest binlog, short heartbeats, 3 partitions, and topics that are
// not compacted, so tests can count every change.
func ProducerConfig(m *testenv.MariaDBServer, k *testenv.KafkaCluster, name string) producer.Config {
	cfg := producer.DefaultConfig()
	cfg.Source.Name = name
	cfg.Source.Addr = m.Addr()
	cfg.Source.User = m.User
	cfg.Source.Password = m.Password
	cfg.Source.Start = "earliest"
	cfg.Source.HeartbeatInterval = 300 * time.Millisecond
	cfg.Kafka.Brokers = k.Brokers
	cfg.Kafka.Partitions = 3
	cfg.Kafka.CleanupPolicy = "delete"
	return cfg
}

// Producer is a producer running in the test process.
type Producer struct {
	P      *producer.Producer
	Cfg    producer.Config
	cancel context.CancelFunc
	done   chan error
	err    error
	exited bool
}

// StartProducer runs a producer until the test ends (or Stop).
func StartProducer(t testing.TB, cfg producer.Config) *Producer {
	t.Helper()
	p, err := producer.New(cfg, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return StartProducerWith(t, cfg, p)
}

// StartProducerWith runs p, made from cfg, until the test ends (or Stop).
func StartProducerWith(t testing.TB, cfg producer.Config, p *producer.Producer) *Producer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Producer{P: p, Cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Cancel asks the producer to stop without waiting (safe from any goroutine).
func (r *Producer) Cancel() { r.cancel() }

// Exited reports whether Run has returned, and with what.
func (r *Producer) Exited() (bool, error) {
	if !r.exited {
		select {
		case r.err = <-r.done:
			r.exited = true
		default:
		}
	}
	return r.exited, r.err
}

// Wait waits up to d for Run to return on its own and returns its error.
func (r *Producer) Wait(t testing.TB, d time.Duration) error {
	t.Helper()
	if !r.exited {
		select {
		case r.err = <-r.done:
			r.exited = true
		case <-time.After(d):
			t.Fatalf("producer still running after %v", d)
		}
	}
	return r.err
}

// Stop cancels the producer and returns what Run returned.
func (r *Producer) Stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.Wait(t, 30*time.Second)
}

// MasterPos returns the server's current binlog file and position.
func MasterPos(t testing.TB, db *sql.DB) (string, uint32) {
	t.Helper()
	rows, err := db.Query("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatal("SHOW MASTER STATUS: no row")
	}
	var file string
	var pos uint32
	vals := []any{&file, &pos}
	for len(vals) < len(cols) {
		vals = append(vals, new(sql.RawBytes))
	}
	if err := rows.Scan(vals...); err != nil {
		t.Fatal(err)
	}
	return file, pos
}

// WaitCaughtUp waits until the source's committed position has reached the end of
// the server's binlog as it is now, i.e. every change written so far is committed
// in Kafka. alive, when not nil, is polled and a non-nil error fails the test (the
// producer died).
func WaitCaughtUp(t testing.TB, db *sql.DB, k *producer.KafkaConfig, source string, alive func() error) {
	t.Helper()
	file, pos := MasterPos(t, db)
	deadline := time.Now().Add(2 * time.Minute)
	var last *schemas.Position
	var lastErr error
	for time.Now().Before(deadline) {
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("producer stopped while catching up: %v", err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		p, err := producer.ReadPosition(ctx, &k.Config, source)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			// A read-committed read waits behind a killed producer's open
			// transaction until the next active producer fences it.
			lastErr = err
			continue
		}
		if err != nil {
			t.Fatalf("read position: %v", err)
		}
		last = p
		if p != nil && p.RowsDone == 0 && (p.File > file || p.File == file && p.Pos >= pos) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("source %s did not reach %s:%d within 2 minutes; last committed %v (last read error: %v)", source, file, pos, last, lastErr)
}

// CaughtUp waits until r has committed everything the server has written so far.
func (r *Producer) CaughtUp(t testing.TB, db *sql.DB) {
	t.Helper()
	WaitCaughtUp(t, db, &r.Cfg.Kafka, r.Cfg.Source.Name, func() error {
		if done, err := r.Exited(); done {
			if err == nil {
				return errStopped
			}
			return err
		}
		return nil
	})
}

var errStopped = errorString("producer returned without an error")

type errorString string

func (e errorString) Error() string { return string(e) }
