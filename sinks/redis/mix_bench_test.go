package redissink_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// BenchmarkServerCostMix measures redis-server's CPU per row (srv-µs/row) for a
// change stream shaped like the bench's (57% inserts, 31% updates, 12% deletes each
// followed by its tombstone record; bench.orders-like rows, notes up to ~130 bytes
// so that many hashes are hashtable-encoded), written three ways: "hset-new" is
// bench row 4a's reference (an HSET of a new key per row, pipelines of 1,000),
// "plain" the same mix as plain pipelined commands (HSET; DEL + HSET; DEL), "fenced"
// the handler's fenced batches (6 partitions of 500-record batches, as the Runner
// hands them). Comparing them, or one build with another, shows what the sink
// costs Redis beyond the writes themselves without Kafka or the Runner (see
// docs/bench.md, round 7c); cli-µs/row is this process's CPU per row, the
// handler's and go-redis's (round 7f).
func BenchmarkServerCostMix(b *testing.B) {
	for _, mode := range []string{"hset-new", "plain", "fenced"} {
		b.Run(mode, func(b *testing.B) { benchServerCostMix(b, mode) })
	}
}

// mixCols is a bench.orders-like table.
var mixCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true}, {Name: "customer_id", Type: "int unsigned"}, {Name: "sku", Type: "varchar(32)"},
	{Name: "status", Type: "varchar(16)"}, {Name: "amount", Type: "decimal(12,2)"}, {Name: "qty", Type: "int"},
	{Name: "created_at", Type: "datetime(6)"}, {Name: "note", Type: "text"}, {Name: "stamp_us", Type: "bigint"},
}

// mixStream builds n row changes in parts partitions (a row's changes in one), in
// sequence order, with a tombstone record after each delete.
func mixStream(n, parts int) [][]consumer.Record {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"deliver", "to", "the", "back", "door", "Grüße", "aus", "Köln", "価格", "確認", "🚚", "gift", "wrap", "café"}
	notes := make([]string, 64)
	for i := range notes {
		var w []string
		for range 3 + rng.IntN(20) {
			w = append(w, words[rng.IntN(len(words))])
		}
		notes[i] = strings.Join(w, " ")
	}
	row := func(id int64) map[string]any {
		var note any = notes[rng.IntN(len(notes))]
		if rng.IntN(10) == 0 {
			note = nil
		}
		return map[string]any{"id": id, "customer_id": int64(rng.IntN(5000000)), "sku": "SKU-" + strconv.Itoa(rng.IntN(100000)),
			"status": "paid", "amount": schemas.Decimal("1234.56"), "qty": int64(1 + rng.IntN(20)),
			"created_at": "2024-01-01 10:00:00.123456", "note": note, "stamp_us": int64(1.7e15) + id}
	}
	out := make([][]consumer.Record, parts)
	var live []int64
	next := int64(1)
	for seq := uint64(1); seq <= uint64(n); seq++ {
		var c *schemas.Change
		switch x := rng.IntN(100); {
		case x < 57 || len(live) < 100:
			live = append(live, next)
			c = &schemas.Change{Op: schemas.OpCreate, After: row(next)}
			next++
		case x < 88:
			id := live[rng.IntN(len(live))]
			c = &schemas.Change{Op: schemas.OpUpdate, After: row(id)}
		default:
			i := rng.IntN(len(live))
			c = &schemas.Change{Op: schemas.OpDelete, Before: row(live[i])}
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		c.Seq, c.Source, c.Columns = seq, schemas.Source{DB: "bench", Table: "orders"}, mixCols
		key := c.Key()
		p := int(rowHash(key) % uint32(parts))
		r := consumer.Record{Topic: "kanal.bench.orders", Partition: int32(p), Offset: int64(len(out[p])), Key: key, Table: c.Table(), Op: c.Op, Seq: seq, Change: c}
		out[p] = append(out[p], r)
		if c.Op == schemas.OpDelete {
			r.Offset, r.Tombstone, r.Change, r.Seq = r.Offset+1, true, nil, 0
			out[p] = append(out[p], r)
		}
	}
	return out
}

// rowHash is FNV-1a: any stable spread of keys over partitions will do.
func rowHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func benchServerCostMix(b *testing.B, mode string) {
	srv := testenv.Redis(b)
	cl := client(b, srv.Addr, 0)
	ctx := context.Background()
	const parts = 6
	stream := mixStream(b.N, parts)
	h := newHandler(b, oneInstance(srv.Addr, redissink.TableConfig{Match: "bench.orders"}))
	b.ResetTimer()
	cpu0, self0 := serverCPU(b, cl), selfCPU(b)
	began := time.Now()
	switch mode {
	case "hset-new":
		for i := 0; i < b.N; {
			pipe := cl.Pipeline()
			for j := 0; j < 1000 && i < b.N; j, i = j+1, i+1 {
				pipe.HSet(ctx, "bench.orders:"+strconv.Itoa(i), "id", i, "customer_id", 4711, "sku", "SKU-4711", "status", "paid",
					"amount", "1234.56", "qty", 3, "created_at", "2024-01-01 10:00:00.123456", "note", strings.Repeat("Grüße ", 1+i%20), "stamp_us", i)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	case "plain":
		for _, recs := range stream {
			for len(recs) > 0 {
				n := min(len(recs), 1000)
				pipe := cl.Pipeline()
				for _, r := range recs[:n] {
					switch {
					case r.Tombstone:
						continue
					case r.Op == schemas.OpDelete:
						pipe.Del(ctx, r.Key)
						continue
					case r.Op == schemas.OpUpdate:
						pipe.Del(ctx, r.Key)
					}
					args := []any{"hset", r.Key, "__v", r.Seq}
					for _, c := range mixCols {
						switch v := r.Change.After[c.Name].(type) {
						case nil:
						case schemas.Decimal:
							args = append(args, c.Name, string(v))
						default:
							args = append(args, c.Name, v)
						}
					}
					pipe.Do(ctx, args...)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				recs = recs[n:]
			}
		}
	case "fenced":
		var wg sync.WaitGroup
		for p, recs := range stream {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for len(recs) > 0 {
					n := min(len(recs), 500)
					if err := h.Handle(ctx, consumer.Batch{Topic: "kanal.bench.orders", Partition: int32(p), Records: recs[:n]}); err != nil {
						b.Error(err)
						return
					}
					recs = recs[n:]
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "rows/s")
	b.ReportMetric((serverCPU(b, cl)-cpu0)/float64(b.N)*1e6, "srv-µs/row")
	b.ReportMetric((selfCPU(b)-self0)/float64(b.N)*1e6, "cli-µs/row")
}

// selfCPU returns the CPU seconds this process has used (user and system): the
// client's side of the writes, go-redis's system calls included.
func selfCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
