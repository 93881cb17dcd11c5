package essink_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// config is a configuration for the cluster at url with the given tables.
func config(url string, tables ...essink.TableConfig) essink.Config {
	cfg := essink.DefaultConfig()
	cfg.URLs = []string{url}
	cfg.Tables = tables
	cfg.Retry = essink.RetryConfig{MaxAttempts: 5, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
	return cfg
}

func newHandler(t testing.TB, cfg essink.Config) *essink.Handler {
	t.Helper()
	h, err := essink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newESServer starts an in-test cluster for the test.
func newESServer(t testing.TB, ackOnly bool) *estest.Server {
	srv := estest.NewServer(ackOnly)
	t.Cleanup(srv.Close)
	return srv
}

// render renders a document's fields like cdctest.RenderRow (cdctest.RenderJSON:
// binary columns decoded from base64 into 0x-hex), without the join metadata.
func render(t testing.TB, src map[string]any, binary map[string]bool) map[string]string {
	t.Helper()
	doc := maps.Clone(src)
	delete(doc, essink.FieldMeta)
	out, err := cdctest.RenderJSON(doc, slices.Collect(maps.Keys(binary))...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// orderCols is the synthetic table t.orders.
var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "note", Type: "text"},
	{Name: "created", Type: "datetime"},
	{Name: "secret", Type: "varchar"},
}

func orderRow(id int64, note any, created string) map[string]any {
	return map[string]any{"id": id, "note": note, "created": created, "secret": "s3cr3t"}
}

func change(table string, cols []schemas.Column, op schemas.Op, seq uint64, before, after map[string]any) *schemas.Change {
	return &schemas.Change{Op: op, Seq: seq, Columns: cols, Before: before, After: after,
		Source: schemas.Source{Name: "src", File: "binlog.000001", Pos: uint32(seq), DB: "t", Table: table}}
}

// rec makes the record the Runner would deliver for c at offset off.
func rec(c *schemas.Change, off int64) consumer.Record {
	return consumer.Record{Topic: "kanal." + c.Table(), Offset: off, Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
}

func tomb(key string, seq uint64, off int64) consumer.Record {
	table, _, _ := strings.Cut(key, ":")
	return consumer.Record{Topic: "kanal." + table, Offset: off, Key: key, Table: table, Op: schemas.OpDelete, Tombstone: true, Seq: seq}
}

func handle(t testing.TB, h consumer.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: recs[0].Topic, Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}
