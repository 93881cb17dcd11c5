package sqlmirror_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// gated is the mirror as the Runner sees it, with a switch that makes a killed
// consumer stop writing at once, as a dead process would. It keeps the
// OffsetStore methods of the mirror.
type gated struct {
	*sqlmirror.Handler
	dead *atomic.Bool
}

func (g gated) Handle(ctx context.Context, b consumer.Batch) error {
	if g.dead.Load() {
		return errors.New("killed")
	}
	return g.Handler.Handle(ctx, b)
}

// runner is a consumer Runner with one mirror, started by a test.
type runner struct {
	*cdctest.Runner
	h    *sqlmirror.Handler
	dead atomic.Bool
}

func startRunner(t *testing.T, k *testenv.KafkaCluster, prefix string, cfg sqlmirror.Config, tables ...string) *runner {
	t.Helper()
	h := newMirror(t, cfg)
	rr := &runner{h: h}
	reg := consumer.NewRegistry()
	if err := reg.Register(gated{Handler: h, dead: &rr.dead}, consumer.Tables(tables...)); err != nil {
		t.Fatal(err)
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka.Brokers = k.Brokers
	ccfg.Kafka.TopicPrefix = prefix
	ccfg.CommitInterval = 200 * time.Millisecond
	ccfg.SessionTimeout = 3 * time.Second
	ccfg.RevokeTimeout = 5 * time.Second
	ccfg.MetadataMaxAge = 300 * time.Millisecond
	ccfg.BatchMaxRecords = 200
	ccfg.Heartbeats = false
	ccfg.Retry = consumer.RetryConfig{MaxAttempts: 50, InitialInterval: 20 * time.Millisecond, MaxInterval: 300 * time.Millisecond}
	rr.Runner = cdctest.StartRunner(t, cfg.Name, ccfg, reg, cdctest.Logger(t).With("mirror", cfg.Name), 60*time.Second)
	return rr
}

// stop ends the runner; with kill, abruptly: the mirror stops writing and the
// network is cut before the context is cancelled, so nothing more is committed
// and the group is not left.
func (rr *runner) stop(t *testing.T, kill bool) {
	t.Helper()
	if kill {
		rr.dead.Store(true)
		rr.Kill(t)
		return
	}
	rr.Stop(t)
}

type image func(ctx context.Context) (map[string]map[string]string, error)

// waitEqual waits until got equals want (both read again on every try).
func waitEqual(t *testing.T, what string, want, got image) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		w, err := want(ctx)
		if err != nil {
			cancel()
			t.Fatalf("%s: read source: %v", what, err)
		}
		g, err := got(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: read target: %v", what, err)
		}
		d := testdiff.Rows(w, g)
		if d == "" {
			if len(w) == 0 {
				t.Fatalf("%s: the source is empty: the test proves nothing", what)
			}
			t.Logf("%s: target equals the source (%d rows)", what, len(w))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the target still differs from the source after 2 minutes (%d rows, source %d):\n%s", what, len(g), len(w), d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func merge(parts ...image) image {
	return func(ctx context.Context) (map[string]map[string]string, error) {
		out := map[string]map[string]string{}
		for _, p := range parts {
			m, err := p(ctx)
			if err != nil {
				return nil, err
			}
			for k, v := range m {
				out[k] = v
			}
		}
		return out, nil
	}
}

func rowsOf(db *sql.DB, query string, keyOf func(map[string]string) string, bin ...string) image {
	return func(ctx context.Context) (map[string]map[string]string, error) {
		return cdctest.ReadRows(ctx, db, query, keyOf, bin...)
	}
}

const (
	wlItemsMySQL = `CREATE TABLE wl.items (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4,
		amount DECIMAL(14,2), data VARBINARY(16), note TEXT, ts DATETIME(6), cnt INT UNSIGNED, _kanal_version BIGINT NOT NULL)`
	wlPairsMySQL = `CREATE TABLE wl.pairs (a INT NOT NULL, b VARCHAR(20) NOT NULL, v INT, _kanal_version BIGINT NOT NULL, PRIMARY KEY (a, b))`
	wlItemsPG    = `CREATE TABLE items (id bigint PRIMARY KEY, name varchar(64), amount numeric(14,2), data bytea, note text,
		ts timestamp(6), cnt bigint, _kanal_version bigint NOT NULL)`
	wlPairsPG = `CREATE TABLE pair_copy (a integer NOT NULL, b varchar(20) NOT NULL, value integer, _kanal_version bigint NOT NULL, PRIMARY KEY (a, b))`
)

// TestMirrorsThroughKillsAndReplay mirrors a random workload from one MariaDB
// into a PostgreSQL and a MariaDB target, each its own handler and consumer
// group. The MariaDB mirror is killed and stays down while the workload and
// the Postgres mirror go on; the Postgres mirror is killed mid-stream and
// restarted; then the MariaDB mirror resumes. Both targets end equal to the
// source. Then both groups are reset to earliest: the MariaDB target emptied
// (rebuilt from Kafka), the Postgres one left full (the replay must change
// nothing); both end equal to the source again.
func TestMirrorsThroughKillsAndReplay(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	pg := testenv.Postgres(t)
	tm := testenv.MariaDB(t, testenv.WithServerID(2))
	w := cdctest.NewWorkload(t, m.DB(), 5)
	pcfg := cdctest.ProducerConfig(m, k, "src")
	pcfg.Tables.Include = []string{"wl.items", "wl.pairs"}
	prod := cdctest.StartProducer(t, pcfg)

	pgdb := cdctest.OpenDB(t, "pgx", pg.DSN)
	mustExec(t, pgdb, wlItemsPG, wlPairsPG)
	mustExec(t, tm.DB(), "CREATE DATABASE wl", wlItemsMySQL, wlPairsMySQL)
	mydb := cdctest.OpenDB(t, "mysql", tm.DSN("wl"))

	pgCfg := sqlmirror.DefaultConfig()
	pgCfg.Name = "pg-mirror"
	pgCfg.Dialect = sqlmirror.Postgres
	pgCfg.DSN = pg.DSN
	pgCfg.Tables = []sqlmirror.TableConfig{
		{Source: "wl.items"},
		{Source: "wl.pairs", Target: "public.pair_copy", Rename: map[string]string{"v": "value"}},
	}
	myCfg := sqlmirror.DefaultConfig()
	myCfg.Name = "my-mirror"
	myCfg.Dialect = sqlmirror.MySQL
	myCfg.DSN = tm.DSN("wl")

	source := merge(
		func(context.Context) (map[string]map[string]string, error) {
			return cdctest.SourceRows(t, m.DB(), "wl.items", cdctest.ItemsKey, "data"), nil
		},
		func(context.Context) (map[string]map[string]string, error) {
			return cdctest.SourceRows(t, m.DB(), "wl.pairs", cdctest.PairsKey), nil
		})
	pgImage := merge(
		rowsOf(pgdb, `SELECT id::text AS id, name, amount::text AS amount, data, note,
			to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US') AS ts, cnt::text AS cnt FROM items`, cdctest.ItemsKey, "data"),
		rowsOf(pgdb, `SELECT a::text AS a, b, value::text AS v FROM pair_copy`, cdctest.PairsKey))
	myImage := merge(
		rowsOf(mydb, `SELECT id, name, amount, data, note, ts, cnt FROM items`, cdctest.ItemsKey, "data"),
		rowsOf(mydb, `SELECT a, b, v FROM pairs`, cdctest.PairsKey))

	tables := []string{"wl.items", "wl.pairs"}
	steps := func(n int) {
		for i := 0; i < n; i++ {
			w.Step(t)
		}
	}
	pgR := startRunner(t, k, "kanal", pgCfg, tables...)
	myR := startRunner(t, k, "kanal", myCfg, tables...)
	steps(80)
	w.Bulk(t, 300)
	steps(40)
	myR.stop(t, true) // the MariaDB target's mirror dies and stays down
	steps(60)
	pgR.stop(t, true) // the Postgres mirror dies mid-stream
	pgR = startRunner(t, k, "kanal", pgCfg, tables...)
	steps(60)
	prod.CaughtUp(t, m.DB())
	waitEqual(t, "postgres after a kill", source, pgImage)
	myR = startRunner(t, k, "kanal", myCfg, tables...) // resumes after a long stop
	waitEqual(t, "mariadb after a kill and a long stop", source, myImage)

	// Replay from earliest.
	pgR.stop(t, false)
	myR.stop(t, false)
	mustExec(t, mydb, "DELETE FROM items", "DELETE FROM pairs")
	adm := kadm.NewClient(k.Client(t))
	re, err := consumer.TopicPattern("kanal", tables)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []sqlmirror.Config{pgCfg, myCfg} {
		h := newMirror(t, c)
		if _, err := consumer.ResetGroup(ctxT(t), adm, consumer.DefaultGroup(c.Name), re, consumer.ResetTo{Earliest: true}, h); err != nil {
			t.Fatalf("reset %s: %v", c.Name, err)
		}
		got, err := h.LoadOffsets(ctxT(t), consumer.DefaultGroup(c.Name), map[string][]int32{"kanal.wl.items": {0, 1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		for p, off := range got["kanal.wl.items"] {
			if off != 0 {
				t.Fatalf("%s: after a reset to earliest, the stored offset of partition %d is %d", c.Name, p, off)
			}
		}
	}
	pgR = startRunner(t, k, "kanal", pgCfg, tables...)
	myR = startRunner(t, k, "kanal", myCfg, tables...)
	steps(30)
	prod.CaughtUp(t, m.DB())
	waitApplied(t, k, pgR.h, consumer.DefaultGroup(pgCfg.Name), re)
	waitApplied(t, k, myR.h, consumer.DefaultGroup(myCfg.Name), re)
	waitEqual(t, "postgres after a replay from earliest onto a full target", source, pgImage)
	waitEqual(t, "mariadb rebuilt by a replay from earliest", source, myImage)
	pgR.stop(t, false)
	myR.stop(t, false)
}

// waitApplied waits until the offsets h stored for group are past every
// record now committed in the topics matching re: every record was applied.
func waitApplied(t *testing.T, k *testenv.KafkaCluster, h *sqlmirror.Handler, group, re string) {
	t.Helper()
	want := map[string]map[int32]int64{}
	parts := map[string][]int32{}
	for _, r := range cdctest.ReadAll(t, k.Brokers, re, time.Minute) {
		if want[r.Topic] == nil {
			want[r.Topic] = map[int32]int64{}
		}
		if _, ok := want[r.Topic][r.Partition]; !ok {
			parts[r.Topic] = append(parts[r.Topic], r.Partition)
		}
		want[r.Topic][r.Partition] = max(want[r.Topic][r.Partition], r.Offset+1)
	}
	if len(want) == 0 {
		t.Fatalf("no records in %s", re)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, err := h.LoadOffsets(ctxT(t), group, parts)
		if err != nil {
			t.Fatal(err)
		}
		var behind []string
		for tp, ps := range want {
			for p, off := range ps {
				if got[tp][p] < off {
					behind = append(behind, fmt.Sprintf("%s/%d at %d of %d", tp, p, got[tp][p], off))
				}
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not applied every record after 2 minutes: %v", group, behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var _ = regexp.MustCompile
