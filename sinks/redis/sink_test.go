package redissink_test

import (
	"errors"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestValuesHash: every value type is stored exactly in the hash layout: DECIMAL as
// its text, bytes raw (NUL and 0xff kept), floats in shortest form, NULL left out of
// the hash and named in __nulls, the empty string stored as an empty field.
func TestValuesHash(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	row := orderRow(7, nil, "")
	row["amount"] = schemas.Decimal("-0.00001")
	row["user_id"] = nil
	handle(t, h, rec(change(schemas.OpCreate, 5, nil, row)))

	got, err := client(t, srv.Addr, 0).HGetAll(ctxT(t), "t.orders:7").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"__v": "5", "id": "7", "amount": "-0.00001", "data": "\x00a\xff",
		"note": "", "f": "1.1", "d": "1e+300", "__nulls": "user_id"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hash = %q\nwant %q", got, want)
	}
	rd, err := redissink.NewReader(oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	r, ok, err := rd.Get(ctxT(t), "t.orders:7")
	if err != nil || !ok {
		t.Fatalf("Get: %v %v", ok, err)
	}
	if r.Version != 5 || !r.Null["user_id"] || r.Null["note"] || r.Values["note"] != "" || r.Values["data"] != "\x00a\xff" {
		t.Fatalf("Reader.Get = %+v", r)
	}
	if _, ok, _ := rd.Get(ctxT(t), "t.orders:8"); ok {
		t.Fatal("Get of a missing row says it exists")
	}
}

// TestValuesJSON: the JSON layout stores one object per row: NULL as null, DECIMAL
// as an exact string, bytes as base64, uint64 beyond 2^53 as an exact number.
func TestValuesJSON(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Layout: redissink.LayoutJSON})
	h := newHandler(t, cfg)
	row := orderRow(7, uint64(18446744073709551615), nil)
	row["note"] = "a\"b\\c\n\u2028€"
	row["d"] = nil
	handle(t, h, rec(change(schemas.OpCreate, 9, nil, row)))
	got, err := client(t, srv.Addr, 0).Get(ctxT(t), "t.orders:7").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"__v":9,"id":7,"user_id":18446744073709551615,"amount":"-12.50","data":"AGH/","note":"a\"b\\c\n\u2028€","f":1.1,"d":null}`
	if got != want {
		t.Fatalf("JSON = %s\nwant   %s", got, want)
	}
	r, err := redissink.DecodeJSON([]byte(got))
	if err != nil || r.Version != 9 || !r.Null["d"] || r.Values["user_id"] != "18446744073709551615" || r.Values["note"] != "a\"b\\c\n\u2028€" {
		t.Fatalf("DecodeJSON = %+v, %v", r, err)
	}
}

// TestColumnsSelectRename: include/exclude drop columns, rename changes field names.
func TestColumnsSelectRename(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr,
		redissink.TableConfig{Match: "t.orders", Columns: redissink.ColumnsConfig{
			Exclude: []string{"data", "f", "d"}, Rename: map[string]string{"user_id": "uid"}}})
	pfx := "c:"
	cfg.KeyPrefix = pfx
	h := newHandler(t, cfg)
	handle(t, h, rec(change(schemas.OpCreate, 1, nil, orderRow(1, uint64(3), "n"))))
	got, _ := client(t, srv.Addr, 0).HGetAll(ctxT(t), "c:t.orders:1").Result()
	want := map[string]string{"__v": "1", "id": "1", "uid": "3", "amount": "-12.50", "note": "n"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hash = %q, want %q", got, want)
	}

	cfg.Tables[0].Columns = redissink.ColumnsConfig{Include: []string{"id", "note"}}
	h2 := newHandler(t, cfg)
	handle(t, h2, rec(change(schemas.OpUpdate, 2, orderRow(1, uint64(3), "n"), orderRow(1, uint64(3), "m"))))
	got, _ = client(t, srv.Addr, 0).HGetAll(ctxT(t), "c:t.orders:1").Result()
	want = map[string]string{"__v": "2", "id": "1", "note": "m"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after include: hash = %q, want %q (fields of the old image must be gone)", got, want)
	}
}

// TestVersionGuard: older changes never move a row backwards, a delete's tombstone
// keeps a replayed older insert from resurrecting the row and expires after the TTL,
// and a re-insert after the delete is applied.
func TestVersionGuard(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"})
	cfg.TombstoneTTL = time.Hour
	h := newHandler(t, cfg)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	note := func() string { return cl.HGet(ctx, "t.orders:1", "note").Val() }

	c1 := change(schemas.OpCreate, 10, nil, orderRow(1, uint64(1), "v10"))
	c2 := change(schemas.OpUpdate, 20, orderRow(1, uint64(1), "v10"), orderRow(1, uint64(1), "v20"))
	handle(t, h, rec(c1), rec(c2))
	handle(t, h, rec(c1)) // replay of the older insert
	if note() != "v20" {
		t.Fatalf("replayed v10 moved the row back: note = %q", note())
	}
	handle(t, h, rec(c2)) // the same version again
	if s := h.Stats(); s.Stale != 2 || s.Upserts != 1 {
		t.Fatalf("stats %+v: want 1 upsert (the batch's last change of the row) and 2 stale", s)
	}

	del := change(schemas.OpDelete, 30, orderRow(1, uint64(1), "v20"), nil)
	handle(t, h, rec(del), tomb(del.Key(), 31))
	if n := cl.Exists(ctx, "t.orders:1").Val(); n != 0 {
		t.Fatal("row still exists after the delete")
	}
	if v := cl.Get(ctx, "__kanal:tomb:t.orders:1").Val(); v != "30" {
		t.Fatalf("tombstone version %q, want 30", v)
	}
	if ttl := cl.PTTL(ctx, "__kanal:tomb:t.orders:1").Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("tombstone TTL %v, want (0, 1h]", ttl)
	}
	handle(t, h, rec(c1), rec(c2)) // replay from before the delete
	if n := cl.Exists(ctx, "t.orders:1").Val(); n != 0 {
		t.Fatal("a replayed older insert resurrected the deleted row")
	}
	c4 := change(schemas.OpCreate, 40, nil, orderRow(1, uint64(1), "v40"))
	handle(t, h, rec(c4))
	if note() != "v40" {
		t.Fatalf("re-insert after delete: note %q", note())
	}
	// The re-insert leaves the older tombstone to expire (tombstone_ttl > 0).
	if v := cl.Get(ctx, "__kanal:tomb:t.orders:1").Val(); v != "" && v != "30" {
		t.Fatalf("tombstone %q after the re-insert, want none or the delete's 30", v)
	}

	// A lone tombstone (its delete compacted away, sequence unknown) deletes the row.
	handle(t, h, tomb(c4.Key(), 41))
	if n := cl.Exists(ctx, "t.orders:1").Val(); n != 0 {
		t.Fatal("a lone tombstone left the row")
	}

	// TombstoneTTL 0 keeps tombstones forever.
	cfg.TombstoneTTL = 0
	h0 := newHandler(t, cfg)
	handle(t, h0, rec(change(schemas.OpCreate, 50, nil, orderRow(2, nil, nil))), rec(change(schemas.OpDelete, 51, orderRow(2, nil, nil), nil)))
	if ttl := cl.PTTL(ctx, "__kanal:tomb:t.orders:2").Val(); ttl != -1 {
		t.Fatalf("TTL of a forever tombstone: %v, want -1 (no expiry)", ttl)
	}

	// A tombstone that outlives its row's re-create never holds back a change newer
	// than the row, still refuses those before the delete, and is replaced by the
	// next delete's.
	r3 := func(op schemas.Op, seq uint64, note string) consumer.Record {
		var before, after map[string]any
		if op != schemas.OpCreate {
			before = orderRow(3, nil, "old")
		}
		if op != schemas.OpDelete {
			after = orderRow(3, nil, note)
		}
		return rec(change(op, seq, before, after))
	}
	note3 := func() string { return cl.HGet(ctx, "t.orders:3", "note").Val() }
	handle(t, h, r3(schemas.OpCreate, 100, "v100"), r3(schemas.OpDelete, 101, ""), tomb("t.orders:3", 102))
	handle(t, h, r3(schemas.OpCreate, 110, "v110"))
	unfenced(t, h, r3(schemas.OpCreate, 100, "v100"), r3(schemas.OpDelete, 101, "")) // version-checked replays
	if note3() != "v110" {
		t.Fatalf("a version-checked replay from before the re-create moved the row: note %q", note3())
	}
	unfenced(t, h, r3(schemas.OpUpdate, 120, "v120"))
	if note3() != "v120" {
		t.Fatalf("a version-checked change newer than the row was refused: note %q", note3())
	}
	handle(t, h, r3(schemas.OpDelete, 130, ""))
	if v := cl.Get(ctx, "__kanal:tomb:t.orders:3").Val(); v != "130" {
		t.Fatalf("tombstone %q after the second delete, want 130", v)
	}
	unfenced(t, h, r3(schemas.OpCreate, 110, "v110"), r3(schemas.OpUpdate, 120, "v120"))
	if n := cl.Exists(ctx, "t.orders:3").Val(); n != 0 {
		t.Fatal("a version-checked replay resurrected the row deleted again")
	}
}

// TestTombstoneAfterBatchBoundary: a tombstone that opens a batch right after the
// batch that ended with its delete is recognised and skipped, so it cannot delete a
// newer row written meanwhile by a replay — in fenced batches (the watermark has
// moved past it) and in batches without Kafka coordinates (the version check).
// Without coordinates, a lone tombstone is versioned from the change after it.
func TestTombstoneAfterBatchBoundary(t *testing.T) {
	for _, mode := range []string{"fenced", "unfenced"} {
		t.Run(mode, func(t *testing.T) {
			srv := startRedis(t)
			apply := handle
			if mode == "unfenced" {
				apply = unfenced
			}
			h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
			cl := client(t, srv.Addr, 0)
			del := change(schemas.OpDelete, 5, orderRow(1, nil, nil), nil)
			apply(t, h, rec(change(schemas.OpCreate, 4, nil, orderRow(1, nil, nil))), rec(del))
			// Meanwhile another consumer (the partition's new owner after a
			// rebalance) applied the row's next change.
			other := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
			apply(t, other, rec(change(schemas.OpCreate, 9, nil, orderRow(1, nil, "new"))))
			apply(t, h, tomb(del.Key(), 6))
			if got := cl.HGet(ctxT(t), "t.orders:1", "note").Val(); got != "new" {
				t.Fatalf("the delete's own tombstone removed a newer row: note %q", got)
			}
		})
	}
	t.Run("lone", func(t *testing.T) {
		srv := startRedis(t)
		h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
		other := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
		cl := client(t, srv.Addr, 0)
		// A lone tombstone (its delete compacted away) followed by another change of
		// the partition is versioned just below that change: it deletes a row older
		// than that, but not a newer one.
		unfenced(t, other, rec(change(schemas.OpCreate, 20, nil, orderRow(3, nil, "v20"))), rec(change(schemas.OpCreate, 5, nil, orderRow(5, nil, "v5"))))
		unfenced(t, h, tomb("t.orders:3", 0), tomb("t.orders:5", 0), rec(change(schemas.OpCreate, 10, nil, orderRow(6, nil, nil))))
		if n := cl.Exists(ctxT(t), "t.orders:3").Val(); n != 1 {
			t.Fatal("a lone tombstone deleted a row newer than the change after it")
		}
		if n := cl.Exists(ctxT(t), "t.orders:5").Val(); n != 0 {
			t.Fatal("a lone tombstone left a row older than the change after it")
		}
		if v := cl.Get(ctxT(t), "__kanal:tomb:t.orders:5").Val(); v != "9" {
			t.Fatalf("lone tombstone version %q, want 9 (next change 10, minus 1)", v)
		}
		// Fenced, a lone tombstone deletes the row: every earlier record of the
		// partition is applied, so whatever the row holds is older.
		handle(t, h, rec(change(schemas.OpCreate, 30, nil, orderRow(8, nil, nil))))
		handle(t, h, tomb("t.orders:8", 31), tomb("t.orders:3", 32))
		if n := cl.Exists(ctxT(t), "t.orders:8", "t.orders:3").Val(); n != 0 {
			t.Fatal("a lone tombstone in a fenced batch left its row")
		}
		h = newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
		handle(t, h, rec(change(schemas.OpCreate, 40, nil, orderRow(7, nil, nil))), rec(change(schemas.OpDelete, 41, orderRow(7, nil, nil), nil)))
		handle(t, h, tomb("t.orders:7", 42))
		// Skipped: the create superseded by the delete in the first batch, and the tombstone.
		if s := h.Stats(); s.Skipped != 2 || s.Deletes != 1 {
			t.Fatalf("stats %+v: want the tombstone skipped", s)
		}
	})
}

// TestSecondarySets: rows join the set their grouping column names, move when it
// changes, leave when it goes NULL, and leave on delete — also when only the
// tombstone of the delete is left — in both layouts.
func TestSecondarySets(t *testing.T) {
	for _, layout := range []string{redissink.LayoutHash, redissink.LayoutJSON} {
		t.Run(layout, func(t *testing.T) {
			srv := startRedis(t)
			cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.orders", Layout: layout, Sets: []redissink.SetConfig{
				{Key: "user:{user_id}:orders"},
				{Key: "note:{{{note}}}", Member: "o{id}"},
			}})
			h := newHandler(t, cfg)
			cl := client(t, srv.Addr, 0)
			ctx := ctxT(t)
			members := func(k string) []string {
				m := cl.SMembers(ctx, k).Val()
				sort.Strings(m)
				return m
			}
			expect := func(k string, want ...string) {
				t.Helper()
				if got := members(k); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("%s = %q, want %q", k, got, want)
				}
			}
			handle(t, h,
				rec(change(schemas.OpCreate, 1, nil, orderRow(1, uint64(7), "x"))),
				rec(change(schemas.OpCreate, 2, nil, orderRow(2, uint64(7), "x"))),
			)
			expect("user:7:orders", "1", "2")
			expect("note:{x}", "o1", "o2")
			handle(t, h, rec(change(schemas.OpUpdate, 3, orderRow(1, uint64(7), "x"), orderRow(1, uint64(8), nil))))
			expect("user:7:orders", "2")
			expect("user:8:orders", "1")
			expect("note:{x}", "o2")
			// A replay of the older insert changes nothing.
			handle(t, h, rec(change(schemas.OpCreate, 1, nil, orderRow(1, uint64(7), "x"))))
			expect("user:7:orders", "2")
			expect("user:8:orders", "1")
			// NULL grouping column: in no set of that kind.
			handle(t, h, rec(change(schemas.OpUpdate, 4, orderRow(1, uint64(8), nil), orderRow(1, nil, nil))))
			expect("user:8:orders")
			// Delete, and a lone tombstone (the delete compacted away).
			handle(t, h, rec(change(schemas.OpDelete, 5, orderRow(2, uint64(7), "x"), nil)))
			expect("user:7:orders")
			expect("note:{x}")
			handle(t, h, rec(change(schemas.OpUpdate, 6, orderRow(1, nil, nil), orderRow(1, uint64(9), "y"))))
			expect("user:9:orders", "1")
			handle(t, h, tomb("t.orders:1", 7))
			expect("user:9:orders")
			expect("note:{y}")
			if keys := dataKeys(t, cl); len(keys) != 1 { // the tombstone of row 2
				t.Fatalf("%d keys left: %q", len(keys), keys)
			}
		})
	}
}

// TestScriptReload: after SCRIPT FLUSH (or a Redis restart) the handler loads the
// script again and the batch is applied (batches without Kafka coordinates call it
// by its SHA; fenced batches send it whole, for the few rows that need it).
func TestScriptReload(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	cl := client(t, srv.Addr, 0)
	unfenced(t, h, rec(change(schemas.OpCreate, 1, nil, orderRow(1, nil, "a"))))
	if err := cl.ScriptFlush(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
	unfenced(t, h, rec(change(schemas.OpCreate, 2, nil, orderRow(2, nil, "b"))), rec(change(schemas.OpUpdate, 3, nil, orderRow(1, nil, "c"))))
	if cl.HGet(ctxT(t), "t.orders:1", "note").Val() != "c" || cl.Exists(ctxT(t), "t.orders:2").Val() != 1 {
		t.Fatal("batch not applied after SCRIPT FLUSH")
	}
}

// TestErrors: what the sink can never store is a consumer.Permanent error naming
// table and key (so the Runner dead-letters that record); Redis being down is a
// plain error (retried); the password never shows in errors.
func TestErrors(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	ctx := ctxT(t)

	bad := change(schemas.OpCreate, 1, nil, map[string]any{"id": int64(1), "__v": "x"})
	bad.Columns = []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "__v", Type: "varchar"}}
	err := h.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(bad)}})
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "t.orders:1") || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("reserved column: err = %v, want permanent naming the key", err)
	}
	noSeq := change(schemas.OpCreate, 0, nil, orderRow(1, nil, nil))
	if err := h.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(noSeq)}}); !consumer.IsPermanent(err) {
		t.Fatalf("change without seq: err = %v, want permanent", err)
	}
	weird := change(schemas.OpCreate, 1, nil, orderRow(1, nil, struct{}{}))
	if err := h.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(weird)}}); !consumer.IsPermanent(err) {
		t.Fatalf("unknown value type: err = %v, want permanent", err)
	}
	// The application put a list where a row goes.
	client(t, srv.Addr, 0).RPush(ctx, "t.orders:5", "x")
	err = h.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(change(schemas.OpCreate, 1, nil, orderRow(5, nil, nil)))}})
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("row key of another type: err = %v, want permanent WRONGTYPE", err)
	}

	if err := client(t, srv.Addr, 0).ConfigSet(ctx, "requirepass", "right-pw").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"})
	in := cfg.Instances["main"]
	in.Password = "s3cret-pw"
	cfg.Instances["main"] = in
	hp := newHandler(t, cfg)
	err = hp.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(change(schemas.OpCreate, 1, nil, orderRow(1, nil, nil)))}})
	if err == nil || consumer.IsPermanent(err) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("wrong password: err = %v, want a transient error without the password", err)
	}
	srv.Kill()
	err = h.Handle(ctx, consumer.Batch{Records: []consumer.Record{rec(change(schemas.OpCreate, 2, nil, orderRow(1, nil, nil)))}})
	if err == nil || consumer.IsPermanent(err) {
		t.Fatalf("Redis down: err = %v, want a transient error", err)
	}
}

// TestPerTableRouting: each table goes to its own instance or database; nothing of
// one table lands on another's.
func TestPerTableRouting(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	cfg := redissink.DefaultConfig()
	cfg.Instances = map[string]redissink.InstanceConfig{
		"a":  {Addr: a.Addr},
		"b3": {Addr: b.Addr, DB: 3},
	}
	cfg.Tables = []redissink.TableConfig{
		{Match: "t.orders", Instances: []string{"a"}},
		{Match: "t.*", Instances: []string{"b3"}},
	}
	h := newHandler(t, cfg)
	users := change(schemas.OpCreate, 2, nil, orderRow(1, nil, nil))
	users.Source.Table = "users"
	handle(t, h, rec(change(schemas.OpCreate, 1, nil, orderRow(1, nil, nil))), rec(users))
	ctx := ctxT(t)
	if got := dataKeys(t, client(t, a.Addr, 0)); !slices.Equal(got, []string{"t.orders:1"}) {
		t.Fatalf("instance a holds %q", got)
	}
	if got := dataKeys(t, client(t, b.Addr, 3)); !slices.Equal(got, []string{"t.users:1"}) {
		t.Fatalf("instance b db 3 holds %q", got)
	}
	if n := client(t, b.Addr, 0).DBSize(ctx).Val(); n != 0 {
		t.Fatalf("instance b db 0 holds %d keys", n)
	}
}

// TestConfigValidate: each bad setting is rejected with an error naming the field,
// and never the password.
func TestConfigValidate(t *testing.T) {
	ok := func() redissink.Config {
		cfg := oneInstance("127.0.0.1:6379", redissink.TableConfig{Match: "shop.*"})
		cfg.Instances["main"] = redissink.InstanceConfig{Addr: "127.0.0.1:6379", Password: "pw-secret"}
		return cfg
	}
	base := ok()
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*redissink.Config)
	}{
		{"name", func(c *redissink.Config) { c.Name = "a b" }},
		{"instances", func(c *redissink.Config) { c.Instances = nil }},
		{"instances.main.addr", func(c *redissink.Config) {
			c.Instances["main"] = redissink.InstanceConfig{Addr: "nohost", Password: "pw-secret"}
		}},
		{"instances.main.db", func(c *redissink.Config) {
			c.Instances["main"] = redissink.InstanceConfig{Addr: "h:1", DB: -1, Password: "pw-secret"}
		}},
		{"tombstone_ttl", func(c *redissink.Config) { c.TombstoneTTL = -time.Second }},
		{"tombstone_prefix", func(c *redissink.Config) { c.TombstonePrefix = "" }},
		{"pipeline_max", func(c *redissink.Config) { c.PipelineMax = 0 }},
		{"tables", func(c *redissink.Config) { c.Tables = nil }},
		{"tables[0].match", func(c *redissink.Config) { c.Tables[0].Match = "shop" }},
		{"tables[0].layout", func(c *redissink.Config) { c.Tables[0].Layout = "xml" }},
		{"tables[0].instances", func(c *redissink.Config) { c.Tables[0].Instances = []string{"nope"} }},
		{"tables[0].instances", func(c *redissink.Config) {
			c.Instances["other"] = redissink.InstanceConfig{Addr: "h:1"}
		}},
		{"tables[0].key_prefix", func(c *redissink.Config) { c.Tables[0].KeyPrefix = &c.TombstonePrefix }},
		{"tables[0].columns", func(c *redissink.Config) {
			c.Tables[0].Columns = redissink.ColumnsConfig{Include: []string{"a"}, Exclude: []string{"b"}}
		}},
		{"tables[0].columns.rename.a", func(c *redissink.Config) {
			c.Tables[0].Columns.Rename = map[string]string{"a": "__v"}
		}},
		{"tables[0].sets[0].key", func(c *redissink.Config) { c.Tables[0].Sets = []redissink.SetConfig{{Key: "user:{uid"}} }},
		{"tables[0].sets[0].key", func(c *redissink.Config) { c.Tables[0].Sets = []redissink.SetConfig{{Key: "all"}} }},
		{"tables[0].sets[0].member", func(c *redissink.Config) {
			c.Tables[0].Sets = []redissink.SetConfig{{Key: "u:{a}", Member: "x}"}}
		}},
		{"default_instances", func(c *redissink.Config) { c.DefaultInstances = []string{"main", "main"} }},
	} {
		cfg := ok()
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: accepted", tc.field)
			continue
		}
		if !errors.Is(err, redissink.ErrConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name the field", tc.field, err)
		}
		if strings.Contains(err.Error(), "pw-secret") {
			t.Errorf("%s: error %q shows the password", tc.field, err)
		}
	}
}

// TestChunkedCalls: without Kafka coordinates (here: offsets out of order) rows are
// applied in script calls of several rows each (and pipelines that split those
// calls); every row is still checked on its own: stale rows, deletes, set moves
// without before images and a SCRIPT FLUSH across chunk boundaries behave as with
// one call per row. In a fenced batch, a row Redis rejects (its set key holds
// another type) fails the batch permanently, naming that row, while the others
// are applied.
func TestChunkedCalls(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Sets: []redissink.SetConfig{{Key: "user:{user_id}:orders"}}})
	cfg.PipelineMax = 100
	h := newHandler(t, cfg)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)

	var recs []consumer.Record
	for id := int64(1); id <= 150; id++ {
		recs = append(recs, rec(change(schemas.OpCreate, uint64(id)+1000, nil, orderRow(id, uint64(id%3), "a"))))
	}
	handle(t, h, recs...)
	if s := h.Stats(); s.Upserts != 150 || s.Stale != 0 {
		t.Fatalf("first pass: %+v, want 150 upserts", s)
	}
	// Replayed older versions of every row, a newer update of every third (moving
	// it to another set), a delete of every tenth.
	recs = recs[:0]
	for id := int64(1); id <= 150; id++ {
		switch {
		case id%10 == 0:
			recs = append(recs, rec(change(schemas.OpDelete, uint64(id)+2000, orderRow(id, uint64(id%3), "a"), nil)))
		case id%3 == 0:
			recs = append(recs, rec(change(schemas.OpUpdate, uint64(id)+2000, nil, orderRow(id, uint64(7), "b"))))
		default:
			recs = append(recs, rec(change(schemas.OpUpdate, uint64(id), nil, orderRow(id, uint64(9), "old"))))
		}
	}
	if err := cl.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	handle(t, h, recs...)
	s := h.Stats()
	if s.Deletes != 15 || s.Upserts != 150+45 || s.Stale != 90 {
		t.Fatalf("second pass: %+v, want 15 deletes, 45 more upserts, 90 stale", s)
	}
	for id := int64(1); id <= 150; id++ {
		key := "t.orders:" + strconv.FormatInt(id, 10)
		note := cl.HGet(ctx, key, "note").Val()
		switch {
		case id%10 == 0:
			if cl.Exists(ctx, key).Val() != 0 || cl.Get(ctx, "__kanal:tomb:"+key).Val() != strconv.FormatInt(id+2000, 10) {
				t.Fatalf("%s: not deleted with its tombstone", key)
			}
		case id%3 == 0:
			if note != "b" || !cl.SIsMember(ctx, "user:7:orders", id).Val() || cl.SIsMember(ctx, "user:"+strconv.FormatInt(id%3, 10)+":orders", id).Val() {
				t.Fatalf("%s: note %q, or not moved to user:7:orders", key, note)
			}
		default:
			if note != "a" || !cl.SIsMember(ctx, "user:"+strconv.FormatInt(id%3, 10)+":orders", id).Val() {
				t.Fatalf("%s: note %q, want the newer %q kept", key, note, "a")
			}
		}
	}
	if n := cl.SCard(ctx, "user:9:orders").Val(); n != 0 {
		t.Fatalf("stale changes added %d members", n)
	}

	// Row 270's set key holds a string. In a fenced batch the transaction applies
	// the other rows and moves the watermark past them; the batch fails permanently
	// naming row 270, and keeps failing while it holds that record (so the Runner
	// can isolate and dead-letter it), while the rest of it is skipped as applied.
	cl.Set(ctx, "user:77:orders", "x", 0)
	recs = recs[:0]
	for id := int64(201); id <= 350; id++ {
		var user any
		if id == 270 {
			user = uint64(77)
		}
		recs = append(recs, rec(change(schemas.OpCreate, uint64(id)+1000, nil, orderRow(id, user, "c"))))
	}
	for range 2 {
		err := h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Records: recs})
		if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "t.orders:270") || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("err = %v, want permanent WRONGTYPE naming t.orders:270", err)
		}
	}
	for id := int64(201); id <= 350; id++ {
		key := "t.orders:" + strconv.FormatInt(id, 10)
		if cl.HGet(ctx, key, "note").Val() != "c" {
			t.Fatalf("%s not applied (every row of the batch is written)", key)
		}
	}
	before := h.Stats()
	handle(t, h, recs[70:]...)
	if s := h.Stats(); s.Stale-before.Stale != 80 {
		t.Fatalf("the rest of the batch again: %+v, want 80 more stale", s)
	}
}
