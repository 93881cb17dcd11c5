package redissink_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestFencedRacingWriters: three handlers of the same sink (a consumer and the
// zombie it replaced after a rebalance, and a replay group started later) apply one
// partition's history from its beginning at the same time, each in its own batch
// sizes.
// While they race, no row's version ever goes back; at the end Redis holds exactly
// each row's last state and its set memberships; every record is accounted for
// once per handler in Stats, and all handlers together applied each record at most
// once.
func TestFencedRacingWriters(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Sets: []redissink.SetConfig{{Key: "user:{user_id}:orders"}}})
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)

	// The partition: changes of 200 rows with full before images, a tombstone after
	// each delete.
	rnd := rand.New(rand.NewPCG(1, 2))
	rows := map[int64]map[string]any{}
	var recs []consumer.Record
	for seq := uint64(1); len(recs) < 3000; seq++ {
		id := int64(rnd.IntN(200))
		old := rows[id]
		var user any = uint64(rnd.IntN(5))
		if rnd.IntN(6) == 0 {
			user = nil
		}
		row := orderRow(id, user, "n"+strconv.FormatUint(seq, 10))
		var c *schemas.Change
		switch {
		case old == nil:
			c = change(schemas.OpCreate, seq, nil, row)
			rows[id] = row
		case rnd.IntN(4) == 0:
			c = change(schemas.OpDelete, seq, old, nil)
			delete(rows, id)
		default:
			c = change(schemas.OpUpdate, seq, old, row)
			rows[id] = row
		}
		r := rec(c)
		r.Offset = int64(len(recs))
		recs = append(recs, r)
		if c.Op == schemas.OpDelete {
			tb := tomb(c.Key(), int64(len(recs)))
			recs = append(recs, tb)
		}
	}

	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() { // versions only move forward
		seen := map[string]uint64{}
		for {
			select {
			case <-stop:
				watched <- nil
				return
			default:
			}
			for id := range 200 {
				k := "t.orders:" + strconv.Itoa(id)
				v, err := cl.HGet(context.Background(), k, redissink.FieldVersion).Uint64()
				if err != nil {
					continue // no row
				}
				if v < seen[k] {
					watched <- &versionError{k, seen[k], v}
					return
				}
				seen[k] = v
			}
		}
	}()

	// The replay group starts from the beginning once the consumer is half-way.
	starts := []int{0, 0, 1500}
	handlers := make([]*redissink.Handler, len(starts))
	handed := make([]int, len(starts))
	var wg sync.WaitGroup
	var progress atomic.Int64 // records handler 0 has applied
	for i := range starts {
		handlers[i] = newHandler(t, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for progress.Load() < int64(starts[i]) {
				time.Sleep(time.Millisecond)
			}
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for at := 0; at < len(recs); {
				n := min(len(recs)-at, 1+r.IntN(200))
				// Records of one Kafka offset stay together (as the Runner delivers).
				err := handlers[i].Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Records: recs[at : at+n]})
				if err != nil {
					t.Errorf("handler %d at offset %d: %v", i, at, err)
					return
				}
				handed[i] += n
				at += n
				if i == 0 {
					progress.Store(int64(at))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}

	for id := range 200 {
		k := "t.orders:" + strconv.Itoa(id)
		got, _ := cl.HGetAll(ctx, k).Result()
		want := rows[int64(id)]
		if want == nil {
			if len(got) != 0 {
				t.Errorf("%s exists (%v), but the row was deleted", k, got)
			}
			continue
		}
		if got["note"] != want["note"] {
			t.Errorf("%s: note %q, want %q", k, got["note"], want["note"])
		}
	}
	wantSets := map[string][]string{}
	for id, row := range rows {
		if u := row["user_id"]; u != nil {
			k := "user:" + strconv.FormatUint(u.(uint64), 10) + ":orders"
			wantSets[k] = append(wantSets[k], strconv.FormatInt(id, 10))
		}
	}
	for u := range 5 {
		k := "user:" + strconv.Itoa(u) + ":orders"
		got := cl.SMembers(ctx, k).Val()
		sort.Strings(got)
		want := wantSets[k]
		sort.Strings(want)
		if !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	applied := uint64(0)
	for i, h := range handlers {
		s := h.Stats()
		if n := s.Upserts + s.Deletes + s.Stale + s.Skipped; n != uint64(handed[i]) {
			t.Errorf("handler %d: stats %+v account for %d records, it was handed %d", i, s, n, handed[i])
		}
		applied += s.Upserts + s.Deletes
	}
	if applied > uint64(len(recs)) {
		t.Errorf("the handlers applied %d changes of %d records: some more than once", applied, len(recs))
	}
	t.Logf("applied %d of %d records; %+v %+v %+v", applied, len(recs), handlers[0].Stats(), handlers[1].Stats(), handlers[2].Stats())
}

type versionError struct {
	key      string
	from, to uint64
}

func (e *versionError) Error() string {
	return e.key + " moved back from version " + strconv.FormatUint(e.from, 10) + " to " + strconv.FormatUint(e.to, 10)
}

// TestFencedStaleBatchEndsWatch: a batch that is all below the watermark (a
// redelivery) sends no transaction, so nothing ends its WATCH but an UNWATCH;
// without it the connection goes back to the pool still watching that
// partition's watermark, and the next batch on it — another partition's —
// fails its first EXEC as soon as the first partition's watermark moves. With
// one pooled connection every batch uses the same one; EXEC calls are counted
// by the server.
func TestFencedStaleBatchEndsWatch(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"})
	in := cfg.Instances["main"]
	in.PoolSize = 1
	cfg.Instances["main"] = in
	h := newHandler(t, cfg)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	p0 := []consumer.Record{rec(change(schemas.OpCreate, 1, nil, orderRow(1, nil, "a")))}
	for range 2 { // applied, then redelivered: all stale
		if err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Partition: 0, Records: p0}); err != nil {
			t.Fatal(err)
		}
	}
	if s := h.Stats(); s.Upserts != 1 || s.Stale != 1 {
		t.Fatalf("stats %+v, want 1 upsert and 1 stale", s)
	}
	// The first batch found the lost (missing) watermark again, on the batch's
	// own connection: with a pool of one, another would have waited for it.
	wm := redissink.WatermarkPrefix + "redis:main:kanal.t.orders:0"
	if v := cl.Get(ctx, wm).Val(); v != "2 1 0" {
		t.Fatalf("watermark %q, want \"2 1 0\" (found again after a clean batch)", v)
	}
	// Another writer (the partition's new owner) moves partition 0's watermark.
	if err := cl.Set(ctx, wm, "5 5 0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	execs := func() int {
		for _, line := range strings.Split(cl.Info(ctx, "commandstats").Val(), "\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_exec:calls="); ok {
				n, _ := strconv.Atoi(v[:strings.IndexByte(v, ',')])
				return n
			}
		}
		return 0
	}
	before := execs()
	p1 := []consumer.Record{rec(change(schemas.OpCreate, 2, nil, orderRow(2, nil, "b")))}
	if err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Partition: 1, Records: p1}); err != nil {
		t.Fatal(err)
	}
	if n := execs() - before; n != 1 {
		t.Errorf("partition 1's batch took %d EXECs, want 1: its connection still watched partition 0's watermark", n)
	}
}
