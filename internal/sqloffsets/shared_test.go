package sqloffsets_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// offsetsHandler is what kanal offsets reset and the Runner call on a sink that
// stores its offsets.
type offsetsHandler interface {
	ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error
	LoadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error)
}

// TestMirrorAndAggregatorShareTheTable: a mirror and an aggregator writing to one
// database with their default offsets table (kanal_offsets) use the same table,
// each under its own group, whichever creates it.
func TestMirrorAndAggregatorShareTheTable(t *testing.T) {
	pg := testenv.Postgres(t)
	for _, mirrorFirst := range []bool{true, false} {
		// A schema of its own per order, each with a fresh kanal_offsets.
		schema := map[bool]string{true: "m_first", false: "a_first"}[mirrorFirst]
		db := stdlib.OpenDB(*mustPGConfig(t, pg.DSN))
		t.Cleanup(func() { db.Close() })
		if _, err := db.ExecContext(ctxT(t), "CREATE SCHEMA "+schema); err != nil {
			t.Fatal(err)
		}
		dsn := pg.DSN + "&search_path=" + schema
		if !strings.Contains(pg.DSN, "?") {
			dsn = pg.DSN + "?search_path=" + schema
		}
		mcfg := sqlmirror.DefaultConfig()
		mcfg.Name, mcfg.Dialect, mcfg.DSN = "mirror", sqlmirror.Postgres, dsn
		mirror, err := sqlmirror.New(mcfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mirror.Close() })
		acfg := aggregators.DefaultConfig()
		acfg.Name, acfg.Target.Driver, acfg.Target.DSN = "agg", aggregators.DriverPostgres, dsn
		acfg.Summaries = []aggregators.SummaryConfig{{Table: "by_user", Source: "shop.earnings", GroupBy: []string{"user_id"}, Measures: []string{"count"}}}
		agg, err := aggregators.New(acfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(agg.Close)
		type sink struct {
			h     offsetsHandler
			group string
			next  int64
		}
		sinks := []sink{{mirror, "kanal-mirror", 10}, {agg, "kanal-agg", 20}}
		if !mirrorFirst {
			sinks[0], sinks[1] = sinks[1], sinks[0]
		}
		for _, s := range sinks {
			if err := s.h.ResetOffsets(ctxT(t), s.group, map[string]map[int32]int64{"k.t": {0: s.next}}); err != nil {
				t.Fatalf("%s: %s: %v", schema, s.group, err)
			}
		}
		for _, s := range sinks {
			got, err := s.h.LoadOffsets(ctxT(t), s.group, map[string][]int32{"k.t": {0}})
			if err != nil {
				t.Fatalf("%s: %s: %v", schema, s.group, err)
			}
			if d := testdiff.Diff(map[string]map[int32]int64{"k.t": {0: s.next}}, got); d != "" {
				t.Errorf("%s: %s loads (-want +got):\n%s", schema, s.group, d)
			}
		}
		var n int
		if err := db.QueryRowContext(ctxT(t), "SELECT count(*) FROM "+schema+".kanal_offsets").Scan(&n); err != nil || n != 2 {
			t.Errorf("%s.kanal_offsets holds %d rows (%v), want both sinks' one", schema, n, err)
		}
	}
}
