package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/consumer/internal/pgtest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

const wlTopics = `^kanal\.wl\.[^.]+$`

// e2e is a source database, the producer streaming it into Kafka and a Postgres
// for the sinks.
type e2e struct {
	m    *testenv.MariaDBServer
	k    *testenv.KafkaCluster
	pg   *testenv.PostgresServer
	pcfg producer.Config
	w    *cdctest.Workload
}

func newE2E(t *testing.T, seed uint64) *e2e {
	m := testenv.MariaDB(t)
	pg := testenv.Postgres(t)
	k := kafka(t)
	cfg := producer.DefaultConfig()
	cfg.Source.Name = "e2e"
	cfg.Source.Addr = m.Addr()
	cfg.Source.User = m.User
	cfg.Source.Password = m.Password
	cfg.Source.Start = "earliest"
	cfg.Source.HeartbeatInterval = 300 * time.Millisecond
	cfg.Kafka.Brokers = k.Brokers
	cfg.Kafka.Partitions = 4
	cfg.Kafka.CleanupPolicy = "delete" // the tests check every record was applied
	cfg.Kafka.FlushRecords = 200
	cfg.Tables.Include = []string{"wl.*"}
	e := &e2e{m: m, k: k, pg: pg, pcfg: cfg}
	e.w = cdctest.NewWorkload(t, m.DB(), seed)
	p, err := producer.New(cfg, testLogger(t).With("producer", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("producer: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("producer did not stop within 30s")
		}
	})
	return e
}

// caughtUp waits until the producer has committed every change written so far.
func (e *e2e) caughtUp(t *testing.T) {
	t.Helper()
	var file string
	var pos uint32
	rows, err := e.m.DB().Query("SHOW MASTER STATUS")
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Next()
	dest := []any{&file, &pos}
	for len(dest) < len(cols) {
		dest = append(dest, new([]byte))
	}
	if err := rows.Scan(dest...); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	waitFor(t, 90*time.Second, "the producer to catch up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p, err := producer.ReadPosition(ctx, &e.pcfg.Kafka.Config, e.pcfg.Source.Name)
		if err != nil {
			t.Fatalf("read position: %v", err)
		}
		return p != nil && p.RowsDone == 0 && (p.File > file || p.File == file && p.Pos >= pos)
	})
}

var wlTables = []struct {
	name string
	key  func(map[string]string) string
	bin  []string
}{
	{"wl.items", cdctest.ItemsKey, []string{"data"}},
	{"wl.pairs", cdctest.PairsKey, nil},
	{"wl.nopk", cdctest.NopkKey, nil},
}

type stateSink interface {
	State(ctx context.Context) (map[string]map[string]string, error)
}

// diffSource compares a sink with the source tables, "" when equal.
func (e *e2e) diffSource(t *testing.T, s stateSink) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{}
	for _, tb := range wlTables {
		for k, v := range cdctest.SourceRows(t, e.m.DB(), tb.name, tb.key, tb.bin...) {
			want[k] = v
		}
	}
	if d := testdiff.Rows(want, got); d != "" {
		return fmt.Sprintf("sink has %d rows, source %d:\n%s", len(got), len(want), d)
	}
	return ""
}

// waitEqual waits until the sink equals the source tables.
func (e *e2e) waitEqual(t *testing.T, what string, s stateSink) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		d := e.diffSource(t, s)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: sink still differs from the source after 90s: %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// changeCounts counts the change records (not tombstones) per table in the topics.
func changeCounts(recs []cdctest.Record) map[string]int64 {
	out := map[string]int64{}
	for _, r := range recs {
		if r.Change != nil {
			out[r.Change.Table()]++
		}
	}
	return out
}

// checkExactlyOnce compares the transactional sink's per-table counts of applied
// changes with the changes in the topics: equal means none applied twice or lost.
func checkExactlyOnce(t *testing.T, s *pgtest.Transactional, recs []cdctest.Record) {
	t.Helper()
	got, err := s.Applied(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := changeCounts(recs)
	for tb, n := range want {
		if got[tb] != n {
			t.Errorf("transactional sink applied %d changes of %s, the topics hold %d", got[tb], tb, n)
		}
	}
}

// orderLog is the global, time-ordered log of applied batches per partition.
type orderLog struct {
	mu     sync.Mutex
	events map[string][][]int64 // topic/partition → batches of offsets in apply order
	last   map[string]string    // topic/partition → runner that applied last
}

func newOrderLog() *orderLog {
	return &orderLog{events: map[string][][]int64{}, last: map[string]string{}}
}

func (o *orderLog) hook(runner string) func(b consumer.Batch) {
	return func(b consumer.Batch) {
		offs := make([]int64, 0, len(b.Records))
		for i, r := range b.Records {
			if i == 0 || r.Offset != b.Records[i-1].Offset {
				offs = append(offs, r.Offset)
			}
		}
		k := tpKey(b.Topic, b.Partition)
		o.mu.Lock()
		o.events[k] = append(o.events[k], offs)
		o.last[k] = runner
		o.mu.Unlock()
	}
}

func (o *orderLog) lastRunner(k string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[k]
}

func (o *orderLog) partitionsOf(runner string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for k, r := range o.last {
		if r == runner {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// check proves per partition: every batch is a run of consecutive records in
// offset order; no batch starts beyond the highest record applied so far plus
// one (replays after a crash go back, nothing is ever skipped); and in the end
// every record of the partition was applied.
func (o *orderLog) check(t *testing.T, recs []cdctest.Record) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	idx := map[string]map[int64]int{}
	count := map[string]int{}
	for _, r := range recs {
		k := tpKey(r.Topic, r.Partition)
		if idx[k] == nil {
			idx[k] = map[int64]int{}
		}
		idx[k][r.Offset] = count[k]
		count[k]++
	}
	replays := 0
	for k, n := range count {
		top := -1
		for bi, batch := range o.events[k] {
			prev := -2
			for _, off := range batch {
				i, ok := idx[k][off]
				if !ok {
					t.Fatalf("%s@%d applied but not a record of the topic", k, off)
				}
				if prev != -2 && i != prev+1 {
					t.Fatalf("%s batch %d: record #%d after #%d: a batch must be consecutive records in offset order", k, bi, i, prev)
				}
				if i > top+1 {
					t.Fatalf("%s batch %d: record #%d applied while only #0..#%d were: a record was skipped", k, bi, i, top)
				}
				if i <= top {
					replays++
				}
				top = max(top, i)
				prev = i
			}
		}
		if top != n-1 {
			t.Errorf("%s: records up to #%d applied of %d", k, top, n)
		}
	}
	t.Logf("order: %d partitions, every batch consecutive, none skipped; %d record applications were replays", len(count), replays)
}

func e2eConfig(k *testenv.KafkaCluster) consumer.Config {
	cfg := testConfig(k)
	cfg.BatchMaxRecords = 100
	cfg.Concurrency = 4
	return cfg
}

// sinks opens a Versioned and a Transactional Postgres sink for one runner (each
// runner, like each process, has its own connections).
func openSinks(t *testing.T, pg *testenv.PostgresServer) (*pgtest.Versioned, *pgtest.Transactional) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := pgtest.NewVersioned(ctx, pg.DSN, "pgv", "sink_v")
	if err != nil {
		t.Fatal(err)
	}
	x, err := pgtest.NewTransactional(ctx, pg.DSN, "pgx", "sink_x")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(); x.Close() })
	return v, x
}

func register(t *testing.T, v *pgtest.Versioned, x *pgtest.Transactional) *consumer.Registry {
	t.Helper()
	reg := consumer.NewRegistry()
	if err := reg.Register(v, consumer.Tables("wl.*")); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(x, consumer.Tables("wl.*")); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestScaleOutKillAndRejoin runs three consumer runners (each its own Kafka
// clients and Postgres connections) that join and leave while the producer
// streams a random workload; one of them is killed (network cut, nothing
// committed, group not left). Both sinks end equal to the source, the
// transactional one applied each change exactly once, and per partition the
// records were applied in offset order without skipping any.
func TestScaleOutKillAndRejoin(t *testing.T) {
	e := newE2E(t, 3)
	cfg := e2eConfig(e.k)
	logV, logX := newOrderLog(), newOrderLog() // logX only tracks ownership
	var checkV *pgtest.Versioned
	var checkX *pgtest.Transactional
	start := func(id string) *running {
		v, x := openSinks(t, e.pg)
		v.SetHooks(pgtest.Hooks{Applied: logV.hook(id)})
		x.SetHooks(pgtest.Hooks{Applied: logX.hook(id)})
		if checkV == nil {
			checkV, checkX = v, x
		}
		return startRunner(t, id, cfg, register(t, v, x))
	}
	began := time.Now()
	steps := func(what string, min int, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < min || !cond(); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			e.w.Step(t)
		}
	}
	owns := func(id string) func() bool {
		return func() bool { return len(logV.partitionsOf(id)) > 0 && len(logX.partitionsOf(id)) > 0 }
	}
	a := start("a")
	steps("runner a to apply changes", 50, owns("a"))
	b := start("b")
	steps("runner b to take partitions", 30, owns("b"))
	c := start("c")
	e.w.Bulk(t, 1000)
	steps("runner c to take partitions", 30, owns("c"))

	// Kill b: its partitions must move to a or c after the session timeout.
	victimV, victimX := logV.partitionsOf("b"), logX.partitionsOf("b")
	b.kill(t)
	killed := time.Now()
	steps("b's partitions to be taken over", 20, func() bool {
		for _, k := range victimV {
			if r := logV.lastRunner(k); r == "b" {
				return false
			}
		}
		for _, k := range victimX {
			if r := logX.lastRunner(k); r == "b" {
				return false
			}
		}
		return true
	})
	t.Logf("b killed owning %d+%d partitions; taken over after %v", len(victimV), len(victimX), time.Since(killed).Round(time.Millisecond))

	a.stop(t) // leaves gracefully: its partitions move to c, then d
	d := start("d")
	steps("runner d to take partitions", 30, owns("d"))
	e.caughtUp(t)
	e.waitEqual(t, "versioned sink", checkV)
	e.waitEqual(t, "transactional sink", checkX)
	recs := cdctest.ReadAll(t, e.k.Brokers, wlTopics, time.Minute)
	waitFor(t, 30*time.Second, "the transactional sink to count every change", func() bool {
		got, err := checkX.Applied(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, v := range got {
			n += v
		}
		return n >= int64(len(recs))-int64(tombstones(recs))
	})
	c.stop(t)
	d.stop(t)
	checkExactlyOnce(t, checkX, recs)
	logV.check(t, recs)
	checkTxLog(t, checkX, recs)
	took := time.Since(began)
	t.Logf("%d records (%d changes from %d statements) applied by 2 handlers across 4 runners in %v (%.0f records/s per handler)",
		len(recs), len(recs)-tombstones(recs), e.w.Statements, took.Round(time.Millisecond), float64(len(recs))/took.Seconds())
}

// checkTxLog proves, from the log the transactional sink commits with its data,
// that per partition the transactions applied consecutive runs of records that
// tile the partition: in order, none skipped, none twice.
func checkTxLog(t *testing.T, x *pgtest.Transactional, recs []cdctest.Record) {
	t.Helper()
	log, err := x.Log(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	offs := map[string][]int64{}
	for _, r := range recs {
		k := tpKey(r.Topic, r.Partition)
		offs[k] = append(offs[k], r.Offset)
	}
	for k, all := range offs {
		i := 0
		for _, rg := range log[k] {
			if i >= len(all) || all[i] != rg[0] {
				t.Fatalf("%s: a transaction applied %d..%d but the next record to apply was #%d", k, rg[0], rg[1], i)
			}
			for i < len(all) && all[i] <= rg[1] {
				i++
			}
		}
		if i != len(all) {
			t.Errorf("%s: %d of %d records applied", k, i, len(all))
		}
	}
	t.Logf("transactional sink: %d partitions applied in order, each record exactly once", len(offs))
}

func tombstones(recs []cdctest.Record) int {
	n := 0
	for _, r := range recs {
		if r.Tombstone {
			n++
		}
	}
	return n
}

// TestReplayAfterReset rebuilds the sinks from Kafka: a reset to earliest onto
// emptied sinks, and a reset to a point in time onto sinks restored from a
// backup taken at that time. Both end equal to the source; the transactional
// sink's stored offsets are reset with the group's, so it counts each change
// exactly once again. A reset is refused while the group has members.
func TestReplayAfterReset(t *testing.T) {
	e := newE2E(t, 11)
	cfg := e2eConfig(e.k)
	v, x := openSinks(t, e.pg)
	ctx := context.Background()
	adm := kadm.NewClient(e.k.Client(t))
	re, err := consumer.TopicPattern("kanal", []string{"wl.*"})
	if err != nil {
		t.Fatal(err)
	}

	r1 := startRunner(t, "r1", cfg, register(t, v, x))
	for i := 0; i < 120; i++ {
		e.w.Step(t)
	}
	e.w.Bulk(t, 500)
	e.caughtUp(t)
	e.waitEqual(t, "phase 1", v)
	e.waitEqual(t, "phase 1 (transactional)", x)
	// A backup of both sinks at time T, when they had applied everything so far.
	waitFor(t, 30*time.Second, "the transactional sink to count phase 1", func() bool {
		return appliedTotal(t, x) == int64(len(changesOf(cdctest.ReadAll(t, e.k.Brokers, wlTopics, time.Minute))))
	})
	if err := v.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := x.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	for i := 0; i < 120; i++ {
		e.w.Step(t)
	}
	e.caughtUp(t)
	e.waitEqual(t, "phase 2", v)

	if _, err := consumer.ResetGroup(ctx, adm, "kanal-pgv", re, consumer.ResetTo{Earliest: true}, nil); !errors.Is(err, consumer.ErrGroupActive) {
		t.Fatalf("reset while the group runs: %v, want ErrGroupActive", err)
	}
	r1.stop(t)
	recs := cdctest.ReadAll(t, e.k.Brokers, wlTopics, time.Minute)

	for _, tc := range []struct {
		name    string
		to      consumer.ResetTo
		prepare func() error
	}{
		{"earliest", consumer.ResetTo{Earliest: true}, func() error {
			if err := v.Truncate(ctx); err != nil {
				return err
			}
			return x.TruncateData(ctx) // its stored offsets stay: the reset must move them
		}},
		{"time", consumer.ResetTo{Time: at}, func() error {
			if err := v.Restore(ctx); err != nil {
				return err
			}
			return x.Restore(ctx)
		}},
	} {
		if err := tc.prepare(); err != nil {
			t.Fatal(err)
		}
		if d := e.diffSource(t, v); d == "" {
			t.Fatalf("%s: the sink already equals the source before the replay; the test proves nothing", tc.name)
		}
		for _, g := range []struct {
			group    string
			resetter consumer.OffsetResetter
		}{{"kanal-pgv", nil}, {"kanal-pgx", x}} {
			plan, err := consumer.ResetGroup(ctx, adm, g.group, re, tc.to, g.resetter)
			if err != nil {
				t.Fatalf("reset %s to %s: %v", g.group, tc.name, err)
			}
			if len(plan) != 3 {
				t.Fatalf("reset %s: plan covers %d topics, want 3: %v", g.group, len(plan), plan)
			}
		}
		began := time.Now()
		r := startRunner(t, "replay-"+tc.name, cfg, register(t, v, x))
		e.waitEqual(t, "replay from "+tc.name, v)
		e.waitEqual(t, "replay from "+tc.name+" (transactional)", x)
		waitFor(t, 30*time.Second, "the transactional sink to count every change", func() bool {
			return appliedTotal(t, x) >= int64(len(changesOf(recs)))
		})
		took := time.Since(began)
		r.stop(t)
		checkExactlyOnce(t, x, recs)
		t.Logf("replay from %s: both sinks equal the source after %v", tc.name, took.Round(time.Millisecond))
	}
	offs, err := consumer.DescribeOffsets(ctx, adm, "kanal-pgv", re)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range offs.Partitions {
		if p.Lag != 0 || p.Committed != p.End {
			t.Errorf("after the replay %s/%d: committed %d end %d lag %d, want lag 0", p.Topic, p.Partition, p.Committed, p.End, p.Lag)
		}
	}
	if len(offs.Partitions) != 12 {
		t.Errorf("DescribeOffsets: %d partitions, want 12", len(offs.Partitions))
	}
}

func changesOf(recs []cdctest.Record) []*schemas.Change {
	var out []*schemas.Change
	for _, r := range recs {
		if r.Change != nil {
			out = append(out, r.Change)
		}
	}
	return out
}

func appliedTotal(t *testing.T, x *pgtest.Transactional) int64 {
	t.Helper()
	got, err := x.Applied(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range got {
		n += v
	}
	return n
}

var _ = strings.Cut
