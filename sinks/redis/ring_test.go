package redissink_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestRing: keys spread evenly, the assignment is stable across processes (pinned
// values: an application in another language reimplements the documented
// algorithm), and adding an instance moves only keys to it, about 1/n of them.
func TestRing(t *testing.T) {
	r3, err := redissink.NewRing([]string{"c", "a", "b"}, 160)
	if err != nil {
		t.Fatal(err)
	}
	r4, _ := redissink.NewRing([]string{"a", "b", "c", "d"}, 160)
	const n = 30000
	counts := map[string]int{}
	moved := 0
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("kc:shop.orders:%d", i)
		a, b := r3.Locate(k), r4.Locate(k)
		counts[a]++
		if a != b {
			moved++
			if b != "d" {
				t.Fatalf("%s moved from %s to %s, not to the new instance", k, a, b)
			}
		}
	}
	for name, c := range counts {
		if c < n/3*8/10 || c > n/3*12/10 {
			t.Errorf("instance %s owns %d of %d keys", name, c, n)
		}
	}
	if moved < n/4*7/10 || moved > n/4*13/10 {
		t.Errorf("adding a 4th instance moved %d of %d keys, want about %d", moved, n, n/4)
	}
	got := ""
	for _, k := range []string{"shop.orders:1", "shop.orders:2", "shop.orders:3", "x", ""} {
		got += r3.Locate(k)
	}
	if want := goldenRing; got != want {
		t.Errorf("ring assignment changed: %q, pinned %q (applications reading with the documented algorithm would miss rows)", got, want)
	}
	if _, err := redissink.NewRing([]string{"a", "a"}, 10); err == nil {
		t.Error("duplicate instance accepted")
	}
}

const goldenRing = "aabcc"

// BenchmarkApply reports rows/s the handler applies to a real redis-server, in
// batches of 500 synthetic t.orders changes (2/3 inserts, 1/3 updates of the row
// created just before, which move it to another set; hash layout, with or without
// one secondary set) handed to Handle as the Runner hands them: with offsets, and
// for parts > 1 from that many partitions at once (the Runner applies partitions
// concurrently). After each round the same rows are written again by plain
// pipelined HSETs (go-redis, pipelines of 500 on one connection, database 1 of the
// same server): x-HSET is the handler's rate over that reference rate, measured
// interleaved so that load from other processes hits both alike. srv-µs/row is
// redis-server's CPU time per row applied (INFO cpu). Building the changes is not
// timed. It is a figure, not a test: nothing is asserted about speed.
func BenchmarkApply(b *testing.B) {
	for _, sets := range []bool{true, false} {
		for _, parts := range []int{1, 4} {
			b.Run(fmt.Sprintf("sets=%v/parts=%d", sets, parts), func(b *testing.B) { benchApply(b, sets, parts) })
		}
	}
}

func benchApply(b *testing.B, sets bool, parts int) {
	srv := testenv.Redis(b)
	tc := redissink.TableConfig{Match: "t.*"}
	if sets {
		tc.Sets = []redissink.SetConfig{{Key: "user:{user_id}:orders"}}
	}
	h := newHandler(b, oneInstance(srv.Addr, tc))
	ref := client(b, srv.Addr, 1)
	ctx := ctxT(b)
	const batch = 500
	batches := make([][]consumer.Record, parts)
	var tApply, tRef time.Duration
	var cpuApply float64
	seq := uint64(0)
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := 0
		for p := range batches {
			recs := batches[p][:0]
			for len(recs) < batch && done+n < b.N {
				seq++
				n++
				c := change(schemas.OpCreate, seq, nil, orderRow(int64(seq), seq%1000, "note"))
				if seq%3 == 0 { // an update of the row created just before: it moves to another set
					c = change(schemas.OpUpdate, seq, orderRow(int64(seq-1), (seq-1)%1000, "note"), orderRow(int64(seq-1), seq%1000, "note"))
				}
				r := rec(c)
				r.Offset = int64(seq)
				recs = append(recs, r)
			}
			if seq%3 == 2 { // keep a row and its update in one partition
				seq++
			}
			batches[p] = recs
		}
		b.StartTimer()
		cpu0 := serverCPU(b, ref)
		began := time.Now()
		var wg sync.WaitGroup
		for p, recs := range batches {
			if len(recs) == 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Partition: int32(p), Records: recs}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		tApply += time.Since(began)
		cpuApply += serverCPU(b, ref) - cpu0
		b.StopTimer()
		began = time.Now()
		for _, recs := range batches {
			if len(recs) == 0 {
				continue
			}
			pipe := ref.Pipeline()
			for _, r := range recs {
				row := r.Change.After
				pipe.HSet(ctx, r.Key, "__v", r.Seq, "id", row["id"], "user_id", row["user_id"], "amount", "-12.50",
					"data", []byte{0, 'a', 0xff}, "note", "note", "f", "1.1", "d", "1e+300")
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		tRef += time.Since(began)
		done += n
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)/tApply.Seconds(), "rows/s")
	b.ReportMetric(tRef.Seconds()/tApply.Seconds(), "x-HSET")
	b.ReportMetric(cpuApply/float64(b.N)*1e6, "srv-µs/row")
}

// BenchmarkHSETReference is redis-server's own rate on this machine for rows like
// BenchmarkApply's: plain HSET of the seven columns, pipelines of 500. BenchmarkApply
// measures the same reference interleaved with its batches (x-HSET).
func BenchmarkHSETReference(b *testing.B) {
	srv := testenv.Redis(b)
	cl := client(b, srv.Addr, 0)
	ctx := ctxT(b)
	cpu0 := serverCPU(b, cl)
	b.ResetTimer()
	began := time.Now()
	for i := 0; i < b.N; {
		pipe := cl.Pipeline()
		for j := 0; j < 500 && i < b.N; j, i = j+1, i+1 {
			pipe.HSet(ctx, fmt.Sprintf("t.orders:%d", i), "id", i, "user_id", i%1000, "amount", "-12.50",
				"data", []byte{0, 'a', 0xff}, "note", "note", "f", "1.1", "d", "1e+300")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "rows/s")
	b.ReportMetric((serverCPU(b, cl)-cpu0)/float64(b.N)*1e6, "srv-µs/row")
}

// serverCPU is the CPU time redis-server has used so far (INFO cpu: used_cpu_sys +
// used_cpu_user, seconds): the benchmarks report its growth per row, a figure that
// other processes on the machine disturb much less than a wall-clock rate.
func serverCPU(b *testing.B, cl *redis.Client) float64 {
	info, err := cl.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return total
}
