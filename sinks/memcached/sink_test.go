package memcachedsink_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

func mustGet(t *testing.T, rd *memcachedsink.Reader, key string) (memcachedsink.Row, bool) {
	t.Helper()
	row, ok, err := rd.Get(key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return row, ok
}

// TestVersionGuard: an older change never overwrites a newer row, a delete leaves
// a tombstone that keeps older changes out, and a newer change brings the row back.
func TestVersionGuard(t *testing.T) {
	srv := testenv.Memcached(t)
	cfg := config(srv.Addr, memcachedsink.TableConfig{Match: "t.*", Columns: memcachedsink.ColumnsConfig{Rename: map[string]string{"note": "n"}}})
	h := newHandler(t, cfg)
	rd := newReader(t, cfg)

	handle(t, h, rec(change(schemas.OpCreate, 5, 1, "five"), 0))
	handle(t, h, rec(change(schemas.OpUpdate, 3, 1, "three"), 1)) // late, older
	row, ok := mustGet(t, rd, "t.orders:1")
	if !ok || row.Version != 5 || row.Values["n"] != "five" || row.Values["amount"] != "1.50" {
		t.Fatalf("after an older update: %+v %v, want version 5 note five", row, ok)
	}
	if s := h.Stats(); s.Stale != 1 || s.Upserts != 1 {
		t.Errorf("stats %+v, want 1 upsert and 1 stale", s)
	}
	handle(t, h, rec(change(schemas.OpDelete, 6, 1, nil), 2))
	if _, ok := mustGet(t, rd, "t.orders:1"); ok {
		t.Fatal("row still readable after its delete")
	}
	handle(t, h, rec(change(schemas.OpUpdate, 5, 1, "five again"), 0)) // replay
	if _, ok := mustGet(t, rd, "t.orders:1"); ok {
		t.Fatal("a replayed older change resurrected a deleted row")
	}
	handle(t, h, rec(change(schemas.OpCreate, 7, 1, nil), 3))
	row, ok = mustGet(t, rd, "t.orders:1")
	if !ok || row.Version != 7 || row.Values["n"] != nil {
		t.Fatalf("after a newer create: %+v %v", row, ok)
	}
}

// TestTombstones: a delete's tombstone expires after tombstone_ttl (checked on the
// item's expiry time, no waiting); a tombstone record right after its delete is
// skipped; a lone tombstone is versioned by the delete's sequence it carries, or
// by the next change in the batch, or keeps the row's version when it has
// neither.
func TestTombstones(t *testing.T) {
	srv := testenv.Memcached(t)
	cfg := config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"})
	cfg.TombstoneTTL = time.Hour
	h := newHandler(t, cfg)
	rd := newReader(t, cfg)
	mc := memcache.New(srv.Addr)
	defer mc.Close()

	del := rec(change(schemas.OpDelete, 2, 1, nil), 1)
	tomb := consumer.Record{Topic: "kanal.t.orders", Offset: 2, Key: del.Key, Table: "t.orders", Op: schemas.OpDelete, Tombstone: true, Seq: 2}
	handle(t, h, rec(change(schemas.OpCreate, 1, 1, "x"), 0), del, tomb)
	if s := h.Stats(); s.Skipped != 2 || s.Deletes != 1 {
		// The create is superseded by the delete; the tombstone follows it.
		t.Errorf("stats %+v, want 2 skipped, 1 delete", s)
	}
	if v := value(t, mc, "t.orders:1"); v != `{"__v":2,"__deleted":true}` {
		t.Fatalf("tombstone item: %q", v)
	}
	exp := expiry(t, srv.Addr, "t.orders:1")
	if want := time.Now().Add(time.Hour).Unix(); exp < want-5 || exp > want+5 {
		t.Errorf("tombstone expires at %d, want about %d (now + tombstone_ttl)", exp, want)
	}

	// A lone tombstone with the next change's sequence: versioned n-1 = 9.
	handle(t, h, rec(change(schemas.OpCreate, 5, 2, "x"), 3))
	lone := consumer.Record{Topic: "kanal.t.orders", Offset: 4, Key: "t.orders:2", Table: "t.orders", Op: schemas.OpDelete, Tombstone: true}
	handle(t, h, lone, rec(change(schemas.OpCreate, 10, 3, "y"), 5))
	if v := value(t, mc, "t.orders:2"); v != `{"__v":9,"__deleted":true}` {
		t.Fatalf("lone tombstone before seq 10: %q", v)
	}
	// Alone at the end of a batch: unversioned, it keeps the row's version.
	lone.Key, lone.Offset = "t.orders:3", 6
	handle(t, h, lone)
	if v := value(t, mc, "t.orders:3"); v != `{"__v":10,"__deleted":true}` {
		t.Fatalf("unversioned lone tombstone: %q", v)
	}
	if _, ok := mustGet(t, rd, "t.orders:3"); ok {
		t.Fatal("row readable after a lone tombstone")
	}
}

func value(t *testing.T, mc *memcache.Client, key string) string {
	t.Helper()
	it, err := mc.Get(key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(it.Value)
}

// expiry reads an item's expiry time (Unix seconds) from lru_crawler metadump.
func expiry(t *testing.T, addr, key string) int64 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "lru_crawler metadump hash\r\n")
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	for !strings.HasSuffix(string(buf), "END\r\n") {
		n, err := conn.Read(tmp)
		if err != nil {
			t.Fatal(err)
		}
		buf = append(buf, tmp[:n]...)
	}
	for _, line := range strings.Split(string(buf), "\r\n") {
		f, _, _ := strings.Cut(line, " ")
		if k, err := url.QueryUnescape(strings.TrimPrefix(f, "key=")); err != nil || k != key {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "exp="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	}
	t.Fatalf("%s not in metadump", key)
	return 0
}

// TestKeys: the key template, escaping of bytes memcached does not allow in
// keys, and hashing of keys over 250 bytes; the Reader finds every row.
func TestKeys(t *testing.T) {
	srv := testenv.Memcached(t)
	cols := []schemas.Column{{Name: "a", Type: "int", PK: true}, {Name: "b", Type: "varchar", PK: true}}
	cfg := config(srv.Addr, memcachedsink.TableConfig{Match: "t.pairs", Key: "kc:{table}/{pk}"})
	h := newHandler(t, cfg)
	rd := newReader(t, cfg)
	long := strings.Repeat("é", 200)
	for i, b := range []string{"two words", "tab\there 100%", long} {
		c := &schemas.Change{Op: schemas.OpCreate, Seq: uint64(i + 1), Source: schemas.Source{DB: "t", Table: "pairs"}, Columns: cols,
			After: map[string]any{"a": int64(1), "b": b}}
		r := consumer.Record{Topic: "kanal.t.pairs", Offset: int64(i), Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
		handle(t, h, r)
		row, ok := mustGet(t, rd, c.Key())
		if !ok || row.Values["b"] != b {
			t.Fatalf("%q: read back %+v %v", c.Key(), row, ok)
		}
		k, _ := rd.ItemKey(c.Key())
		if hk, _ := h.ItemKey(c.Table(), c.Key()); hk != k {
			t.Errorf("Handler.ItemKey %q != Reader.ItemKey %q", hk, k)
		}
		switch i {
		case 0:
			if k != "kc:pairs/1,two%20words" {
				t.Errorf("item key %q", k)
			}
		case 1:
			if k != "kc:pairs/1,tab%09here%20100%25" {
				t.Errorf("item key %q", k)
			}
		case 2:
			if len(k) > 250 || !strings.Contains(k, "#") {
				t.Errorf("long item key %q (%d bytes)", k, len(k))
			}
		}
	}
}

// TestRacingWriters: a live consumer and a zombie one write the same rows at once,
// the zombie with older versions; memcached ends with every row's newest version.
func TestRacingWriters(t *testing.T) {
	srv := testenv.Memcached(t)
	cfg := config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"})
	live, zombie := newHandler(t, cfg), newHandler(t, cfg)
	rd := newReader(t, cfg)
	const rows, versions = 50, 20
	var wg sync.WaitGroup
	for w, h := range []*memcachedsink.Handler{live, zombie} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; v <= versions; v++ {
				ver := uint64(v)
				if w == 1 {
					ver = uint64(versions + 1 - v) // newest first, then ever older
				}
				var recs []consumer.Record
				for id := range rows {
					recs = append(recs, rec(change(schemas.OpUpdate, ver*1000+uint64(id), int64(id), fmt.Sprint("v", ver)), int64(v)))
				}
				if err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for id := range rows {
		row, ok := mustGet(t, rd, fmt.Sprintf("t.orders:%d", id))
		if !ok || row.Values["note"] != fmt.Sprint("v", versions) {
			t.Fatalf("row %d: %+v %v, want note v%d", id, row, ok, versions)
		}
	}
	t.Logf("live %+v, zombie %+v", live.Stats(), zombie.Stats())
}

// TestErrors: what the sink can never store is a permanent error naming table,
// key and offset; memcached being down is a plain (retried) error.
func TestErrors(t *testing.T) {
	srv := testenv.Memcached(t)
	h := newHandler(t, config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"}))

	noSeq := rec(change(schemas.OpCreate, 0, 7, "x"), 41)
	err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Partition: 2, Records: []consumer.Record{noSeq}})
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "table t.orders") ||
		!strings.Contains(err.Error(), `key "t.orders:7"`) || !strings.Contains(err.Error(), "offset 41") || !strings.Contains(err.Error(), "kanal.t.orders/2") {
		t.Fatalf("change without seq: %v (permanent %v)", err, consumer.IsPermanent(err))
	}
	big := rec(change(schemas.OpCreate, 1, 8, strings.Repeat("x", 2<<20)), 42)
	err = h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: []consumer.Record{big}})
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "item size limit") || !strings.Contains(err.Error(), "offset 42") {
		t.Fatalf("2 MB row: %v (permanent %v)", err, consumer.IsPermanent(err))
	}
	srv.Kill()
	err = h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: []consumer.Record{rec(change(schemas.OpCreate, 2, 9, "x"), 43)}})
	if err == nil || consumer.IsPermanent(err) || !strings.Contains(err.Error(), "offset 43") {
		t.Fatalf("memcached down: %v (permanent %v), want a retryable error naming the offset", err, consumer.IsPermanent(err))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*memcachedsink.Config)
		want string
	}{
		{func(c *memcachedsink.Config) { c.Servers = nil }, "servers:"},
		{func(c *memcachedsink.Config) { c.Servers = []string{"nohost"} }, "servers[0]:"},
		{func(c *memcachedsink.Config) { c.Key = "kc:{db}" }, "key:"},
		{func(c *memcachedsink.Config) { c.Key = "kc:{id}" }, "key:"},
		{func(c *memcachedsink.Config) { c.TombstoneTTL = 31 * 24 * time.Hour }, "tombstone_ttl:"},
		{func(c *memcachedsink.Config) { c.Concurrency = 0 }, "concurrency:"},
		{func(c *memcachedsink.Config) { c.Tables[0].Match = "nodot" }, "tables[0].match:"},
		{func(c *memcachedsink.Config) { c.Tables[0].Key = "{pk" }, "tables[0].key:"},
		{func(c *memcachedsink.Config) {
			c.Tables[0].Columns.Rename = map[string]string{"x": "__v"}
		}, "tables[0].columns.rename.x:"},
		{func(c *memcachedsink.Config) {
			c.Tables[0].Columns.Include, c.Tables[0].Columns.Exclude = []string{"a"}, []string{"b"}
		}, "tables[0].columns:"},
	} {
		cfg := config("127.0.0.1:1", memcachedsink.TableConfig{Match: "t.*"})
		tc.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, memcachedsink.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
	cfg := config("127.0.0.1:1", memcachedsink.TableConfig{Match: "t.*"})
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestTruncate: a truncate cannot be applied (memcached cannot list the
// table's keys), so it fails its batch as permanent, wrapping ErrTruncate and
// naming the table, the truncate's key, position and sequence, and what to do;
// the rows stay as they were.
func TestTruncate(t *testing.T) {
	srv := testenv.Memcached(t)
	h := newHandler(t, config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"}))
	rd := newReader(t, config(srv.Addr, memcachedsink.TableConfig{Match: "t.*"}))
	handle(t, h, rec(change(schemas.OpCreate, 1, 7, "x"), 40))
	tr := consumer.Record{Topic: "kanal.t.orders", Partition: 2, Offset: 41, Key: "t.orders", Table: "t.orders",
		Op: schemas.OpTruncate, Seq: 5, Pos: "binlog.000003:8812",
		Change: &schemas.Change{Op: schemas.OpTruncate, Seq: 5, Source: schemas.Source{DB: "t", Table: "orders"}}}
	err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Partition: 2, Records: []consumer.Record{
		rec(change(schemas.OpCreate, 3, 8, "y"), 40), tr, rec(change(schemas.OpCreate, 6, 9, "z"), 42)}})
	for _, want := range []string{"kanal.t.orders/2", "offset 41", "TRUNCATE of t.orders", `key "t.orders"`,
		"position binlog.000003:8812", "seq 5", "cannot list the table's keys", "docs/memcached.md"} {
		if !consumer.IsPermanent(err) || !errors.Is(err, memcachedsink.ErrTruncate) || !strings.Contains(err.Error(), want) {
			t.Fatalf("truncate: %v (permanent %v), want ErrTruncate naming %q", err, consumer.IsPermanent(err), want)
		}
	}
	if row, ok := mustGet(t, rd, "t.orders:7"); !ok || row.Version != 1 {
		t.Errorf("row 7 after the refused truncate: %+v %v, want it unchanged", row, ok)
	}
}
