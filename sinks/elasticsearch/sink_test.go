package essink_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

var update = flag.Bool("update", false, "rewrite the golden _bulk bodies in testdata")

// docs returns index/id → rendered document of the indexes matching pattern.
func docs(t *testing.T, cl estest.Cluster, pattern string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, d := range cl.Search(t, pattern) {
		out[d.Index+"/"+d.ID] = render(t, d.Source, nil)
	}
	return out
}

func expectDocs(t *testing.T, cl estest.Cluster, pattern string, want map[string]map[string]string) {
	t.Helper()
	got := docs(t, cl, pattern)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("documents of %s:\n got %v\nwant %v", pattern, got, want)
	}
}

// TestVersions: external versions keep older changes out, deletes included, in
// any order; snapshot reads (op r) index like creates; a lone tombstone deletes.
func TestVersions(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	h := newHandler(t, config(srv.URL, essink.TableConfig{Match: "t.*", Columns: essink.ColumnsConfig{Exclude: []string{"secret"}}}))
	row := func(note string) map[string]any { return orderRow(1, note, "2024-05-01 10:00:00") }
	handle(t, h, rec(change("orders", orderCols, schemas.OpRead, 5, nil, row("five")), 0))
	handle(t, h, rec(change("orders", orderCols, schemas.OpUpdate, 3, nil, row("three")), 1))
	expectDocs(t, cl, "t.orders", map[string]map[string]string{"t.orders/1": {"id": "1", "note": "five", "created": "2024-05-01 10:00:00"}})
	if s := h.Stats(); s.Indexed != 1 || s.Stale != 1 {
		t.Errorf("stats %+v, want 1 indexed, 1 stale", s)
	}
	handle(t, h, rec(change("orders", orderCols, schemas.OpDelete, 6, row("five"), nil), 2), tomb("t.orders:1", 6, 3))
	handle(t, h, rec(change("orders", orderCols, schemas.OpUpdate, 5, nil, row("five again")), 0)) // a replay
	expectDocs(t, cl, "t.orders", map[string]map[string]string{})
	handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 7, nil, row("seven")), 4))
	expectDocs(t, cl, "t.orders", map[string]map[string]string{"t.orders/1": {"id": "1", "note": "seven", "created": "2024-05-01 10:00:00"}})
	// A lone tombstone (its delete compacted away) carrying the delete's sequence.
	handle(t, h, tomb("t.orders:1", 8, 5))
	expectDocs(t, cl, "t.orders", map[string]map[string]string{})
}

// TestDateIndexes: one index per month of a DATETIME column; a row whose date
// moves to another month moves to that index.
func TestDateIndexes(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	h := newHandler(t, config(srv.URL, essink.TableConfig{Match: "t.orders", Index: "Orders", DateColumn: "created", DateFormat: "2006.01",
		Columns: essink.ColumnsConfig{Include: []string{"id", "note", "created"}, Rename: map[string]string{"note": "text"}}}))
	may, june := orderRow(1, "a", "2024-05-31 23:59:59.5"), orderRow(1, "b", "2024-06-01 00:00:00")
	handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 1, nil, may), 0))
	expectDocs(t, cl, "orders-*", map[string]map[string]string{"orders-2024.05/1": {"id": "1", "text": "a", "created": "2024-05-31 23:59:59.5"}})
	handle(t, h, rec(change("orders", orderCols, schemas.OpUpdate, 2, may, june), 1))
	expectDocs(t, cl, "orders-*", map[string]map[string]string{"orders-2024.06/1": {"id": "1", "text": "b", "created": "2024-06-01 00:00:00"}})
	handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 1, nil, may), 0)) // a replay of the create
	expectDocs(t, cl, "orders-*", map[string]map[string]string{"orders-2024.06/1": {"id": "1", "text": "b", "created": "2024-06-01 00:00:00"}})
	handle(t, h, rec(change("orders", orderCols, schemas.OpDelete, 3, june, nil), 2))
	expectDocs(t, cl, "orders-*", map[string]map[string]string{})
	bad := orderRow(2, "x", "")
	bad["created"] = nil
	err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: []consumer.Record{rec(change("orders", orderCols, schemas.OpCreate, 4, nil, bad), 3)}})
	if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), `date column "created" holds NULL`) || !strings.Contains(err.Error(), "offset 3") {
		t.Fatalf("NULL date: %v", err)
	}
}

var (
	itemCols = []schemas.Column{{Name: "id", Type: "int", PK: true}, {Name: "order_id", Type: "bigint"}, {Name: "sku", Type: "varchar"}}
	noteCols = []schemas.Column{{Name: "order_id", Type: "bigint", PK: true}, {Name: "text", Type: "varchar"}}
)

func item(id, order int64, sku string) map[string]any {
	return map[string]any{"id": id, "order_id": order, "sku": sku}
}

// TestJoin: t.items rows go into an array field of their t.orders documents and
// t.notes (one per order) into an object field; children may come before their
// parent, move between parents, and be replayed late; a parent deleted with
// children left keeps a document of the children; an empty document is deleted.
func TestJoin(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	cfg := config(srv.URL,
		essink.TableConfig{Match: "t.items", Join: &essink.JoinConfig{Parent: "t.orders", Field: "items", ParentKey: []string{"order_id"}}},
		essink.TableConfig{Match: "t.notes", Join: &essink.JoinConfig{Parent: "t.orders", Field: "memo", ParentKey: []string{"order_id"}, Kind: essink.JoinObject}},
		essink.TableConfig{Match: "t.orders", Index: "orders", Columns: essink.ColumnsConfig{Include: []string{"id", "note"}}},
	)
	h := newHandler(t, cfg)
	meta := func(d map[string]any) string { return fmt.Sprint(d[essink.FieldMeta]) }
	get := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, d := range cl.Search(t, "orders") {
			out[d.ID] = d.Source
		}
		return out
	}
	// A child before its parent.
	handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 1, nil, item(10, 1, "a")), 0))
	handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 2, nil, orderRow(1, "first", "2024-01-01")), 0),
		rec(change("orders", orderCols, schemas.OpCreate, 3, nil, orderRow(2, "second", "2024-01-01")), 1))
	handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 4, nil, item(11, 1, "b")), 1),
		rec(change("items", itemCols, schemas.OpCreate, 5, nil, item(12, 2, "c")), 2),
		rec(change("notes", noteCols, schemas.OpCreate, 6, nil, map[string]any{"order_id": int64(1), "text": "fragile"}), 0))
	d := get()
	if fmt.Sprint(d["1"]["items"]) != "[map[id:10 order_id:1 sku:a] map[id:11 order_id:1 sku:b]]" ||
		fmt.Sprint(d["1"]["memo"]) != "map[order_id:1 text:fragile]" || fmt.Sprint(d["1"]["note"]) != "first" || fmt.Sprint(d["1"]["id"]) != "1" {
		t.Fatalf("order 1: %v", d["1"])
	}
	if fmt.Sprint(d["2"]["items"]) != "[map[id:12 order_id:2 sku:c]]" {
		t.Fatalf("order 2: %v", d["2"])
	}
	// Item 11 moves to order 2; a late replay of its create changes nothing.
	handle(t, h, rec(change("items", itemCols, schemas.OpUpdate, 7, item(11, 1, "b"), item(11, 2, "b2")), 3))
	handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 4, nil, item(11, 1, "b")), 1))
	handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 2, nil, orderRow(1, "stale", "2024-01-01")), 0))
	d = get()
	if fmt.Sprint(d["1"]["items"]) != "[map[id:10 order_id:1 sku:a]]" || fmt.Sprint(d["2"]["items"]) != "[map[id:11 order_id:2 sku:b2] map[id:12 order_id:2 sku:c]]" {
		t.Fatalf("after the move and the replays: %v / %v", d["1"], d["2"])
	}
	if fmt.Sprint(d["1"]["memo"]) != "map[order_id:1 text:fragile]" {
		t.Fatalf("order 1 lost its memo: %v", d["1"])
	}
	if fmt.Sprint(d["1"]["note"]) != "first" {
		t.Fatalf("a replayed parent change overwrote a newer one: %v", d["1"])
	}
	// Order 2 deleted: its items remain (as in the source until they are deleted).
	handle(t, h, rec(change("orders", orderCols, schemas.OpDelete, 8, orderRow(2, "second", "2024-01-01"), nil), 2))
	d = get()
	if _, ok := d["2"]["id"]; ok || fmt.Sprint(d["2"]["items"]) != "[map[id:11 order_id:2 sku:b2] map[id:12 order_id:2 sku:c]]" || !strings.Contains(meta(d["2"]), "p:false") {
		t.Fatalf("order 2 after its delete: %v", d["2"])
	}
	// Its last items go (one as a lone tombstone, routed by... its parent key is not
	// in its primary key: skipped), then the delete of the other empties the doc.
	handle(t, h, rec(change("items", itemCols, schemas.OpDelete, 9, item(11, 2, "b2"), nil), 4),
		rec(change("items", itemCols, schemas.OpDelete, 10, item(12, 2, "c"), nil), 5))
	d = get()
	if _, ok := d["2"]; ok {
		t.Fatalf("order 2's document is left with nothing in it: %v", d["2"])
	}
	if s := h.Stats(); s.Stale != 2 || s.Deleted != 1 {
		t.Errorf("stats %+v: want 2 stale (the replays), 1 deleted document", s)
	}
	before := h.Stats().Skipped
	handle(t, h, tomb("t.items:10", 11, 6))
	if h.Stats().Skipped != before+1 {
		t.Errorf("a lone tombstone of a child whose parent key is not in its primary key was not skipped: %+v", h.Stats())
	}
}

// TestMappingError: a document the cluster refuses fails the batch with a
// permanent error naming index, id and the cluster's reason; the batch's other
// documents are written.
func TestMappingError(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	cols := []schemas.Column{{Name: "id", Type: "int", PK: true}, {Name: "qty", Type: "varchar"}}
	h := newHandler(t, config(srv.URL, essink.TableConfig{Match: "t.*"}))
	r := func(seq uint64, id int64, qty string) consumer.Record {
		return rec(change("stock", cols, schemas.OpCreate, seq, nil, map[string]any{"id": id, "qty": qty}), int64(seq))
	}
	handle(t, h, r(1, 1, "5")) // maps qty as text: a numeric string stays text in ES
	cols[1].Type = "int"
	num := rec(change("stock", cols, schemas.OpCreate, 2, nil, map[string]any{"id": int64(2), "qty": int64(7)}), 2)
	handle(t, h, num)
	srv2 := newESServer(t, false)
	h2 := newHandler(t, config(srv2.URL, essink.TableConfig{Match: "t.*"}))
	handle(t, h2, num) // qty mapped as long
	cols[1].Type = "varchar"
	err := h2.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.stock", Partition: 2, Records: []consumer.Record{r(3, 3, "lots"), r(4, 4, "12")}})
	if !consumer.IsPermanent(err) || !errors.Is(err, essink.ErrRejected) {
		t.Fatalf("mapping error: %v (permanent %v)", err, consumer.IsPermanent(err))
	}
	for _, want := range []string{"kanal.t.stock/2", "table t.stock", `key "t.stock:3"`, "offset 3", "index t.stock", `id "3"`, "mapper_parsing_exception", "failed to parse field [qty] of type [long]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if got := docs(t, estest.Cluster{URL: srv2.URL}, "t.stock"); len(got) != 2 || got["t.stock/4"]["qty"] != "12" {
		t.Errorf("the batch's good document was not written: %v", got)
	}
	_ = cl
}

// TestRetries: items rejected with 429 and requests failing with 503 are sent
// again after a backoff; when that does not end, Handle returns a plain
// (retryable) error naming the record.
func TestRetries(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	h := newHandler(t, config(srv.URL, essink.TableConfig{Match: "t.*"}))
	var recs []consumer.Record
	for i := range 10 {
		recs = append(recs, rec(change("orders", orderCols, schemas.OpCreate, uint64(i+1), nil, orderRow(int64(i), "n", "2024-01-01")), int64(i)))
	}
	srv.Inject(3, 2)
	handle(t, h, recs...)
	if n := len(docs(t, cl, "t.orders")); n != 10 {
		t.Fatalf("%d documents after retries, want 10", n)
	}
	if s := h.Stats(); s.Retried < 2 {
		t.Errorf("stats %+v: want retries", s)
	}
	srv.Inject(0, 1<<30)
	err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs[:1]})
	if err == nil || consumer.IsPermanent(err) || !strings.Contains(err.Error(), "offset 0") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("cluster failing: %v (permanent %v), want a retryable error", err, consumer.IsPermanent(err))
	}
	srv.Inject(0, 0)
}

// TestGoldenBulk compares the _bulk bodies of a fixed set of changes with
// testdata/*.ndjson (go test -update rewrites them).
func TestGoldenBulk(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  []essink.TableConfig
		recs func() []consumer.Record
	}{
		{"plain", []essink.TableConfig{{Match: "t.orders", Columns: essink.ColumnsConfig{Exclude: []string{"secret"}, Rename: map[string]string{"note": "remark"}}}},
			func() []consumer.Record {
				r1 := orderRow(1, "ünïcode \"quoted\"", "2024-05-01 10:00:00")
				r2 := orderRow(2, nil, "2024-05-02 00:00:00")
				return []consumer.Record{
					rec(change("orders", orderCols, schemas.OpCreate, 10, nil, r1), 0),
					rec(change("orders", orderCols, schemas.OpRead, 11, nil, r2), 1),
					rec(change("orders", orderCols, schemas.OpDelete, 12, r1, nil), 2),
					tomb("t.orders:1", 12, 3),
					tomb("t.orders:2", 0, 4),
					rec(change("orders", orderCols, schemas.OpUpdate, 14, r2, r2), 5),
				}
			}},
		{"dated", []essink.TableConfig{{Match: "t.orders", Index: "o-{table}", DateColumn: "created", DateFormat: "2006.01", Columns: essink.ColumnsConfig{Include: []string{"id"}}}},
			func() []consumer.Record {
				a, b := orderRow(1, "x", "2024-05-01 10:00:00"), orderRow(1, "x", "2024-07-01T00:00:00Z")
				return []consumer.Record{
					rec(change("orders", orderCols, schemas.OpCreate, 1, nil, a), 0),
					rec(change("orders", orderCols, schemas.OpUpdate, 2, a, b), 1),
					rec(change("orders", orderCols, schemas.OpDelete, 3, b, nil), 2),
				}
			}},
		{"joined", []essink.TableConfig{
			{Match: "t.items", Join: &essink.JoinConfig{Parent: "t.orders", Field: "items", ParentKey: []string{"order_id"}}},
			{Match: "t.orders", Columns: essink.ColumnsConfig{Include: []string{"id", "note"}}}},
			func() []consumer.Record {
				return []consumer.Record{
					rec(change("orders", orderCols, schemas.OpCreate, 1, nil, orderRow(1, "o", "2024-01-01")), 0),
					rec(change("items", itemCols, schemas.OpCreate, 2, nil, item(5, 1, "a")), 0),
					rec(change("items", itemCols, schemas.OpCreate, 3, nil, item(6, 1, "b,c")), 1),
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newESServer(t, false)
			h := newHandler(t, config(srv.URL, tc.cfg...))
			for _, r := range tc.recs() {
				handle(t, h, r)
			}
			var got []byte
			for _, b := range srv.Bodies() {
				got = append(append(got, b...), "---\n"...)
			}
			file := filepath.Join("testdata", tc.name+".ndjson")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("_bulk bodies differ from %s:\n got:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	j := func(parent, field string) *essink.JoinConfig {
		return &essink.JoinConfig{Parent: parent, Field: field, ParentKey: []string{"pid"}}
	}
	for _, tc := range []struct {
		mod  func(*essink.Config)
		want string
	}{
		{func(c *essink.Config) { c.URLs = nil }, "urls:"},
		{func(c *essink.Config) { c.URLs = []string{"http://u:secret@h:9200"} }, "urls[0]:"},
		{func(c *essink.Config) { c.URLs = []string{"es:9200"} }, "urls[0]:"},
		{func(c *essink.Config) { c.APIKey, c.Username = "k", "u" }, "api_key:"},
		{func(c *essink.Config) { c.Password = "secret" }, "username:"},
		{func(c *essink.Config) { c.Refresh = "now" }, "refresh:"},
		{func(c *essink.Config) { c.Retry.MaxAttempts = 0 }, "retry.max_attempts:"},
		{func(c *essink.Config) { c.Tables[0].Index = "Bad Name" }, "tables[0].index:"},
		{func(c *essink.Config) { c.Tables[0].Index = "x-{column}" }, "tables[0].index:"},
		{func(c *essink.Config) { c.Tables[0].DateFormat = "2006" }, "tables[0].date_format:"},
		{func(c *essink.Config) { c.Tables[0].Columns.Rename = map[string]string{"a": "_id"} }, "tables[0].columns.rename.a:"},
		{func(c *essink.Config) {
			c.Tables = append([]essink.TableConfig{{Match: "t.items", Join: j("t.missing", "items")}}, c.Tables...)
		}, "tables[0].join.parent:"},
		{func(c *essink.Config) {
			c.Tables = append([]essink.TableConfig{{Match: "t.items", Join: j("t.*", "items")}}, c.Tables...)
		}, "tables[0].join.parent:"},
		{func(c *essink.Config) {
			c.Tables = append([]essink.TableConfig{{Match: "t.items", Join: j("t.orders", "_items")}}, c.Tables...)
		}, "tables[0].join.field:"},
		{func(c *essink.Config) {
			c.Tables[0].DateColumn = "created"
			c.Tables = append([]essink.TableConfig{{Match: "t.items", Join: j("t.orders", "items")}}, c.Tables...)
		}, "tables[0].join.parent:"},
		{func(c *essink.Config) {
			c.Tables = append([]essink.TableConfig{{Match: "t.items", Join: j("t.orders", "items")}, {Match: "t.more", Join: j("t.orders", "items")}}, c.Tables...)
		}, "join.field:"},
	} {
		cfg := config("http://127.0.0.1:9200", essink.TableConfig{Match: "t.orders"})
		tc.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, essink.ErrConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("want an error naming %q without secrets, got %v", tc.want, err)
		}
	}
	cfg := config("http://127.0.0.1:9200", essink.TableConfig{Match: "t.items", Join: j("t.orders", "items")}, essink.TableConfig{Match: "t.orders"})
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	_ = time.Second
}
