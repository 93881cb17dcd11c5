package essink_test

import (
	"fmt"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// BenchmarkBulk measures docs/s through Handle — batches of 1000 changes of
// t.orders (creates and updates, external versions), encoded as _bulk NDJSON and
// sent over HTTP — against the in-test server: "docs/s" with the server only
// acknowledging (the handler's encode and send), "stored-docs/s" with the full
// in-test server (parsing, mapping, versions: that server's cost dominates). The
// issue's goal is 100k docs/s for the encode.
//
//	go test -run x -bench Bulk ./sinks/elasticsearch
func BenchmarkBulk(b *testing.B) {
	cols := []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "user_id", Type: "int"},
		{Name: "amount", Type: "decimal(12,2)"}, {Name: "status", Type: "varchar"}, {Name: "note", Type: "text"},
		{Name: "created", Type: "datetime"}}
	const batch = 1000
	var seq uint64
	next := func() []consumer.Record {
		recs := make([]consumer.Record, batch)
		for j := range recs {
			seq++
			c := &schemas.Change{Op: schemas.OpUpdate, Seq: seq, Columns: cols, Source: schemas.Source{DB: "t", Table: "orders"},
				After: map[string]any{"id": int64(j), "user_id": int64(j % 97), "amount": schemas.Decimal("123.45"),
					"status": "paid", "note": fmt.Sprintf("note %d with some text in it", seq), "created": "2024-05-01 10:00:00.123456"}}
			recs[j] = consumer.Record{Topic: "kanal.t.orders", Offset: int64(seq), Key: c.Key(), Table: "t.orders", Op: c.Op, Seq: seq, Change: c}
		}
		return recs
	}
	run := func(b *testing.B, ackOnly bool, metric string) {
		srv := newESServer(b, ackOnly)
		h := newHandler(b, config(srv.URL, essink.TableConfig{Match: "t.*"}))
		n := 0
		for b.Loop() {
			b.StopTimer()
			recs := next()
			b.StartTimer()
			if err := h.Handle(ctxT(b), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
				b.Fatal(err)
			}
			n += batch
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), metric)
	}
	b.Run("encode", func(b *testing.B) { run(b, true, "docs/s") })
	b.Run("stored", func(b *testing.B) { run(b, false, "stored-docs/s") })
}
