package aggregators

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// End-to-end: a real MariaDB source, the producer, kfake, the consumer Runner
// and real Postgres and MariaDB targets. Every test ends with each summary equal
// to the GROUP BY query on the source, compared as text (DECIMAL exactly).

// e2eSummaries are the summaries under test and the source query each must
// equal.
var e2eSummaries = []struct {
	cfg   SummaryConfig
	query string
}{
	{SummaryConfig{Table: "by_user", Source: "shop.earnings", Where: "status = 'settled'",
		GroupBy: []string{"user_id"}, Measures: []string{"count", "sum(amount) AS total"}},
		"SELECT user_id, COUNT(*), SUM(amount) FROM shop.earnings WHERE status = 'settled' GROUP BY user_id"},
	{SummaryConfig{Table: "by_user_kind_day", Source: "shop.earnings", Where: "status IN ('settled', 'pending') AND amount > 0",
		GroupBy: []string{"user_id", "kind", "day(created_at) AS day"}, Measures: []string{"count AS n", "sum(amount)"}},
		"SELECT user_id, kind, DATE(created_at), COUNT(*), SUM(amount) FROM shop.earnings WHERE status IN ('settled', 'pending') AND amount > 0 GROUP BY user_id, kind, DATE(created_at)"},
}

type e2e struct {
	t       *testing.T
	m       *testenv.MariaDBServer
	k       *testenv.KafkaCluster
	prod    *cdctest.Producer
	targets []*targetEnv
	db      *sql.DB // source, for the workload
}

func newE2E(t *testing.T) *e2e {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	e := &e2e{t: t, m: m, k: k, targets: []*targetEnv{postgresTarget(t), mariadbTarget(t, m)}}
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, `CREATE TABLE shop.earnings (
		id BIGINT PRIMARY KEY AUTO_INCREMENT,
		user_id BIGINT NULL,
		kind ENUM('order', 'referral', 'bonus') NOT NULL,
		amount DECIMAL(12,2) NOT NULL,
		status VARCHAR(16) NOT NULL,
		created_at DATETIME(6) NOT NULL)`)
	cfg := cdctest.ProducerConfig(m, k, "shop")
	cfg.Tables.Include = []string{"shop.*"}
	cfg.Kafka.CleanupPolicy = "compact"
	e.prod = cdctest.StartProducer(t, cfg)
	// The workload's pool interpolates parameters: one round trip a statement.
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	return e
}

// aggConfig is the aggregator of target te, named name.
func (e *e2e) aggConfig(te *targetEnv, name string) Config {
	cfg := te.config(name)
	for _, s := range e2eSummaries {
		sc := s.cfg
		sc.Table = name + "_" + sc.Table
		cfg.Summaries = append(cfg.Summaries, sc)
	}
	return cfg
}

func consumerConfig(brokers []string) consumer.Config {
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = brokers
	cfg.CommitInterval = 200 * time.Millisecond
	cfg.SessionTimeout = 2 * time.Second
	cfg.RevokeTimeout = 10 * time.Second
	cfg.MetadataMaxAge = 500 * time.Millisecond
	cfg.BatchMaxRecords = 200
	cfg.QueueMaxRecords = 1000
	cfg.Heartbeats = false
	cfg.Retry = consumer.RetryConfig{MaxAttempts: 5, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	return cfg
}

// member is one consumer process's worth of aggregators, run in this process.
type member struct {
	*cdctest.Runner
	aggs []*Aggregator
}

// startMember runs a Runner with one aggregator per config.
func startMember(t *testing.T, brokers []string, cfgs ...Config) *member {
	t.Helper()
	reg := consumer.NewRegistry()
	mb := &member{}
	for _, c := range cfgs {
		a, err := New(c, cdctest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		if err := a.RegisterWith(reg); err != nil {
			t.Fatal(err)
		}
		mb.aggs = append(mb.aggs, a)
	}
	mb.Runner = cdctest.StartRunner(t, "aggregators", consumerConfig(brokers), reg, cdctest.Logger(t), 90*time.Second)
	return mb
}

// workload drives random ledger changes: multi-row transactions of inserts,
// updates of amount, status, user and kind, primary-key changes and deletes.
type workload struct {
	db   *sql.DB
	rand *rand.Rand
	ids  []int64
	next int64
}

func newWorkload(db *sql.DB, seed uint64) *workload {
	return &workload{db: db, rand: rand.New(rand.NewPCG(seed, seed*31+7)), next: 1}
}

func (w *workload) pick() (int64, int, bool) {
	if len(w.ids) == 0 {
		return 0, 0, false
	}
	i := w.rand.IntN(len(w.ids))
	return w.ids[i], i, true
}

func (w *workload) user() any {
	if w.rand.IntN(25) == 0 {
		return nil
	}
	return int64(1 + w.rand.IntN(20))
}

func (w *workload) amount() string {
	// Mostly positive, some zero or negative (reversals), cents exact.
	return fmt.Sprintf("%d.%02d", w.rand.IntN(300)-20, w.rand.IntN(100))
}

var statuses = []string{"pending", "settled", "settled", "reversed"}
var kinds = []string{"order", "referral", "bonus"}

// txn runs one transaction of 1–8 statements.
func (w *workload) txn(ctx context.Context) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n := 1 + w.rand.IntN(8)
	var added []int64
	removed := map[int64]bool{}
	for i := 0; i < n; i++ {
		id, idx, ok := w.pick()
		op := w.rand.IntN(100)
		if !ok || op < 40 || removed[id] {
			id = w.next
			w.next++
			day := fmt.Sprintf("2024-06-%02d %02d:%02d:%02d.%06d", 1+w.rand.IntN(3), w.rand.IntN(24), w.rand.IntN(60), w.rand.IntN(60), w.rand.IntN(1000000))
			if _, err := tx.ExecContext(ctx, "INSERT INTO shop.earnings (id, user_id, kind, amount, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
				id, w.user(), kinds[w.rand.IntN(3)], w.amount(), statuses[w.rand.IntN(4)], day); err != nil {
				return err
			}
			added = append(added, id)
			continue
		}
		var q string
		var args []any
		switch {
		case op < 55:
			q, args = "UPDATE shop.earnings SET amount = ? WHERE id = ?", []any{w.amount(), id}
		case op < 72:
			q, args = "UPDATE shop.earnings SET status = ? WHERE id = ?", []any{statuses[w.rand.IntN(4)], id}
		case op < 80:
			q, args = "UPDATE shop.earnings SET user_id = ? WHERE id = ?", []any{w.user(), id}
		case op < 85:
			q, args = "UPDATE shop.earnings SET kind = ?, created_at = created_at + INTERVAL 1 DAY WHERE id = ?", []any{kinds[w.rand.IntN(3)], id}
		case op < 90:
			// A primary-key change: a delete of the old key, a create of the new one.
			nid := w.next
			w.next++
			if _, err := tx.ExecContext(ctx, "UPDATE shop.earnings SET id = ? WHERE id = ?", nid, id); err != nil {
				return err
			}
			removed[id] = true
			w.ids[idx] = nid
			continue
		default:
			q, args = "DELETE FROM shop.earnings WHERE id = ?", []any{id}
			removed[id] = true
			w.ids[idx] = w.ids[len(w.ids)-1]
			w.ids = w.ids[:len(w.ids)-1]
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.ids = append(w.ids, added...)
	return nil
}

func (w *workload) run(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := w.txn(context.Background()); err != nil {
			t.Fatalf("workload: %v", err)
		}
	}
}

// runAsync runs n transactions in the background; wait returns when done.
func (w *workload) runAsync(t *testing.T, n int) (wait func()) {
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := w.txn(context.Background()); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	return func() {
		t.Helper()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("workload: %v", err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("workload did not finish within 3 minutes")
		}
	}
}

// lastOffsets returns, per partition of the earnings topic, the offset after its
// last change (what a caught-up consumer has stored).
func (e *e2e) lastOffsets() map[int32]int64 {
	e.t.Helper()
	out := map[int32]int64{}
	for _, r := range cdctest.ReadAll(e.t, e.k.Brokers, `^kanal\.shop\.earnings$`, time.Minute) {
		if r.Offset+1 > out[r.Partition] {
			out[r.Partition] = r.Offset + 1
		}
	}
	return out
}

// storedOffsets reads the offsets an aggregator stored in te.
func storedOffsets(t testing.TB, te *targetEnv, group string) map[int32]int64 {
	t.Helper()
	q := "SELECT kafka_partition, next_offset FROM kanal_offsets WHERE consumer_group = '" + group + "' AND topic = 'kanal.shop.earnings'"
	got := queryText(t, te.db, q, 1)
	out := map[int32]int64{}
	for p, n := range got {
		var pi int32
		var ni int64
		fmt.Sscan(p, &pi)
		fmt.Sscan(n, &ni)
		out[pi] = ni
	}
	return out
}

// converge waits until the producer has committed everything and each named
// aggregator (name → target) has stored offsets past every change, then
// compares every summary with the source.
func (e *e2e) converge(names map[string]*targetEnv) {
	e.t.Helper()
	e.prod.CaughtUp(e.t, e.m.DB())
	want := e.lastOffsets()
	deadline := time.Now().Add(2 * time.Minute)
	for name, te := range names {
		for {
			got := storedOffsets(e.t, te, consumer.DefaultGroup(name))
			done := true
			for p, off := range want {
				if got[p] < off {
					done = false
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("aggregator %s did not apply every change within 2 minutes: stored %v, want %v", name, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		e.compare(name, te)
	}
}

// compare checks every summary of aggregator name against the source.
func (e *e2e) compare(name string, te *targetEnv) {
	e.t.Helper()
	for _, s := range e2eSummaries {
		compiled, err := s.cfg.Compile()
		if err != nil {
			e.t.Fatal(err)
		}
		compiled.Table = name + "_" + compiled.Table
		want := queryText(e.t, e.m.DB(), s.query, len(compiled.GroupBy))
		got := readSummary(e.t, te, &compiled)
		if d := testdiff.Diff(want, got); d != "" {
			e.t.Fatalf("%s differs from the source's GROUP BY (%d groups want, %d got):\n%s", compiled.Table, len(want), len(got), d)
		}
		if len(want) < 5 {
			e.t.Fatalf("%s: only %d groups; the workload is too small to prove anything", compiled.Table, len(want))
		}
		e.t.Logf("%s on %s: %d groups equal the source", compiled.Table, te.name, len(want))
	}
}

// TestRandomWorkload: random multi-row transactions (inserts; updates of amount,
// status, user and kind; primary-key changes; deletes) through the producer and
// Runner into Postgres and MariaDB summaries, which then equal the source's
// GROUP BY exactly.
func TestRandomWorkload(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	w := newWorkload(e.db, 1)
	w.run(t, 100) // before the consumer starts: its first batches are big
	pg, my := e.aggConfig(e.targets[0], "rand_pg"), e.aggConfig(e.targets[1], "rand_my")
	startMember(t, e.k.Brokers, pg, my)
	w.run(t, 400)
	e.converge(map[string]*targetEnv{"rand_pg": e.targets[0], "rand_my": e.targets[1]})
}

// TestConsumerKilled: the consumer process is SIGKILLed repeatedly while it
// applies batches (a test hook keeps every transaction open for a while, so the
// kills land inside them) and the workload goes on; the next process resumes
// from the offsets stored with the summaries.
func TestConsumerKilled(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	w := newWorkload(e.db, 2)
	w.run(t, 50)
	pg, my := e.aggConfig(e.targets[0], "kill_pg"), e.aggConfig(e.targets[1], "kill_my")
	for _, c := range []Config{pg, my} { // the offsets tables, for progress()
		a, err := New(c, cdctest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Setup(context.Background()); err != nil {
			t.Fatal(err)
		}
		a.Close()
	}
	spec, err := json.Marshal(helperSpec{Brokers: e.k.Brokers, Configs: []Config{pg, my}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	progress := func() int64 {
		var n int64
		for _, off := range storedOffsets(t, e.targets[0], "kanal-kill_pg") {
			n += off
		}
		return n
	}
	for i := 0; i < 4; i++ {
		// A backlog for the new process, and more writes while it runs.
		w.run(t, 40)
		wait := w.runAsync(t, 40)
		before := progress()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConsumer$", "-test.count=1")
		cmd.Env = append(os.Environ(), "KANAL_AGG_HELPER="+string(spec))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once it has committed something, at a random moment after.
		deadline := time.Now().Add(time.Minute)
		for progress() == before {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("consumer %d made no progress within a minute", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		t.Logf("consumer %d killed after progress %d → %d", i, before, progress())
		wait()
	}
	startMember(t, e.k.Brokers, pg, my)
	e.converge(map[string]*targetEnv{"kill_pg": e.targets[0], "kill_my": e.targets[1]})
}

type helperSpec struct {
	Brokers []string
	Configs []Config
}

// TestHelperConsumer is the consumer process of TestConsumerKilled; it runs
// only when started by it, until it is killed.
func TestHelperConsumer(t *testing.T) {
	raw := os.Getenv("KANAL_AGG_HELPER")
	if raw == "" {
		t.Skip("helper process for TestConsumerKilled")
	}
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	reg := consumer.NewRegistry()
	for _, c := range spec.Configs {
		a, err := New(c, cdctest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		// Keep every batch transaction open a little: kills land inside them.
		a.testHookInTxn = func() { time.Sleep(5 * time.Millisecond) }
		if err := a.RegisterWith(reg); err != nil {
			t.Fatal(err)
		}
	}
	r, err := consumer.NewRunner(consumerConfig(spec.Brokers), reg, cdctest.Logger(t),
		consumer.WithKafkaOptions(kgo.HeartbeatInterval(300*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRebalance: two members of each group; members join and leave (gracefully)
// while the workload runs, moving partitions between them mid-stream.
func TestRebalance(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	w := newWorkload(e.db, 5)
	pg, my := e.aggConfig(e.targets[0], "reb_pg"), e.aggConfig(e.targets[1], "reb_my")
	a := startMember(t, e.k.Brokers, pg, my)
	w.run(t, 50)
	b := startMember(t, e.k.Brokers, pg, my) // partitions move to b
	w.run(t, 50)
	a.Stop(t) // b takes everything
	w.run(t, 50)
	a = startMember(t, e.k.Brokers, pg, my) // and gives some back
	w.run(t, 50)
	b.Stop(t)
	w.run(t, 30)
	e.converge(map[string]*targetEnv{"reb_pg": e.targets[0], "reb_my": e.targets[1]})
	_ = a
}

// TestOffsetsResetLive: `kanal offsets reset --to earliest` (ResetOffsets with
// the partitions' start offsets) while producer, workload and consumer run; the
// reset takes effect at the next assignment (here a restart of the consumer),
// which replays every change: the replay is a no-op and the summaries still
// equal the source. Then a new aggregator builds the summaries from scratch out
// of the compacted topic.
func TestOffsetsResetLive(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	w := newWorkload(e.db, 7)
	pg, my := e.aggConfig(e.targets[0], "reset_pg"), e.aggConfig(e.targets[1], "reset_my")
	mb := startMember(t, e.k.Brokers, pg, my)
	w.run(t, 150)
	wait := w.runAsync(t, 150)

	// What `kanal offsets reset --to earliest` does for a sink-stored group.
	adm := kadm.NewClient(e.k.Client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, "kanal.shop.earnings")
	if err != nil {
		t.Fatal(err)
	}
	earliest := map[string]map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if earliest[o.Topic] == nil {
			earliest[o.Topic] = map[int32]int64{}
		}
		earliest[o.Topic][o.Partition] = o.Offset
	})
	records := map[*Aggregator]int64{}
	for _, a := range mb.aggs {
		if err := a.ResetOffsets(ctx, consumer.DefaultGroup(a.Name()), earliest); err != nil {
			t.Fatal(err)
		}
		records[a] = a.Stats().Records.Load()
	}
	mb.Stop(t)
	mb2 := startMember(t, e.k.Brokers, pg, my)
	wait()
	e.converge(map[string]*targetEnv{"reset_pg": e.targets[0], "reset_my": e.targets[1]})
	for i, a := range mb2.aggs {
		// The new member re-read what the old one had applied, and found it
		// already applied. (Not "at least as many records as the old one read":
		// compaction may drop superseded changes before the replay reaches them.
		// Without the reset the new member starts after the stored offsets and
		// finds nothing stale.)
		if got, old := a.Stats().Records.Load(), records[mb.aggs[i]]; a.Stats().Stale.Load() == 0 {
			t.Errorf("%s: after the reset the new member read %d records (%d stale), the old one %d: no replay happened",
				a.Name(), got, a.Stats().Stale.Load(), old)
		}
	}

	// From scratch, out of the compacted topic: wait until compaction has
	// visibly dropped superseded changes, then build new summaries.
	deadline := time.Now().Add(time.Minute)
	for {
		recs := cdctest.ReadAll(t, e.k.Brokers, `^kanal\.shop\.earnings$`, time.Minute)
		written := e.prod.P.Stats().Changes.Load()
		changes := 0
		for _, r := range recs {
			if r.Change != nil {
				changes++
			}
		}
		if uint64(changes) < written {
			t.Logf("compacted: %d of %d changes left", changes, written)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic not compacted within a minute (%d changes of %d)", changes, written)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fresh := e.aggConfig(e.targets[0], "fresh_pg")
	startMember(t, e.k.Brokers, fresh)
	e.converge(map[string]*targetEnv{"fresh_pg": e.targets[0]})
}
