package essink_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// truncRec is the truncate record of table ("db.table") with sequence seq in a
// partition, at offset off: key "<db>.<table>", no row.
func truncRec(table string, seq uint64, off int64) consumer.Record {
	db, tbl, _ := strings.Cut(table, ".")
	c := &schemas.Change{Op: schemas.OpTruncate, Seq: seq, Source: schemas.Source{Name: "src", File: "binlog.000001", Pos: uint32(seq), DB: db, Table: tbl}}
	return consumer.Record{Topic: "kanal." + table, Offset: off, Key: schemas.TruncateKey(db, tbl), Table: table,
		Op: schemas.OpTruncate, Seq: seq, Pos: fmt.Sprintf("binlog.000001:%d", seq), Change: c}
}

// handleIn applies recs as one batch of partition p.
func handleIn(t *testing.T, h *essink.Handler, p int32, recs ...consumer.Record) {
	t.Helper()
	for i := range recs {
		recs[i].Partition = p
	}
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: recs[0].Topic, Partition: p, Records: recs}); err != nil {
		t.Fatalf("Handle (partition %d): %v", p, err)
	}
}

// ids returns the document ids of the indexes matching pattern, as
// "index/id" sorted.
func ids(t *testing.T, cl estest.Cluster, pattern string) string {
	t.Helper()
	var out []string
	for _, d := range cl.Search(t, pattern) {
		out = append(out, d.Index+"/"+d.ID)
	}
	return strings.Join(sortStrings(out), " ")
}

// rawDocs returns the documents of index by id, as the cluster holds them.
func rawDocs(t *testing.T, cl estest.Cluster, index string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, d := range cl.Search(t, index) {
		out[d.ID] = d.Source
	}
	return out
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func truncateConfig(url string) essink.Config {
	cfg := config(url,
		essink.TableConfig{Match: "t.items", Join: &essink.JoinConfig{Parent: "t.orders", Field: "items", ParentKey: []string{"order_id"}}},
		essink.TableConfig{Match: "t.orders", Index: "orders"},
		essink.TableConfig{Match: "t.events", Index: "events", DateColumn: "created", DateFormat: "2006.01"},
		essink.TableConfig{Match: "t.archive", Index: "events-archive"},
		essink.TableConfig{Match: "t.shard_*", Index: "shards"},
		essink.TableConfig{Match: "t.*"},
	)
	cfg.BulkMaxActions = 2 // scrolls of two documents: truncates take several pages
	return cfg
}

// TestTruncate: a truncate record, one per partition of the table's topic,
// deletes every document of its table older than the truncate, wherever the
// other partitions stand: rows of a partition that is ahead (written after the
// truncate) stay, rows of a partition that is behind (written before it) are
// indexed and then deleted by that partition's own truncate record. A replay of
// the partitions converges to the same documents: older changes are refused by
// the deleted documents' versions, the replayed truncates delete nothing newer.
func TestTruncate(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	h := newHandler(t, truncateConfig(srv.URL))
	row := func(id int64, note string) map[string]any { return orderRow(id, note, "2024-05-01 10:00:00") }
	mk := func(id int64, seq uint64, off int64) consumer.Record {
		return rec(change("plain", orderCols, schemas.OpCreate, seq, nil, row(id, fmt.Sprint("v", seq))), off)
	}
	// Before the truncate (seq 20): rows 1 and 2 in partition 0, 3 and 4 in 1.
	p0a := []consumer.Record{mk(1, 10, 0), mk(2, 11, 1)}
	p1a := []consumer.Record{mk(3, 12, 0), mk(4, 13, 1)}
	handleIn(t, h, 0, p0a...)
	handleIn(t, h, 1, p1a...)
	// Partition 1 is ahead: it applies its truncate and a row written after it.
	p1b := []consumer.Record{rec(change("plain", orderCols, schemas.OpUpdate, 15, nil, row(3, "v15")), 2), truncRec("t.plain", 20, 3), mk(5, 22, 4)}
	handleIn(t, h, 1, p1b...)
	if got := ids(t, cl, "t.plain"); got != "t.plain/5" {
		t.Fatalf("after partition 1's truncate: %s, want only row 5 (written after it)", got)
	}
	// Partition 2 (no rows before) applies its truncate and a row after it.
	p2 := []consumer.Record{truncRec("t.plain", 20, 0), mk(9, 21, 1)}
	handleIn(t, h, 2, p2...)
	// Partition 0 is behind: a row written before the truncate arrives now, then
	// its truncate (which must leave rows 5 and 9 alone), then a row after it.
	p0b := []consumer.Record{mk(6, 18, 2), truncRec("t.plain", 20, 3), mk(7, 25, 4)}
	handleIn(t, h, 0, p0b...)
	const want = "t.plain/5 t.plain/7 t.plain/9"
	if got := ids(t, cl, "t.plain"); got != want {
		t.Fatalf("after every partition's truncate: %s, want %s", got, want)
	}
	if s := h.Stats(); s.Truncates != 3 {
		t.Errorf("stats %+v, want 3 truncates", s)
	}
	// A replay of every partition from the start, in another order.
	handleIn(t, h, 0, append(append([]consumer.Record{}, p0a...), p0b...)...)
	handleIn(t, h, 2, p2...)
	handleIn(t, h, 1, append(append([]consumer.Record{}, p1a...), p1b...)...)
	if got := ids(t, cl, "t.plain"); got != want {
		t.Fatalf("after a replay: %s, want %s", got, want)
	}
	doc := docs(t, cl, "t.plain")["t.plain/7"]
	if doc["note"] != "v25" {
		t.Errorf("row 7 after the replay: %v", doc)
	}

	// Date indexes: every events-<month> index; events-archive (another
	// table's) is not one of them.
	ev := func(id int64, seq uint64, created string) consumer.Record {
		return rec(change("events", orderCols, schemas.OpCreate, seq, nil, orderRow(id, "e", created)), int64(seq))
	}
	handleIn(t, h, 0, ev(1, 30, "2024-05-02 00:00:00"), ev(2, 31, "2024-06-02 00:00:00"), ev(3, 32, "2024-07-02 00:00:00"),
		rec(change("archive", orderCols, schemas.OpCreate, 33, nil, orderRow(1, "kept", "2024-01-01")), 0))
	handleIn(t, h, 1, ev(4, 36, "2024-06-03 00:00:00")) // after the truncate, from a partition ahead
	handleIn(t, h, 0, truncRec("t.events", 35, 40))
	if got := ids(t, cl, "events*"); got != "events-2024.06/4 events-archive/1" {
		t.Fatalf("after the truncate of a date-partitioned table: %s", got)
	}

	// Joined documents: a child table's truncate removes the child rows older
	// than it, a parent table's the parent rows; newer rows stay.
	handleIn(t, h, 0,
		rec(change("orders", orderCols, schemas.OpCreate, 50, nil, orderRow(1, "first", "2024-01-01")), 0),
		rec(change("orders", orderCols, schemas.OpCreate, 51, nil, orderRow(2, "second", "2024-01-01")), 1),
		rec(change("items", itemCols, schemas.OpCreate, 52, nil, item(10, 1, "a")), 2),
		rec(change("items", itemCols, schemas.OpCreate, 53, nil, item(11, 1, "b")), 3),
		rec(change("items", itemCols, schemas.OpCreate, 54, nil, item(12, 2, "c")), 4))
	handleIn(t, h, 1, rec(change("items", itemCols, schemas.OpCreate, 61, nil, item(13, 2, "after")), 0))
	handleIn(t, h, 0, truncRec("t.items", 60, 5))
	got := rawDocs(t, cl, "orders")
	if len(got) != 2 || got["1"]["note"] != "first" || got["1"]["items"] != nil ||
		fmt.Sprint(got["2"]["items"]) != "[map[id:13 order_id:2 sku:after]]" {
		t.Fatalf("after the child table's truncate: %v", got)
	}
	handleIn(t, h, 0, rec(change("items", itemCols, schemas.OpUpdate, 55, nil, item(11, 1, "replayed")), 6)) // older: stays out
	handleIn(t, h, 1, rec(change("orders", orderCols, schemas.OpUpdate, 66, nil, orderRow(2, "after", "2024-01-01")), 1))
	handleIn(t, h, 0, truncRec("t.orders", 65, 7))
	got = rawDocs(t, cl, "orders")
	if len(got) != 1 || got["2"]["note"] != "after" || fmt.Sprint(got["2"]["items"]) != "[map[id:13 order_id:2 sku:after]]" {
		t.Fatalf("after the parent table's truncate: %v (order 1 holds nothing any more: its document goes)", got)
	}

	// Several tables share the index "shards": their documents do not say whose
	// they are, so the truncate is refused; the records around it are applied.
	batch := []consumer.Record{rec(change("shard_1", orderCols, schemas.OpCreate, 70, nil, row(1, "s1")), 0),
		truncRec("t.shard_1", 71, 1), rec(change("shard_1", orderCols, schemas.OpCreate, 72, nil, row(2, "s2")), 2)}
	err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.shard_1", Partition: 2, Records: batch})
	if !consumer.IsPermanent(err) || !errors.Is(err, essink.ErrTruncate) || !strings.Contains(err.Error(), "TRUNCATE of t.shard_1 (seq 71)") ||
		!strings.Contains(err.Error(), "index shards") || !strings.Contains(err.Error(), "any table matching t.shard_*") ||
		!strings.Contains(err.Error(), "offset 1") {
		t.Fatalf("truncate of a table sharing its index: %v (permanent %v)", err, consumer.IsPermanent(err))
	}
	if got := ids(t, cl, "shards"); got != "shards/1 shards/2" {
		t.Fatalf("shards: %s", got)
	}
	// A truncate without a sequence cannot be versioned.
	nos := truncRec("t.plain", 0, 9)
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: nos.Topic, Records: []consumer.Record{nos}}); !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "no sequence") {
		t.Fatalf("truncate without a sequence: %v", err)
	}
	if st := srv.Stats(); st.Scrolls < 6 || st.OpenScrolls != 0 {
		t.Errorf("server stats %+v: want every truncate's scroll opened and freed", st)
	}
}

// TestTruncateSharedIndex: which index templates let a truncate through. An
// index is the table's own only when no rule can give another table its name.
func TestTruncateSharedIndex(t *testing.T) {
	srv := newESServer(t, false)
	for _, tc := range []struct {
		table  string
		tables []essink.TableConfig
		shared string // "" when the truncate is applied
	}{
		{"shop.orders", []essink.TableConfig{{Match: "shop.*"}}, ""},
		{"shop.orders", []essink.TableConfig{{Match: "shop.orders", Index: "orders"}, {Match: "shop.*"}}, ""},
		{"shop.orders", []essink.TableConfig{{Match: "*.*", Index: "{table}"}}, "any table matching *.*"},
		{"shop.orders", []essink.TableConfig{{Match: "shop.*", Index: "{table}"}}, ""},
		{"shop.orders_1", []essink.TableConfig{{Match: "shop.orders_*", Index: "orders"}}, "any table matching shop.orders_*"},
		{"shop.orders", []essink.TableConfig{{Match: "shop.orders", Index: "orders"}, {Match: "old.orders", Index: "orders"}}, "old.orders (tables[1]"},
		{"shop.orders", []essink.TableConfig{{Match: "shop.orders", Index: "shop-orders"}, {Match: "*.*", Index: "{db}-{table}"}}, ""},
		{"a-b.c", []essink.TableConfig{{Match: "*.*", Index: "{db}-{table}"}}, "a.b-c (tables[0]"},
		{"a.bc", []essink.TableConfig{{Match: "*.*", Index: "x{db}{table}"}}, "ab.c (tables[0]"},
		{"shop.orders", []essink.TableConfig{{Match: "shop.orders", Index: "orders"}, {Match: "shop.*", Index: "{table}"}}, ""},
		{"Shop.Orders", []essink.TableConfig{{Match: "Shop.*"}}, ""},
	} {
		cfg := config(srv.URL, tc.tables...)
		cfg.Name = "shared"
		h := newHandler(t, cfg)
		tr := truncRec(tc.table, 5, 0)
		err := h.Handle(ctxT(t), consumer.Batch{Topic: tr.Topic, Records: []consumer.Record{tr}})
		switch {
		case tc.shared == "" && err != nil:
			t.Errorf("%s with %+v: %v, want the truncate applied", tc.table, tc.tables, err)
		case tc.shared != "" && (!errors.Is(err, essink.ErrTruncate) || !strings.Contains(err.Error(), tc.shared)):
			t.Errorf("%s with %+v: %v, want ErrTruncate naming %q", tc.table, tc.tables, err, tc.shared)
		}
	}
}
