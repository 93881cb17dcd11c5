package rabbitmqsink_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var names atomic.Int32

// config is a configuration for a fresh exchange on url publishing the given
// table patterns.
func config(url string, tables ...string) rabbitmqsink.Config {
	cfg := rabbitmqsink.DefaultConfig()
	cfg.URL = url
	cfg.Exchange = fmt.Sprintf("kanal-test-%d", names.Add(1))
	for _, m := range tables {
		cfg.Tables = append(cfg.Tables, rabbitmqsink.TableConfig{Match: m})
	}
	return cfg
}

func newHandler(t testing.TB, cfg rabbitmqsink.Config) *rabbitmqsink.Handler {
	t.Helper()
	h, err := rabbitmqsink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// bindQueue declares the exchange (as the handler does) and a durable queue
// bound to it with pattern, and returns the queue's name.
func bindQueue(t testing.TB, url, exchange, pattern string) string {
	t.Helper()
	q := fmt.Sprintf("%s-q%d", exchange, names.Add(1))
	amqptest.BindQueue(t, amqptest.Channel(t, url), exchange, q, pattern)
	return q
}

// handle hands recs to h as one batch of partition 0.
func handle(t testing.TB, h consumer.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}

var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "note", Type: "text"},
	{Name: "data", Type: "blob"},
}

// rec makes the record the Runner would deliver for a change of table t.<table>.
func rec(table string, op schemas.Op, seq uint64, id int64, off int64) consumer.Record {
	row := map[string]any{"id": id, "note": fmt.Sprint("n", seq), "data": []byte{0, 0xff}}
	c := &schemas.Change{Op: op, Seq: seq, Columns: orderCols,
		Source: schemas.Source{Name: "src", File: "binlog.000002", Pos: uint32(1000 + seq), DB: "t", Table: table}}
	if op == schemas.OpDelete {
		c.Before = row
	} else {
		c.After = row
	}
	return consumer.Record{Topic: "kanal.t." + table, Offset: off, Key: c.Key(), Table: c.Table(), Op: op, Seq: seq, Change: c,
		Timestamp: time.UnixMilli(1700000000000)}
}
