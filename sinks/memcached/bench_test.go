package memcachedsink_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

// BenchmarkApply measures rows/s through Handle: batches of 500 changes of
// t.orders (half inserts of new rows, half updates of existing ones), each row
// read with gets and written with cas/add. "set-rows/s" is the same rows written
// with plain concurrent sets over as many connections (no version guard), the
// ceiling measured in the same run, and "x-set" the ratio; the goal is
// 50k rows/s.
//
//	go test -run x -bench Apply ./sinks/memcached
func BenchmarkApply(b *testing.B) {
	srv := testenv.Memcached(b)
	cfg := config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"})
	h := newHandler(b, cfg)
	const batch = 500
	var seq uint64
	next := func(i int) []consumer.Record {
		recs := make([]consumer.Record, batch)
		for j := range recs {
			seq++
			id := int64(i*batch/2 + j) // half of each batch updates the previous batch's rows
			op := schemas.OpCreate
			if j < batch/2 && i > 0 {
				op = schemas.OpUpdate
			}
			recs[j] = rec(change(op, seq, id, fmt.Sprintf("note %d with some text to make a realistic row", seq)), int64(seq))
		}
		return recs
	}
	var applied, plain time.Duration
	rows := 0
	mc := memcache.New(srv.Addr)
	mc.MaxIdleConns = cfg.Concurrency + 2
	defer mc.Close()
	for i := 0; b.Loop(); i++ {
		recs := next(i)
		start := time.Now()
		if err := h.Handle(ctxT(b), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
			b.Fatal(err)
		}
		applied += time.Since(start)
		rows += len(recs)
		// The ceiling: the same values with plain sets.
		vals := make([][]byte, len(recs))
		for j := range recs {
			v, err := mc.Get(mustKey(b, h, recs[j]))
			if err != nil {
				b.Fatal(err)
			}
			vals[j] = v.Value
		}
		start = time.Now()
		setAll(b, mc, cfg.Concurrency, recs, vals)
		plain += time.Since(start)
	}
	b.ReportMetric(float64(rows)/applied.Seconds(), "rows/s")
	b.ReportMetric(float64(rows)/plain.Seconds(), "set-rows/s")
	b.ReportMetric(plain.Seconds()/applied.Seconds(), "x-set")
}

func mustKey(b *testing.B, h *memcachedsink.Handler, r consumer.Record) string {
	k, ok := h.ItemKey(r.Table, r.Key)
	if !ok {
		b.Fatalf("no key for %s", r.Key)
	}
	return k
}

func setAll(b *testing.B, mc *memcache.Client, workers int, recs []consumer.Record, vals [][]byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(recs) {
					return
				}
				if err := mc.Set(&memcache.Item{Key: "plain:" + recs[i].Key, Value: vals[i]}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
