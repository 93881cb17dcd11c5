package redissink_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

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
	h, err := redissink.New(cfg, testLogger(t))
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

// rec makes the record the Runner would deliver for c.
func rec(c *schemas.Change) consumer.Record {
	return consumer.Record{Topic: "kanal.t.orders", Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
}

// tomb makes a tombstone record for key (Seq unknown, as the producer writes it).
func tomb(key string) consumer.Record {
	return consumer.Record{Topic: "kanal.t.orders", Key: key, Table: "t.orders", Op: schemas.OpDelete, Tombstone: true}
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
