package redissink_test

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// storedOrder is the hash the sink stores for orderRow(1, user, note) at version v:
// NULL columns left out and listed in "__nulls".
func storedOrder(v string, user, note any) map[string]string {
	m := map[string]string{"__v": v, "id": "1", "amount": "-12.50", "data": "\x00a\xff", "f": "1.1", "d": "1e+300"}
	var nulls []string
	if user == nil {
		nulls = append(nulls, "user_id")
	} else {
		m["user_id"] = user.(string)
	}
	if note == nil {
		nulls = append(nulls, "note")
	} else {
		m["note"] = note.(string)
	}
	if len(nulls) > 0 {
		m["__nulls"] = redissink.EncodeNulls(nulls)
	}
	return m
}

// TestUpdateNullsComeAndGo: an update turning columns NULL removes their fields
// and lists them in "__nulls"; turning them non-NULL again restores the fields
// and drops "__nulls" — after every change the hash equals, field for field, what
// a fresh write of it stores. A handler started later (which has seen none of the
// earlier column lists) still removes the field of a column dropped by DDL.
// (Whatever an upsert is made of — DEL and HSET today — it must keep this.)
func TestUpdateNullsComeAndGo(t *testing.T) {
	srv := startRedis(t)
	cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"})
	h := newHandler(t, cfg)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	steps := []struct {
		user, note any
	}{
		{uint64(7), "a"},
		{nil, nil},       // both NULL now
		{uint64(8), nil}, // user_id back, note still NULL
		{nil, "b"},       // the other way round
		{uint64(9), "c"}, // none NULL: "__nulls" goes
	}
	var prev map[string]any
	for i, s := range steps {
		seq := uint64(i + 1)
		op := schemas.OpUpdate
		if i == 0 {
			op = schemas.OpCreate
		}
		row := orderRow(1, s.user, s.note)
		handle(t, h, rec(change(op, seq, prev, row)))
		prev = row
		var user any
		if s.user != nil {
			user = string(rune('0' + s.user.(uint64)))
		}
		want := storedOrder(string(rune('0'+seq)), user, s.note)
		if got := cl.HGetAll(ctx, "t.orders:1").Val(); !maps.Equal(got, want) {
			t.Fatalf("step %d: hash = %q, want %q", i, got, want)
		}
	}

	// A column added (and written), then dropped by DDL while no handler runs.
	cols := append(slices.Clone(orderCols), schemas.Column{Name: "extra", Type: "int"})
	wide := orderRow(1, uint64(9), "c")
	wide["extra"] = int64(42)
	c := change(schemas.OpUpdate, 6, prev, wide)
	c.Columns = cols
	handle(t, h, rec(c))
	if v := cl.HGet(ctx, "t.orders:1", "extra").Val(); v != "42" {
		t.Fatalf("extra = %q, want 42", v)
	}
	h2 := newHandler(t, cfg)
	handle(t, h2, rec(change(schemas.OpUpdate, 7, wide, orderRow(1, uint64(9), "d"))))
	if got, want := cl.HGetAll(ctx, "t.orders:1").Val(), storedOrder("7", "9", "d"); !maps.Equal(got, want) {
		t.Fatalf("after the column was dropped: hash = %q, want %q", got, want)
	}
}

// TestRecreateAcrossLostWatermark: a row is created, deleted and created again
// (with other NULL columns), while the partition's watermark is lost in between
// and the partition's records are replayed — by a zombie in order, and out of
// order without Kafka coordinates. Whatever the order, the row ends as its last
// change wrote it, field for field as a fresh write on an empty instance stores
// it, and no tombstone is left beside it.
func TestRecreateAcrossLostWatermark(t *testing.T) {
	srv := startRedis(t)
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	c1 := change(schemas.OpCreate, 1, nil, orderRow(1, uint64(1), "a"))
	u2 := change(schemas.OpUpdate, 2, c1.After, orderRow(1, nil, "b"))
	d3 := change(schemas.OpDelete, 3, u2.After, nil)
	tb4 := tomb(c1.Key(), 4)
	c5 := change(schemas.OpCreate, 5, nil, orderRow(1, uint64(5), nil))
	u6 := change(schemas.OpUpdate, 6, c5.After, orderRow(1, nil, "z"))

	handle(t, h, rec(c1), rec(u2), rec(d3), tb4)
	if n := cl.Exists(ctx, "t.orders:1").Val(); n != 0 {
		t.Fatal("the row exists after its delete")
	}
	// The watermark is lost (evicted, deleted by hand) before the re-create.
	cl.Del(ctx, wmKey("main"))
	// A zombie replays the start of the partition: version-checked, older than
	// the tombstone, nothing written.
	handle(t, h, rec(c1), rec(u2))
	if n := cl.Exists(ctx, "t.orders:1").Val(); n != 0 {
		t.Fatal("a replayed create brought the deleted row back")
	}
	handle(t, h, rec(c5))
	handle(t, h, rec(u6))
	// The partition again, out of order and without coordinates.
	unfenced(t, h, rec(c5), rec(d3), rec(u2), rec(c1))
	// And in order by a zombie, past the found watermark.
	handle(t, h, rec(d3), tb4, rec(c5))

	want := storedOrder("6", nil, "z")
	if got := cl.HGetAll(ctx, "t.orders:1").Val(); !maps.Equal(got, want) {
		t.Fatalf("hash = %q, want %q", got, want)
	}
	// The same change written alone to an empty database stores the same hash.
	fresh := oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"})
	fresh.Instances = map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr, DB: 1}}
	handle(t, newHandler(t, fresh), rec(u6))
	if got, ref := cl.HGetAll(ctx, "t.orders:1").Val(), client(t, srv.Addr, 1).HGetAll(ctx, "t.orders:1").Val(); !reflect.DeepEqual(got, ref) {
		t.Fatalf("hash = %q, a fresh write stores %q", got, ref)
	}
	if keys := dataKeys(t, cl); !slices.Equal(keys, []string{"t.orders:1"}) {
		t.Fatalf("keys %q, want the row alone (no tombstone beside it)", keys)
	}
	if st := h.Stats(); st.Stale == 0 {
		t.Fatalf("stats %+v: the replays applied nothing stale?", st)
	}
}

// TestLayoutChangeToHash: on the plain path the row key belongs to the sink. After
// a table's layout changes from json to hash its rows are still JSON strings, and
// an update of one replaces it with the hash instead of failing the batch; the
// same holds for a key the application overwrote with another type. (An upsert
// that updated hashes in place, without a DEL, would get WRONGTYPE here.)
func TestLayoutChangeToHash(t *testing.T) {
	srv := startRedis(t)
	cl := client(t, srv.Addr, 0)
	ctx := ctxT(t)
	hj := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*", Layout: redissink.LayoutJSON}))
	handle(t, hj, rec(change(schemas.OpCreate, 1, nil, orderRow(1, uint64(1), "a"))))
	if typ := cl.Type(ctx, "t.orders:1").Val(); typ != "string" {
		t.Fatalf("json row is a %s", typ)
	}
	h := newHandler(t, oneInstance(srv.Addr, redissink.TableConfig{Match: "t.*"}))
	// Another row first, in its own batch.
	other := orderRow(2, uint64(2), "x")
	handle(t, h, rec(change(schemas.OpCreate, 2, nil, other)))
	cl.RPush(ctx, "t.orders:3", "the application's list")
	third := change(schemas.OpCreate, 4, nil, orderRow(3, uint64(3), "y"))
	handle(t, h, rec(change(schemas.OpUpdate, 3, orderRow(1, uint64(1), "a"), orderRow(1, nil, "b"))), rec(third))
	if got, want := cl.HGetAll(ctx, "t.orders:1").Val(), storedOrder("3", nil, "b"); !maps.Equal(got, want) {
		t.Fatalf("row 1 = %q, want %q", got, want)
	}
	if got := cl.HGet(ctx, "t.orders:3", "note").Val(); got != "y" {
		t.Fatalf("row 3 note = %q, want y (the list replaced)", got)
	}
	if st := h.Stats(); st.Upserts != 3 {
		t.Fatalf("stats %+v, want 3 upserts", st)
	}
}
