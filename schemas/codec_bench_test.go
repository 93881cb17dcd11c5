package schemas

import (
	"context"
	"fmt"
	"testing"
)

// benchOrders is a bench.orders table version (bench/workload.go) and one update
// of it, as the producer hands them to an encoder.
func benchOrders() (*TableVersion, *RowChange) {
	cols := []Column{
		{Name: "id", Type: "bigint", PK: true}, {Name: "customer_id", Type: "int unsigned"},
		{Name: "sku", Type: "varchar"}, {Name: "status", Type: "enum"}, {Name: "amount", Type: "decimal(12,2)"},
		{Name: "qty", Type: "int unsigned"}, {Name: "created_at", Type: "datetime(6)"}, {Name: "note", Type: "text"},
		{Name: "stamp_us", Type: "bigint"},
	}
	tv := &TableVersion{DB: "bench", Table: "orders", Topic: "kanal.bench.orders", Columns: cols,
		Nullable: []bool{false, false, false, false, false, false, false, true, false}}
	row := func(qty uint64, status, amount string) []Value {
		return []Value{IntValue(123456), UintValue(4711), StringValue("SKU-000123-blue-xl"), StringValue(status),
			DecimalValue(amount), UintValue(qty), StringValue("2024-06-01 12:00:00.123456"),
			StringValue("gift wrap, leave at the door"), IntValue(1717243200123456)}
	}
	src := &Source{Name: "bench", ServerID: 1, File: "binlog.000003", Pos: 881234, GTID: "0-1-977", TsMs: 1717243200000,
		DB: "bench", Table: "orders", Row: 17}
	return tv, &RowChange{Op: OpUpdate, Seq: 1042, Source: src, Event: 1,
		Before: row(2, "new", "1234.50"), After: row(3, "paid", "1234.75")}
}

// BenchmarkEncode compares the formats on one bench.orders update: ns/op is the
// encode cost per change, bytes/change the record value's size. The JSON path
// is the producer's measured fast path; avro must stay within 0.9x of its rate
// and at most half its bytes (docs/bench.md).
func BenchmarkEncode(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatJSONCompact, FormatAvro, FormatAvroConfluent} {
		b.Run(format, func(b *testing.B) {
			tv, c := benchOrders()
			enc, err := NewEncoder(format, EncoderConfig{TopicPrefix: "kanal", Registry: benchRegistry{}})
			if err != nil {
				b.Fatal(err)
			}
			te, err := enc.Table(tv)
			if err != nil {
				b.Fatal(err)
			}
			if p, ok := te.(TablePreparer); ok {
				if _, err := p.Prepare(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			buf, _ := te.AppendValue(nil, c)
			size := len(buf)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// A new rows event every 8 changes, as in a mixed workload.
				c.Event = uint64(i / 8)
				if buf, err = te.AppendValue(buf[:0], c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/change")
		})
	}
}

// BenchmarkDecode measures decoding the same change in each format with one
// Decoder (Avro schemas resolved once, then cached).
func BenchmarkDecode(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatJSONCompact, FormatAvro, FormatAvroConfluent} {
		b.Run(format, func(b *testing.B) {
			tv, c := benchOrders()
			mem := &benchResolver{}
			enc, _ := NewEncoder(format, EncoderConfig{TopicPrefix: "kanal", Registry: mem})
			te, _ := enc.Table(tv)
			if p, ok := te.(TablePreparer); ok {
				recs, err := p.Prepare(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range recs {
					mem.schema = string(r.Value)
				}
			}
			val, err := te.AppendValue(nil, c)
			if err != nil {
				b.Fatal(err)
			}
			d := NewDecoder()
			d.Schemas = mem
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := d.Decode(format, val); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type benchRegistry struct{}

func (benchRegistry) Register(context.Context, string, string) (int, error) { return 1, nil }

// benchResolver keeps the one schema the benchmark registers or publishes.
type benchResolver struct{ schema string }

func (r *benchResolver) Register(_ context.Context, _ string, s string) (int, error) {
	r.schema = s
	return 1, nil
}

func (r *benchResolver) SchemaByFingerprint(context.Context, uint64) (string, error) {
	return r.schema, nil
}

func (r *benchResolver) SchemaByID(_ context.Context, id int) (string, error) {
	if id != 1 {
		return "", fmt.Errorf("%w: %d", ErrSchemaNotFound, id)
	}
	return r.schema, nil
}
