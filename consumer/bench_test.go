package consumer_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// ordersColumns are the columns of the bench workload's bench.orders table.
var ordersColumns = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "customer_id", Type: "int unsigned"},
	{Name: "sku", Type: "varchar"},
	{Name: "status", Type: "enum"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "qty", Type: "int unsigned"},
	{Name: "created_at", Type: "datetime(6)"},
	{Name: "note", Type: "text"},
	{Name: "stamp_us", Type: "bigint"},
}

// orderRecord builds a kanal JSON record of bench.orders as the producer writes it:
// updates carry both images.
func orderRecord(seq uint64, id int64) *kgo.Record {
	op := []schemas.Op{schemas.OpCreate, schemas.OpUpdate, schemas.OpUpdate, schemas.OpDelete}[seq%4]
	row := func(qty int64) []any {
		return []any{id, uint64(id % 5000), "SKU-" + strconv.FormatInt(id%977, 10) + "-größe", "shipped",
			"1234.56", uint64(qty), "2024-06-01 12:34:56.123456", "Zustellung an Café 東京 🚚", int64(1717245296123456)}
	}
	env := schemas.Envelope{Op: op, Seq: seq, Columns: ordersColumns,
		Source: &schemas.Source{Name: "bench", ServerID: 1, File: "mysql-bin.000001", Pos: uint32(seq * 100), TsMs: 1717245296000, DB: "bench", Table: "orders", Row: int(seq % 1000)}}
	switch op {
	case schemas.OpCreate:
		env.After = row(1)
	case schemas.OpUpdate:
		env.Before, env.After = row(1), row(2)
	case schemas.OpDelete:
		env.Before = row(2)
	}
	return &kgo.Record{
		Topic: "kanal.bench.orders",
		Key:   schemas.AppendKey(nil, "bench", "orders", []any{id}),
		Value: env.AppendJSON(nil),
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderOp, Value: []byte(op)},
			{Key: schemas.HeaderPos, Value: []byte("mysql-bin.000001:" + strconv.FormatUint(seq*100, 10))},
			{Key: schemas.HeaderSeq, Value: []byte(strconv.FormatUint(seq, 10))},
			{Key: schemas.HeaderFormat, Value: []byte("json")},
		},
	}
}

// BenchmarkDecodeJSON measures decoding one bench.orders change record.
func BenchmarkDecodeJSON(b *testing.B) {
	recs := make([][]byte, 4)
	for i := range recs {
		recs[i] = orderRecord(uint64(i+1), int64(i+1)).Value
	}
	for _, alias := range []bool{false, true} {
		b.Run(fmt.Sprintf("alias=%t", alias), func(b *testing.B) {
			d := schemas.NewDecoder()
			d.Alias = alias
			b.ReportAllocs()
			for i := range b.N {
				if _, err := d.DecodeJSON(recs[i%4]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordDecode measures a worker's decoding of bench.orders records
// (inserts, updates and deletes 1:2:1, with the producer's headers) into a
// batch's records, as for a group whose handlers read update before images and
// for one whose handlers do not (consumer.UpdateBeforeUser).
func BenchmarkRecordDecode(b *testing.B) {
	krs := make([]*kgo.Record, 500)
	for i := range krs {
		krs[i] = orderRecord(uint64(i+1), int64(i%200+1))
	}
	for _, skip := range []bool{false, true} {
		b.Run(fmt.Sprintf("skipUpdateBefore=%t", skip), func(b *testing.B) {
			d := consumer.NewRecordDecoder(skip)
			run := make([]consumer.Record, 0, len(krs))
			b.ReportAllocs()
			for i := range b.N {
				if i%len(krs) == 0 {
					run = make([]consumer.Record, 0, len(krs)) // a batch's, as the worker makes
				}
				var err error
				if run, err = d.Decode(run, krs[i%len(krs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// countingHandler counts the records it is handed; with perRecord set it takes
// that long per record (sleeping, like a handler waiting on its sink).
type countingHandler struct {
	n         atomic.Int64
	perRecord time.Duration
}

func (h *countingHandler) Name() string { return "count" }
func (h *countingHandler) Handle(_ context.Context, b consumer.Batch) error {
	if h.perRecord > 0 {
		time.Sleep(time.Duration(len(b.Records)) * h.perRecord)
	}
	h.n.Add(int64(len(b.Records)))
	return nil
}

// BenchmarkRunner measures the Runner's own path (fetch, decode, batching,
// commits) with a handler that does nothing: b.N records on 6 partitions of an
// in-process kfake, read by one Runner from a new group.
func BenchmarkRunner(b *testing.B) {
	for _, per := range []time.Duration{0, 10 * time.Microsecond} {
		b.Run(fmt.Sprintf("handler=%v/record", per), func(b *testing.B) { benchRunner(b, per) })
	}
}

func benchRunner(b *testing.B, perRecord time.Duration) {
	if testing.Short() {
		b.Skip("needs kfake")
	}
	k := testenv.Kafka(b)
	ctx := context.Background()
	cl := k.Client(b, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond))
	adm := kadm.NewClient(k.Client(b))
	if _, err := adm.CreateTopic(ctx, 6, -1, nil, "kanal.bench.orders"); err != nil {
		b.Fatal(err)
	}
	n := max(b.N, 1000)
	for i := 0; i < n; i += 10000 {
		var batch []*kgo.Record
		for j := i; j < min(n, i+10000); j++ {
			batch = append(batch, orderRecord(uint64(j+1), int64(j%50000+1)))
		}
		if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	h := &countingHandler{perRecord: perRecord}
	reg := consumer.NewRegistry()
	if err := reg.Register(h, consumer.Tables("bench.orders"), consumer.Group(fmt.Sprintf("bench-%d", b.N))); err != nil {
		b.Fatal(err)
	}
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = k.Brokers
	cfg.Heartbeats = false
	r, err := consumer.NewRunner(cfg, reg, nil)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- r.Run(rctx) }()
	deadline := time.After(5 * time.Minute)
	for h.n.Load() < int64(n) {
		select {
		case err := <-done:
			b.Fatalf("runner stopped: %v", err)
		case <-deadline:
			b.Fatalf("%d of %d records in 5 minutes", h.n.Load(), n)
		case <-time.After(2 * time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	cancel()
	<-done
}
