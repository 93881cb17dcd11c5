// Command custom-handler is a user's own consumer binary built around the
// consumer package: a handler that keeps the latest version of every row of the
// selected tables in memory (a stand-in for a cache) and prints a summary line
// per batch.
//
//	go run ./examples/custom-handler --brokers 127.0.0.1:9092 --tables 'shop.*'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// rowCache keeps each row's newest version. It is idempotent the way the consumer
// contract asks: a change older than the stored one (by Seq) is ignored, so
// replays and retries do no harm.
type rowCache struct {
	mu   sync.Mutex
	rows map[string]entry
}

type entry struct {
	seq     uint64
	row     map[string]any
	deleted bool
}

func (c *rowCache) Name() string { return "row-cache" }

func (c *rowCache) Handle(ctx context.Context, b consumer.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		old, known := c.rows[r.Key]
		switch {
		case r.Tombstone && r.Seq == 0:
			// A tombstone whose delete was compacted away: the row is gone.
			c.rows[r.Key] = entry{seq: old.seq, deleted: true}
		case known && r.Seq <= old.seq:
			// Older than what we have: a replay. Keep the newer version.
		case r.Tombstone || r.Op == schemas.OpDelete:
			c.rows[r.Key] = entry{seq: r.Seq, deleted: true}
		case r.Change.After == nil:
			// Bad input: retrying cannot help, send it to the dead-letter topic.
			return consumer.Permanent(fmt.Errorf("%s change of %s without a row image", r.Op, r.Key))
		default:
			c.rows[r.Key] = entry{seq: r.Seq, row: r.Change.After}
		}
	}
	live := 0
	for _, e := range c.rows {
		if !e.deleted {
			live++
		}
	}
	fmt.Printf("%s/%d: applied %d records up to offset %d; %d rows cached\n",
		b.Topic, b.Partition, len(b.Records), b.NextOffset()-1, live)
	return nil
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated Kafka brokers")
	tables := flag.String("tables", "*.*", "comma-separated db.table patterns")
	metrics := flag.String("metrics", "127.0.0.1:9464", "address for /metrics, /healthz, /readyz (empty: off)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	cfg.MetricsAddr = *metrics
	cfg.OnFailure = consumer.DeadLetter

	reg := consumer.NewRegistry()
	cache := &rowCache{rows: map[string]entry{}}
	if err := reg.Register(cache, consumer.Tables(strings.Split(*tables, ",")...),
		consumer.Use(consumer.Logging(log))); err != nil {
		log.Error("register", "err", err)
		os.Exit(2)
	}
	r, err := consumer.NewRunner(cfg, reg, log)
	if err != nil {
		log.Error("configure", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("consumer stopped", "err", err)
		os.Exit(1)
	}
}
