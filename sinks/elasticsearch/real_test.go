package essink_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// TestRealCluster runs the sink against a real Elasticsearch 7/8 or OpenSearch 2
// when KANAL_ES_URL names one (for example http://127.0.0.1:9200;
// KANAL_ES_USERNAME and KANAL_ES_PASSWORD for basic auth); see
// docs/elasticsearch.md → Against a real cluster. It checks what the in-test
// server stands in for: external versions (older changes and deletes refused
// with 409, in any order), a mapping error dead-lettered with the cluster's
// reason, per-month indexes, and a joined document written with
// if_seq_no/if_primary_term, and truncates (scrolled, deleted with the
// truncate's version: later rows stay, older replays stay out). Its indexes are named kanal-test-<time>-… and
// deleted at the end.
func TestRealCluster(t *testing.T) {
	url := os.Getenv("KANAL_ES_URL")
	if url == "" {
		t.Skip("KANAL_ES_URL is not set: no Elasticsearch/OpenSearch to test against (docs/elasticsearch.md)")
	}
	cl := estest.Cluster{URL: url, User: os.Getenv("KANAL_ES_USERNAME"), Pass: os.Getenv("KANAL_ES_PASSWORD")}
	prefix := fmt.Sprintf("kanal-test-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		// By name: Elasticsearch 8 refuses wildcard deletes by default.
		var names []string
		for _, n := range []string{"plain", "stock", "orders", "events-2024.05", "events-2024.06", "trunc"} {
			names = append(names, prefix+"-"+n)
		}
		if st, body := cl.Call(t, http.MethodDelete, "/"+strings.Join(names, ",")+"?ignore_unavailable=true", nil); st/100 != 2 {
			t.Logf("cleanup: DELETE %s: %d %s", names, st, body)
		}
	})
	cfg := config(url,
		essink.TableConfig{Match: "t.items", Join: &essink.JoinConfig{Parent: "t.orders", Field: "items", ParentKey: []string{"order_id"}}},
		essink.TableConfig{Match: "t.orders", Index: prefix + "-orders", Columns: essink.ColumnsConfig{Include: []string{"id", "note"}}},
		essink.TableConfig{Match: "t.events", Index: prefix + "-events", DateColumn: "created", DateFormat: "2006.01"},
		essink.TableConfig{Match: "t.*", Index: prefix + "-{table}"},
	)
	cfg.Username, cfg.Password = cl.User, cl.Pass
	cfg.Refresh = "wait_for"
	cfg.BulkMaxActions = 2
	h := newHandler(t, cfg)

	t.Run("Versions", func(t *testing.T) {
		row := func(note string) map[string]any { return orderRow(1, note, "2024-05-01 10:00:00") }
		handle(t, h, rec(change("plain", orderCols, schemas.OpCreate, 5, nil, row("five")), 0))
		handle(t, h, rec(change("plain", orderCols, schemas.OpUpdate, 3, nil, row("three")), 1))
		expectDocs(t, cl, prefix+"-plain", map[string]map[string]string{prefix + "-plain/1": {"id": "1", "note": "five", "created": "2024-05-01 10:00:00", "secret": "s3cr3t"}})
		handle(t, h, rec(change("plain", orderCols, schemas.OpDelete, 6, row("five"), nil), 2))
		handle(t, h, rec(change("plain", orderCols, schemas.OpUpdate, 5, nil, row("replayed")), 0))
		expectDocs(t, cl, prefix+"-plain", map[string]map[string]string{})
		if s := h.Stats(); s.Stale < 2 {
			t.Errorf("stats %+v: the cluster did not refuse the older changes", s)
		}
	})
	t.Run("MappingError", func(t *testing.T) {
		cols := []schemas.Column{{Name: "id", Type: "int", PK: true}, {Name: "qty", Type: "int"}}
		handle(t, h, rec(change("stock", cols, schemas.OpCreate, 10, nil, map[string]any{"id": int64(1), "qty": int64(5)}), 0))
		cols[1].Type = "varchar"
		err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.stock", Records: []consumer.Record{
			rec(change("stock", cols, schemas.OpCreate, 11, nil, map[string]any{"id": int64(2), "qty": "lots"}), 1)}})
		if !consumer.IsPermanent(err) || !errors.Is(err, essink.ErrRejected) || !strings.Contains(err.Error(), "qty") {
			t.Fatalf("mapping error: %v (permanent %v)", err, consumer.IsPermanent(err))
		}
		t.Logf("the cluster's reason: %v", err)
	})
	t.Run("DateIndexes", func(t *testing.T) {
		may, june := orderRow(1, "a", "2024-05-31 23:59:59"), orderRow(1, "b", "2024-06-01 00:00:00")
		handle(t, h, rec(change("events", orderCols, schemas.OpCreate, 20, nil, may), 0))
		handle(t, h, rec(change("events", orderCols, schemas.OpUpdate, 21, may, june), 1))
		got := docs(t, cl, prefix+"-events-*")
		if len(got) != 1 || got[prefix+"-events-2024.06/1"]["note"] != "b" {
			t.Fatalf("events: %v", got)
		}
	})
	t.Run("Join", func(t *testing.T) {
		handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 30, nil, item(10, 1, "a")), 0))
		handle(t, h, rec(change("orders", orderCols, schemas.OpCreate, 31, nil, orderRow(1, "first", "2024-01-01")), 0))
		handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 32, nil, item(11, 1, "b")), 1))
		handle(t, h, rec(change("items", itemCols, schemas.OpCreate, 30, nil, item(10, 1, "stale")), 0))
		hits := cl.Search(t, prefix+"-orders")
		if len(hits) != 1 || fmt.Sprint(hits[0].Source["items"]) != "[map[id:10 order_id:1 sku:a] map[id:11 order_id:1 sku:b]]" || hits[0].Source["note"] != "first" {
			t.Fatalf("joined document: %v", hits)
		}
	})
	t.Run("Truncate", func(t *testing.T) {
		mk := func(id int64, seq uint64) consumer.Record {
			return rec(change("trunc", orderCols, schemas.OpCreate, seq, nil, orderRow(id, fmt.Sprint("v", seq), "2024-05-01")), int64(seq))
		}
		handle(t, h, mk(1, 40), mk(2, 41), mk(3, 42))
		handleIn(t, h, 1, mk(4, 46))                   // from a partition ahead of the truncate
		handleIn(t, h, 0, truncRec("t.trunc", 45, 43)) // scrolls in pages of bulk_max_actions
		handleIn(t, h, 0, mk(1, 40))                   // a replay of an older change
		if got := ids(t, cl, prefix+"-trunc"); got != prefix+"-trunc/4" {
			t.Fatalf("after the truncate: %s", got)
		}
		handleIn(t, h, 0, truncRec("t.events", 47, 44))
		if got := ids(t, cl, prefix+"-events-*"); got != "" {
			t.Fatalf("events after their truncate: %s", got)
		}
	})
}
