package redissink_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// The OffsetResetter `kanal offsets reset --config` calls for the handler's group.
var _ consumer.OffsetResetter = (*redissink.Handler)(nil)

// twoInstances is a config with t.orders (a set per user) on instance "a"
// (database 0) and t.users on instance "b" (database 1) of one server.
func twoInstances(addr string) redissink.Config {
	cfg := redissink.DefaultConfig()
	cfg.Instances = map[string]redissink.InstanceConfig{"a": {Addr: addr}, "b": {Addr: addr, DB: 1}}
	cfg.Tables = []redissink.TableConfig{
		{Match: "t.orders", Instances: []string{"a"}, Sets: []redissink.SetConfig{{Key: "user:{user_id}:orders"}}},
		{Match: "t.users", Instances: []string{"b"}},
	}
	return cfg
}

// userRec is a t.users change of row id at sequence (and offset) seq, in the
// t.orders topic's partition (a partition holds what the test puts in it).
func userRec(seq uint64, id int64, note string) consumer.Record {
	c := change(schemas.OpCreate, seq, nil, orderRow(id, nil, note))
	c.Source.Table = "users"
	r := rec(c)
	r.Topic = "kanal.t.orders"
	return r
}

// wmKey is the watermark of partition 0 of kanal.t.orders on inst.
func wmKey(inst string) string {
	return redissink.WatermarkPrefix + "redis:" + inst + ":kanal.t.orders:0"
}

// TestRejectedRecordAcrossInstances: record 10 (t.orders, instance a) is rejected
// by Redis (its set key holds a string) while records 11 and 12 (t.users, instance
// b) are applied. Whenever the Runner hands record 10 again — with 11 and 12, as
// its bisection does — the batch must fail permanently naming record 10, never be
// skipped as applied: instance b's share starting past offset 10 must not make the
// handler forget the failure on instance a. Once the Runner has gone past it, the
// failure is forgotten.
func TestRejectedRecordAcrossInstances(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, twoInstances(srv.Addr))
	ctx := ctxT(t)
	client(t, srv.Addr, 0).Set(ctx, "user:77:orders", "x", 0)

	bad := rec(change(schemas.OpCreate, 10, nil, orderRow(1, uint64(77), "n")))
	recs := []consumer.Record{bad, userRec(11, 1, "u"), userRec(12, 2, "u")}
	for i := range 50 {
		err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Records: recs})
		if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "t.orders:1") || !strings.Contains(err.Error(), "offset 10") ||
			!strings.Contains(err.Error(), "partition 0") || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("hand %d: err = %v, want permanent WRONGTYPE naming t.orders:1 at offset 10 of partition 0", i, err)
		}
	}
	// The Runner dead-letters record 10 and goes on: a batch starting past it
	// forgets the failure.
	handle(t, h, userRec(11, 1, "u"), userRec(12, 2, "u"), userRec(13, 3, "u"))
	handle(t, h, rec(change(schemas.OpCreate, 14, nil, orderRow(2, nil, "n"))))
}

// history is a partition of t.orders: rows 1..5 created (sequences 10-50, user 1),
// then updated twice (60-100 to user 2, 110-150 to user 3), then row 5 deleted
// (160) with its tombstone (offset 170); each change's offset is its sequence (the
// gaps stand for other rows' changes).
func history() (a, b, c []consumer.Record) {
	for id := int64(1); id <= 5; id++ {
		a = append(a, rec(change(schemas.OpCreate, uint64(10*id), nil, orderRow(id, uint64(1), "a"))))
		b = append(b, rec(change(schemas.OpUpdate, uint64(10*id+50), nil, orderRow(id, uint64(2), "b"))))
		c = append(c, rec(change(schemas.OpUpdate, uint64(10*id+100), nil, orderRow(id, uint64(3), "c"))))
	}
	del := change(schemas.OpDelete, 160, orderRow(5, uint64(3), "c"), nil)
	c = append(c, rec(del), tomb(del.Key(), 170))
	return a, b, c
}

// expectRows checks the notes of rows 1..4 (row 5 is deleted) and that the sets
// hold exactly those rows under want's user.
func expectRows(t *testing.T, cl *redis.Client, note string, user int) {
	t.Helper()
	ctx := ctxT(t)
	for id := 1; id <= 4; id++ {
		if got := cl.HGet(ctx, "t.orders:"+strconv.Itoa(id), "note").Val(); got != note {
			t.Fatalf("t.orders:%d: note %q, want %q", id, got, note)
		}
	}
	if n := cl.Exists(ctx, "t.orders:5").Val(); n != 0 {
		t.Fatal("deleted row t.orders:5 is back")
	}
	for u := 1; u <= 3; u++ {
		want := int64(0)
		if u == user {
			want = 4
		}
		if n := cl.SCard(ctx, "user:"+strconv.Itoa(u)+":orders").Val(); n != want {
			t.Fatalf("user:%d:orders has %d members, want %d", u, n, want)
		}
	}
}

// TestLostWatermark: the watermark key is gone (evicted, deleted by an operator,
// the handler renamed) while a zombie consumer still holds old batches of the
// partition. Its batches are version-checked, not applied blindly: the newer rows,
// their set memberships and the delete survive — also for its second old batch
// and a lone tombstone, not only the first batch after the loss. Once a batch
// finds nothing older than what Redis holds, the watermark is found again and the
// plain path resumes.
func TestLostWatermark(t *testing.T) {
	srv := startRedis(t)
	cfg := twoInstances(srv.Addr)
	live, zombie := newHandler(t, cfg), newHandler(t, cfg)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	a, b, c := history()
	handle(t, live, a...)
	handle(t, zombie, a...) // the zombie owned the partition before the rebalance
	handle(t, live, b...)
	handle(t, live, c...)
	expectRows(t, cl, "c", 3)
	// The tombstone at 170 follows its delete: skipped, it does not move the watermark.
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "161 160 0" {
		t.Fatalf("watermark %q, want %q (next offset, highest sequence, nothing to check)", got, "161 160 0")
	}

	cl.Del(ctx, wmKey("a"))
	before := zombie.Stats()
	handle(t, zombie, b...)
	expectRows(t, cl, "c", 3)
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "101 0 ?" {
		t.Fatalf("watermark after a version-checked batch that found newer rows: %q, want %q (still lost)", got, "101 0 ?")
	}
	// A lone tombstone (row 1 was deleted after sequence 100, then re-created by
	// an update at 110 that Redis holds; the delete is compacted away, so its
	// version is unknown: newer than the changes before it, which is all the
	// handler can tell), then the zombie's next old batch.
	handle(t, zombie, tomb("t.orders:1", 101))
	handle(t, zombie, c[:4]...)
	expectRows(t, cl, "c", 3)
	if s := zombie.Stats(); s.Stale-before.Stale != 10 || s.Upserts != before.Upserts || s.Deletes != before.Deletes {
		t.Fatalf("zombie stats %+v, before %+v: want its 10 old changes stale, nothing written", s, before)
	}

	// The live consumer's next changes are newer than anything Redis holds: the
	// batch is clean, the watermark is found and the plain path resumes.
	handle(t, live, rec(change(schemas.OpUpdate, 180, nil, orderRow(1, uint64(3), "d"))))
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "181 180 0" {
		t.Fatalf("watermark after a clean batch: %q, want %q", got, "181 180 0")
	}
	handle(t, live, rec(change(schemas.OpUpdate, 190, nil, orderRow(2, uint64(3), "d"))))
	if got := cl.HGet(ctx, "t.orders:2", "note").Val(); got != "d" {
		t.Fatalf("t.orders:2 note %q after the plain path resumed", got)
	}
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "191 190 0" {
		t.Fatalf("watermark %q, want %q", got, "191 190 0")
	}
}

// TestResetOffsetsHeals: Redis lost writes (a restart without fsync: the state and
// watermark of offset 50 came back) while the consumer went on from offset 110, so
// the watermark moved past the gap and a plain replay changes nothing. After
// ResetOffsets (what `kanal offsets reset --config` calls) a replay from earliest
// re-applies the lost changes, keeps the rows Redis holds at newer versions — no
// row ever goes back while it runs — and the plain path resumes after the highest
// sequence Redis held. The watermarks of every instance are reset; a partition
// without one gets none.
func TestResetOffsetsHeals(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, twoInstances(srv.Addr))
	cl, clb := client(t, srv.Addr, 0), client(t, srv.Addr, 1)
	ctx := ctxT(t)
	a, b, c := history()
	// Resetting partitions that never wrote creates no watermark.
	if err := h.ResetOffsets(ctx, "kanal-redis", map[string]map[int32]int64{"kanal.t.orders": {0: 0}}); err != nil {
		t.Fatal(err)
	}
	if n := cl.Exists(ctx, wmKey("a")).Val() + clb.Exists(ctx, wmKey("b")).Val(); n != 0 {
		t.Fatal("a reset created watermarks")
	}
	// Redis kept a, lost b and row 4's update in c; the consumer went on with
	// the rest of c and a users row (instance b).
	handle(t, h, a...)
	c4 := append(append([]consumer.Record{}, c[:3]...), c[4:]...)
	handle(t, h, append(c4, userRec(180, 1, "u"))...)
	version := func(id int) uint64 {
		v, _ := cl.HGet(ctx, "t.orders:"+strconv.Itoa(id), redissink.FieldVersion).Uint64()
		return v
	}
	if version(4) != 40 {
		t.Fatalf("row 4 at version %d, want 40 (its later changes lost)", version(4))
	}
	replay := func() {
		seen := map[int]uint64{}
		for _, batch := range [][]consumer.Record{a, b, c, {userRec(180, 1, "u")}} {
			handle(t, h, batch...)
			for id := 1; id <= 4; id++ {
				if v := version(id); v < seen[id] {
					t.Fatalf("during the replay t.orders:%d went back from version %d to %d", id, seen[id], v)
				}
				seen[id] = version(id)
			}
		}
	}
	replay()
	if version(4) != 40 {
		t.Fatal("a replay without reset applied something below the watermark")
	}

	if err := h.ResetOffsets(ctx, "kanal-redis", map[string]map[int32]int64{"kanal.t.orders": {0: 0, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		cl         *redis.Client
		inst, want string
	}{{cl, "a", "0 160 160"}, {clb, "b", "0 180 180"}} {
		if got := k.cl.Get(ctx, wmKey(k.inst)).Val(); got != k.want {
			t.Fatalf("instance %s watermark after the reset %q, want %q", k.inst, got, k.want)
		}
		if n := k.cl.Exists(ctx, strings.TrimSuffix(wmKey(k.inst), "0")+"1").Val(); n != 0 {
			t.Fatalf("instance %s: the reset created a watermark for partition 1", k.inst)
		}
	}
	replay()
	expectRows(t, cl, "c", 3)
	if got := clb.HGet(ctx, "t.orders:1", "note").Val(); got != "" {
		t.Fatalf("t.orders row on instance b: %q", got)
	}
	if got := clb.HGet(ctx, "t.users:1", "note").Val(); got != "u" {
		t.Fatalf("t.users:1 on instance b: note %q", got)
	}
	// Past sequence 160 the records are newer than anything instance a held:
	// plain path.
	handle(t, h, rec(change(schemas.OpUpdate, 190, nil, orderRow(1, uint64(3), "e"))))
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "191 190 0" {
		t.Fatalf("watermark %q, want %q", got, "191 190 0")
	}
}

// TestWatermarkFormats: a watermark of the earlier format ("<next>" alone) is read
// as a watermark without a known sequence — the plain path goes on and writes the
// new format — and a value that is no watermark is treated as lost: the batch is
// version-checked (an older change does not overwrite a newer row).
func TestWatermarkFormats(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, twoInstances(srv.Addr))
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	a, b, c := history()
	handle(t, h, a...)
	cl.Set(ctx, wmKey("a"), "51", 0)
	handle(t, h, b...)
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "101 100 0" {
		t.Fatalf("watermark %q after an earlier-format one, want %q", got, "101 100 0")
	}
	handle(t, h, c...)
	cl.Set(ctx, wmKey("a"), "not a watermark", 0)
	handle(t, h, b...)
	expectRows(t, cl, "c", 3)
	if got := cl.Get(ctx, wmKey("a")).Val(); got != "101 0 ?" {
		t.Fatalf("watermark %q after an unreadable one, want %q", got, "101 0 ?")
	}
	cl.Del(ctx, wmKey("a"))
	cl.HSet(ctx, wmKey("a"), "x", "y") // another type
	handle(t, h, b...)
	expectRows(t, cl, "c", 3)
}

// TestUpdateAfterDeleteDropsTombstone: an update (not a create) of a deleted row —
// its re-create was compacted away — removes the row's tombstone, so a row and its
// tombstone never exist together and, with tombstone_ttl 0, no tombstone leaks.
func TestUpdateAfterDeleteDropsTombstone(t *testing.T) {
	for _, layout := range []string{redissink.LayoutHash, redissink.LayoutJSON} {
		t.Run(layout, func(t *testing.T) {
			srv := startRedis(t)
			cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Layout: layout})
			cfg.TombstoneTTL = 0
			h := newHandler(t, cfg)
			cl := client(t, srv.Addr, 0)
			ctx := ctxT(t)
			handle(t, h, rec(change(schemas.OpCreate, 1, nil, orderRow(1, nil, "a"))))
			handle(t, h, rec(change(schemas.OpDelete, 2, orderRow(1, nil, "a"), nil)))
			if n := cl.Exists(ctx, "__kanal:tomb:t.orders:1").Val(); n != 1 {
				t.Fatal("no tombstone after the delete")
			}
			handle(t, h, rec(change(schemas.OpUpdate, 4, orderRow(1, nil, "b"), orderRow(1, nil, "c"))))
			if n := cl.Exists(ctx, "t.orders:1").Val(); n != 1 {
				t.Fatal("the update did not write the row")
			}
			if n := cl.Exists(ctx, "__kanal:tomb:t.orders:1").Val(); n != 0 {
				t.Fatal("the row and its tombstone exist together")
			}
			if keys := dataKeys(t, cl); len(keys) != 1 {
				t.Fatalf("keys %q, want the row only", keys)
			}
		})
	}
}

// TestRejectedRowInScriptChunk: lone tombstones go through the apply script, many
// rows per call. When one row's set key holds another type, that row is named in
// the permanent error (not the first row of the call), and the rows after it in
// the same call are still applied — the call must not abort half-way while the
// watermark moves past all of them.
func TestRejectedRowInScriptChunk(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Sets: []redissink.SetConfig{{Key: "user:{user_id}:orders"}}}))
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	var recs []consumer.Record
	for id := int64(1); id <= 5; id++ {
		recs = append(recs, rec(change(schemas.OpCreate, uint64(id), nil, orderRow(id, uint64(id), "a"))))
	}
	handle(t, h, recs...)
	cl.Del(ctx, "user:3:orders")
	cl.Set(ctx, "user:3:orders", "x", 0)
	var tombs []consumer.Record
	for id := 1; id <= 5; id++ {
		tombs = append(tombs, tomb("t.orders:"+strconv.Itoa(id), int64(10+id)))
	}
	for range 2 { // again when the Runner hands it again
		err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Records: tombs})
		if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "key t.orders:3, offset 13") || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("err = %v, want permanent WRONGTYPE naming t.orders:3 at offset 13", err)
		}
	}
	for id := 1; id <= 5; id++ {
		if n := cl.Exists(ctx, "t.orders:"+strconv.Itoa(id)).Val(); n != 0 {
			t.Errorf("t.orders:%d still exists: the script call stopped at the bad row", id)
		}
		if id != 3 && cl.SCard(ctx, "user:"+strconv.Itoa(id)+":orders").Val() != 0 {
			t.Errorf("t.orders:%d is still in its set", id)
		}
	}
}

// TestErrorsNamePartition: errors name the partition and the offsets: a record
// the sink cannot store by table, key, partition and offset; Redis being down by
// instance, partition and the batch's offset range.
func TestErrorsNamePartition(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	ctx := ctxT(t)
	weird := rec(change(schemas.OpCreate, 7, nil, orderRow(1, nil, struct{}{})))
	err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Partition: 2, Records: []consumer.Record{weird}})
	if want := "topic kanal.t.orders partition 2: table t.orders, key t.orders:1, offset 7"; !consumer.IsPermanent(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want permanent naming %q", err, want)
	}
	srv.Kill()
	recs := []consumer.Record{rec(change(schemas.OpCreate, 3, nil, orderRow(1, nil, nil))), rec(change(schemas.OpCreate, 5, nil, orderRow(2, nil, nil)))}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = h.Handle(cctx, consumer.Batch{Topic: "kanal.t.orders", Partition: 2, Records: recs})
	if want := "instance main: topic kanal.t.orders partition 2, offsets 3-5 (2 changes)"; err == nil || consumer.IsPermanent(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Redis down: err = %v, want a transient error naming %q", err, want)
	}
}
