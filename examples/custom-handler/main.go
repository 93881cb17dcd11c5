// Command custom-handler is `kanal consume` with one more handler type: it
// runs the built-in handlers of a kanal.yaml and a "rowcache" handler of its
// own, configured in the same file:
//
//	consumers:
//	  handlers:
//	    - handler: rowcache          # registered below
//	      name: users-cache
//	      tables: ["shop.users"]
//	      options:                   # decoded into cacheOptions
//	        snapshot: /var/lib/users-cache.json
//	        columns: [id, name]
//
// Run it like kanal consume (kanal.yaml beside this file is the sample):
//
//	go run ./examples/custom-handler --config examples/custom-handler/kanal.yaml
//
// `kanal config check` does not know the rowcache type; this program's
// handlers.Factories does, and checks the whole file before it starts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/schemas"
)

func main() {
	cfgPath := flag.String("config", "kanal.yaml", "path to the YAML configuration file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, os.LookupEnv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "custom-handler:", err)
		if errors.Is(err, consumer.ErrConfig) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// factories are kanal's built-in handler types plus this program's own.
func factories() (*handlers.Factories, error) {
	reg := handlers.Builtin()
	err := reg.Add("rowcache", handlers.Typed[cacheOptions]{Build: newRowCache})
	return reg, err
}

// run does what `kanal consume` does, with the extra handler type.
func run(ctx context.Context, path string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	f, err := config.Load(path, lookup)
	if err != nil {
		return err
	}
	reg, err := factories()
	if err != nil {
		return err
	}
	log := f.Log.Logger(stderr)
	r, err := handlers.NewRunner(f.Consumers, f.Kafka.Config, reg, handlers.Env{Log: log, Stdout: stdout})
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx)
}

// cacheOptions are the rowcache handler's options.
type cacheOptions struct {
	// Snapshot is the JSON file the cache writes after each batch: record key →
	// row (required).
	Snapshot string `yaml:"snapshot"`
	// Columns, when set, are the only columns kept.
	Columns []string `yaml:"columns"`
}

// rowCache keeps each row's newest version in memory (a stand-in for an
// application cache) and writes it to a JSON file after every batch. It is
// idempotent the way the consumer contract asks: a change older than the
// stored one (by Seq) is ignored, so replays and retries do no harm.
type rowCache struct {
	name string
	opts cacheOptions
	mu   sync.Mutex
	rows map[string]entry
}

type entry struct {
	seq     uint64
	row     map[string]any
	deleted bool
}

func newRowCache(spec *handlers.Spec, o *cacheOptions, _ handlers.Env) (consumer.Handler, error) {
	if o.Snapshot == "" {
		return nil, fmt.Errorf("%w: options.snapshot: required (the file the cache is written to)", consumer.ErrConfig)
	}
	return &rowCache{name: spec.Name, opts: *o, rows: map[string]entry{}}, nil
}

func (c *rowCache) Name() string { return c.name }

func (c *rowCache) Handle(ctx context.Context, b consumer.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		old, known := c.rows[r.Key]
		switch {
		case !r.Tombstone && r.Op == schemas.OpTruncate:
			// TRUNCATE TABLE: every row of the table older than it is gone (it
			// reaches each partition; rows written after it are newer).
			for k, e := range c.rows {
				if t, _, _ := strings.Cut(k, ":"); t == r.Table && e.seq < r.Seq {
					c.rows[k] = entry{seq: r.Seq, deleted: true}
				}
			}
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
			c.rows[r.Key] = entry{seq: r.Seq, row: c.keep(r.Change.After)}
		}
	}
	return c.writeSnapshot()
}

func (c *rowCache) keep(row map[string]any) map[string]any {
	if len(c.opts.Columns) == 0 {
		return row
	}
	out := make(map[string]any, len(c.opts.Columns))
	for k, v := range row {
		if slices.Contains(c.opts.Columns, k) {
			out[k] = v
		}
	}
	return out
}

// writeSnapshot replaces the snapshot file with the live rows, atomically.
func (c *rowCache) writeSnapshot() error {
	live := map[string]map[string]any{}
	for k, e := range c.rows {
		if !e.deleted {
			live[k] = e.row
		}
	}
	b, err := json.Marshal(live)
	if err != nil {
		return consumer.Permanent(err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.opts.Snapshot), ".rowcache-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.opts.Snapshot)
}
