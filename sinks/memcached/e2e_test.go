package memcachedsink_test

import (
	"testing"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

// TestEndToEndConsumerKilled: a random workload (inserts, updates, deletes,
// primary-key changes, NULLs, a composite key with spaces and escapes, a table
// without a primary key, a big transaction) flows MariaDB → producer → Kafka →
// Runner → memcached. The consumer is killed mid-load (no commit, group not left)
// and a new one in the same group resumes from the committed offsets, replaying
// what the dead one had applied; once every change is applied, memcached holds
// exactly the source's rows.
//
// The kill is in-process (handler stopped, network cut); cmd/kanal's
// TestConsume*Killed SIGKILLs a real `kanal consume` running the handler.
func TestEndToEndConsumerKilled(t *testing.T) {
	srv := testenv.Memcached(t)
	p := cdctest.NewPipeline(t, "memcached-e2e", 11)
	cfg := config(srv.Addr,
		memcachedsink.TableConfig{Match: "wl.items", Columns: memcachedsink.ColumnsConfig{Rename: map[string]string{"note": "remark"}}},
		memcachedsink.TableConfig{Match: "wl.*"})
	cfg.Key = "kc:{key}"
	const group = "kanal-memcached"
	first := newHandler(t, cfg)
	r1 := p.StartRunner(first, group, cfg.TablePatterns()...)
	p.Steps(60)
	p.W.Bulk(t, 2000)
	r1.WaitBatches(t, 4)
	r1.Kill(t)
	killedAt := first.Stats()
	p.Steps(60)
	second := newHandler(t, cfg)
	p.StartRunner(second, group, cfg.TablePatterns()...)
	p.Steps(40)
	p.WaitApplied(group)

	rd := newReader(t, cfg)
	rows := 0
	for _, tc := range cdctest.WorkloadTables {
		src := cdctest.SourceRows(t, p.M.DB(), tc.Table, tc.Key, tc.Binary...)
		want := map[string]map[string]string{}
		for k, r := range src {
			if tc.Table == "wl.items" {
				r["remark"] = r["note"]
				delete(r, "note")
			}
			ik, ok := rd.ItemKey(k)
			if !ok {
				t.Fatalf("no item key for %s", k)
			}
			want[ik] = r
		}
		bin := map[string]bool{}
		for _, c := range tc.Binary {
			bin[c] = true
		}
		got := image(t, srv.Addr, "kc:"+tc.Table+":", bin)
		if d := testdiff.Rows(want, got); d != "" {
			t.Errorf("%s in memcached differs from the source (%d items vs %d rows):\n%s", tc.Table, len(got), len(want), d)
		}
		rows += len(want)
	}
	t.Logf("%d source rows; killed after %+v; the restarted consumer: %+v", rows, killedAt, second.Stats())
}
