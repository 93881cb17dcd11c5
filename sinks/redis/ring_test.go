package redissink_test

import (
	"fmt"
	"testing"
	"time"

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

// BenchmarkApply reports rows/s the handler applies to a real redis-server through
// ApplyChanges, in batches of 500 synthetic t.orders changes (2/3 inserts, 1/3
// updates of recent rows; hash layout with one secondary set). It is a figure, not
// a test: nothing is asserted about speed.
func BenchmarkApply(b *testing.B) {
	srv := testenv.Redis(b)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Sets: []redissink.SetConfig{{Key: "user:{user_id}:orders"}}})
	h := newHandler(b, cfg)
	ctx := ctxT(b)
	batch := make([]*schemas.Change, 0, 500)
	seq := uint64(0)
	b.ResetTimer()
	began := time.Now()
	for i := 0; i < b.N; i++ {
		seq++
		id := int64(seq)
		op := schemas.OpCreate
		if seq%3 == 0 {
			id = int64(seq - 1)
			op = schemas.OpUpdate
		}
		batch = append(batch, change(op, seq, nil, orderRow(id, uint64(seq%1000), "note")))
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := h.ApplyChanges(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "rows/s")
}

// BenchmarkHSETReference is redis-server's own rate on this machine for the same
// rows: plain HSET of the seven columns, pipelines of 500. BenchmarkApply's figure
// is to be read against it.
func BenchmarkHSETReference(b *testing.B) {
	srv := testenv.Redis(b)
	cl := client(b, srv.Addr, 0)
	ctx := ctxT(b)
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
}
