package redissink_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// oneInstance is a config with one Redis instance "main" and the given tables.
func oneInstance(addr string, tables ...redissink.TableConfig) redissink.Config {
	cfg := redissink.DefaultConfig()
	cfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: addr}}
	cfg.Tables = tables
	return cfg
}

func newHandler(t testing.TB, cfg redissink.Config) *redissink.Handler {
	t.Helper()
	h, err := redissink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func client(t testing.TB, addr string, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// orderCols is the synthetic table t.orders.
var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "user_id", Type: "int unsigned"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "data", Type: "blob"},
	{Name: "note", Type: "text"},
	{Name: "f", Type: "float"},
	{Name: "d", Type: "double"},
}

// orderRow builds a t.orders row.
func orderRow(id int64, user any, note any) map[string]any {
	return map[string]any{"id": id, "user_id": user, "amount": schemas.Decimal("-12.50"),
		"data": []byte{0, 'a', 0xff}, "note": note, "f": float32(1.1), "d": 1e300}
}

func change(op schemas.Op, seq uint64, before, after map[string]any) *schemas.Change {
	return &schemas.Change{Op: op, Seq: seq, Source: schemas.Source{DB: "t", Table: "orders"},
		Columns: orderCols, Before: before, After: after}
}

// rec makes the record the Runner would deliver for c. Its offset is its sequence:
// the tests' changes of a partition are in sequence order, as the producer writes
// them, and a replayed change comes again at its offset.
func rec(c *schemas.Change) consumer.Record {
	return consumer.Record{Topic: "kanal.t.orders", Offset: int64(c.Seq), Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
}

// tomb makes a tombstone record for key at offset off (Seq unknown, as the producer
// writes it).
func tomb(key string, off int64) consumer.Record {
	return consumer.Record{Topic: "kanal.t.orders", Offset: off, Key: key, Table: "t.orders", Op: schemas.OpDelete, Tombstone: true}
}

// unfenced hands recs to h as a batch without Kafka coordinates (no topic), as
// ApplyChanges does: every row goes through the script's version check.
func unfenced(t testing.TB, h *redissink.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}

// dataKeys lists the keys of a database but the partition watermarks.
func dataKeys(t testing.TB, cl *redis.Client) []string {
	t.Helper()
	var out []string
	for _, k := range cl.Keys(ctxT(t), "*").Val() {
		if !strings.HasPrefix(k, redissink.WatermarkPrefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func handle(t testing.TB, h *redissink.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}

func startRedis(t *testing.T) *testenv.RedisServer {
	t.Helper()
	return testenv.Redis(t)
}
