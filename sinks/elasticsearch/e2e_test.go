package essink_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/estest"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// e2eConfig indexes the workload: wl.items with the rows of wl.pairs joined in
// (pairs.a = items.id) as the array "pairs", wl.nopk on its own with a renamed
// column.
func e2eConfig(url string) essink.Config {
	return config(url,
		essink.TableConfig{Match: "wl.pairs", Join: &essink.JoinConfig{Parent: "wl.items", Field: "pairs", ParentKey: []string{"a"}}},
		essink.TableConfig{Match: "wl.items", Index: "items"},
		essink.TableConfig{Match: "wl.nopk", Index: "{db}-{table}", Columns: essink.ColumnsConfig{Rename: map[string]string{"y": "why"}}},
	)
}

// canonical renders a row (or child rows) so that source rows and documents
// compare as text.
func canonical(row map[string]string) string {
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, row[k])
	}
	return b.String()
}

// TestEndToEndConsumerKilled: a random workload (inserts, updates, deletes,
// primary-key changes, NULLs, bytes, a composite key needing escapes, a table
// without a primary key, a big transaction) flows MariaDB → producer → Kafka →
// Runner → the in-test cluster. The consumer is killed mid-load (no commit, group
// not left) and a new one in the same group resumes from the committed offsets,
// replaying what the dead one had indexed. Then every document equals the
// source: each item with exactly the pairs whose a is its id, pairs without an
// item in documents of their own (no parent fields), wl.nopk row for row.
// TRUNCATEs of the child table (while the first consumer runs), of the parent
// and of wl.nopk (while none runs) reach each partition where they stand, and
// the restarted consumer replays some of them: every document written before a
// truncate is gone, none written after it.
//
// The kill is in-process (handler stopped, network cut); cmd/kanal's
// TestConsume*Killed SIGKILLs a real `kanal consume` running the handler.
func TestEndToEndConsumerKilled(t *testing.T) {
	srv := newESServer(t, false)
	cl := estest.Cluster{URL: srv.URL}
	p := cdctest.NewPipeline(t, "es-e2e", 21)
	cfg := e2eConfig(srv.URL)
	const group = "kanal-elasticsearch"
	first := newHandler(t, cfg)
	r1 := p.StartRunner(first, group, cfg.TablePatterns()...)
	p.Steps(80)
	p.W.Bulk(t, 1500)
	p.W.Truncate(t, "pairs")
	p.Steps(20)
	r1.WaitBatches(t, 4)
	r1.Kill(t)
	killedAt := first.Stats()
	p.Steps(30)
	p.W.Truncate(t, "items")
	p.W.Truncate(t, "nopk")
	p.Steps(30)
	second := newHandler(t, cfg)
	p.StartRunner(second, group, cfg.TablePatterns()...)
	p.Steps(40)
	p.WaitApplied(group)

	db := p.M.DB()
	// wl.items joined with wl.pairs.
	want := map[string]string{}
	items := cdctest.SourceRows(t, db, "wl.items", cdctest.ItemsKey, "data")
	pairs := cdctest.SourceRows(t, db, "wl.pairs", cdctest.PairsKey)
	children := map[string][]string{} // item id → child keys
	for k, r := range pairs {
		children[r["a"]] = append(children[r["a"]], k)
	}
	for id, keys := range children {
		sort.Slice(keys, func(i, j int) bool {
			return strings.TrimPrefix(keys[i], "wl.pairs:") < strings.TrimPrefix(keys[j], "wl.pairs:")
		})
		var parts []string
		for _, k := range keys {
			parts = append(parts, canonical(pairs[k]))
		}
		want[id] = "pairs=" + strings.Join(parts, "|") + ";"
	}
	for _, r := range items {
		want[r["id"]] = canonical(r) + want[r["id"]]
	}
	got := map[string]string{}
	for _, d := range cl.Search(t, "items") {
		var parts []string
		if arr, ok := d.Source["pairs"].([]any); ok {
			for _, c := range arr {
				parts = append(parts, canonical(render(t, c.(map[string]any), nil)))
			}
		}
		delete(d.Source, "pairs")
		s := canonical(render(t, d.Source, map[string]bool{"data": true}))
		if len(parts) > 0 {
			s += "pairs=" + strings.Join(parts, "|") + ";"
		}
		got[d.ID] = s
	}
	diff := func(want, got map[string]string) []string {
		var out []string
		for k, w := range want {
			if got[k] != w {
				out = append(out, fmt.Sprintf("%s: want %s\n   got %s", k, w, got[k]))
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				out = append(out, fmt.Sprintf("%s: extra %s", k, g))
			}
		}
		sort.Strings(out)
		return out[:min(len(out), 10)]
	}
	if d := diff(want, got); len(d) > 0 {
		t.Errorf("items documents differ from wl.items joined with wl.pairs (%d documents, %d expected):\n%s", len(got), len(want), strings.Join(d, "\n"))
	}
	// wl.nopk.
	wantN, gotN := map[string]string{}, map[string]string{}
	for k, r := range cdctest.SourceRows(t, db, "wl.nopk", cdctest.NopkKey) {
		r["why"] = r["y"]
		delete(r, "y")
		wantN[strings.TrimPrefix(k, "wl.nopk:")] = canonical(r)
	}
	for _, d := range cl.Search(t, "wl-nopk") {
		gotN[d.ID] = canonical(render(t, d.Source, nil))
	}
	if d := diff(wantN, gotN); len(d) > 0 {
		t.Errorf("wl-nopk documents differ from wl.nopk (%d documents, %d rows):\n%s", len(gotN), len(wantN), strings.Join(d, "\n"))
	}
	if s := second.Stats(); killedAt.Truncates+s.Truncates < 9 {
		t.Errorf("%d + %d truncates applied, want each of the 9 truncate records (3 tables × 3 partitions) at least once", killedAt.Truncates, s.Truncates)
	}
	t.Logf("%d items documents, %d nopk; killed after %+v; the restarted consumer: %+v", len(got), len(gotN), killedAt, second.Stats())
}
