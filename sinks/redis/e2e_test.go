package redissink_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// pipeline is one end-to-end setup: MariaDB → producer → kfake → Runner(s) → Redis.
type pipeline struct {
	t    *testing.T
	m    *testenv.MariaDBServer
	k    *testenv.KafkaCluster
	pcfg producer.Config
	w    *cdctest.Workload
	sink redissink.Config
	rd   *redissink.Reader
}

// e2eSink is the sink configuration every end-to-end test uses, over the given
// instances: wl.items as hashes with a secondary set per name, wl.pairs as JSON,
// wl.nopk as hashes; items and pairs on ring (one or more instances), nopk on
// nopkInst.
func e2eSink(instances map[string]redissink.InstanceConfig, ring []string, nopkInst string) redissink.Config {
	cfg := redissink.DefaultConfig()
	cfg.Instances = instances
	cfg.KeyPrefix = "kc:"
	cfg.Tables = []redissink.TableConfig{
		{Match: "wl.items", Instances: ring, Sets: []redissink.SetConfig{{Key: "s:{name}"}}},
		{Match: "wl.pairs", Instances: ring, Layout: redissink.LayoutJSON},
		{Match: "wl.nopk", Instances: []string{nopkInst}},
	}
	return cfg
}

func newPipeline(t *testing.T, seed uint64, cleanup string, sink redissink.Config) *pipeline {
	t.Helper()
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	pcfg := producer.DefaultConfig()
	pcfg.Source.Name = "redis-e2e"
	pcfg.Source.Addr = m.Addr()
	pcfg.Source.User = m.User
	pcfg.Source.Password = m.Password
	pcfg.Source.Start = "earliest"
	pcfg.Source.HeartbeatInterval = 300 * time.Millisecond
	pcfg.Kafka.Brokers = k.Brokers
	pcfg.Kafka.Partitions = 3
	pcfg.Kafka.CleanupPolicy = cleanup
	pcfg.Kafka.FlushRecords = 200
	pcfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), seed)
	rd, err := redissink.NewReader(sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	p := &pipeline{t: t, m: m, k: k, pcfg: pcfg, w: w, sink: sink, rd: rd}
	p.startProducer()
	return p
}

func (p *pipeline) startProducer() {
	t := p.t
	pr, err := producer.New(p.pcfg, cdctest.Logger(t).With("role", "producer"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("producer did not stop within 30s")
		}
	})
}

// runner is a consumer Runner with the Redis handler, started by a test.
type runner struct {
	*cdctest.Runner
	h     *redissink.Handler
	group string
	dead  atomic.Bool // set by kill: the handler stops writing at once

	// budget, when positive, is the number of batches applied before the runner
	// holds: Handle then blocks (after closing held) until resume is closed.
	budget  atomic.Int64
	held    chan struct{}
	holdOne sync.Once
	resume  chan struct{}
	// failures counts failed Handle calls (retried by the Runner).
	failures atomic.Int64
}

func (p *pipeline) startRunner(group string) *runner {
	return p.startRunnerHeld(group, 0)
}

// startRunnerHeld starts a runner that holds after budget batches (0: never).
func (p *pipeline) startRunnerHeld(group string, budget int64) *runner {
	t := p.t
	t.Helper()
	h := newHandler(t, p.sink)
	rr := &runner{h: h, group: group, held: make(chan struct{}), resume: make(chan struct{})}
	if budget <= 0 {
		close(rr.resume)
	}
	rr.budget.Store(budget)
	// gate makes a killed consumer stop applying at once, as a dead process would,
	// and holds a runner mid-stream; it only wraps Handle, the handler under test
	// is unchanged.
	gate := consumer.Wrap(h, func(ctx context.Context, b consumer.Batch) error {
		if rr.budget.Add(-1) < 0 {
			rr.holdOne.Do(func() { close(rr.held) })
			select {
			case <-rr.resume:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if rr.dead.Load() {
			return errors.New("killed")
		}
		err := h.Handle(ctx, b)
		if err != nil && ctx.Err() == nil && rr.failures.Add(1) <= 3 {
			// Retried by the Runner; logged so a slow run can be explained.
			t.Logf("runner %s: batch of %d on %s/%d failed (will be retried): %v", group, len(b.Records), b.Topic, b.Partition, err)
		}
		return err
	})
	reg := consumer.NewRegistry()
	if err := reg.Register(gate, consumer.Tables(h.TablePatterns()...), consumer.Group(group)); err != nil {
		t.Fatal(err)
	}
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = p.k.Brokers
	cfg.CommitInterval = 200 * time.Millisecond
	// Generous: on a loaded 2-core machine a tighter session times members out and
	// the rebalances redeliver batches (harmless, but slow).
	cfg.SessionTimeout = 6 * time.Second
	cfg.RevokeTimeout = 5 * time.Second
	cfg.MetadataMaxAge = 300 * time.Millisecond
	cfg.BatchMaxRecords = 200
	cfg.QueueMaxRecords = 2000
	cfg.Heartbeats = false
	cfg.Retry = consumer.RetryConfig{MaxAttempts: 20, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	rr.Runner = cdctest.StartRunner(t, group, cfg, reg, cdctest.Logger(t).With("group", group), 60*time.Second)
	return rr
}

// stop ends the runner; with kill, abruptly: the handler stops applying and the
// network is cut before the context is cancelled, so nothing more is committed and
// the group is not left (its partitions move after the session timeout).
func (rr *runner) stop(t *testing.T, kill bool) {
	t.Helper()
	if kill {
		rr.dead.Store(true)
		rr.Kill(t)
		return
	}
	rr.Stop(t)
}

// steps runs n random source transactions.
func (p *pipeline) steps(n int) {
	for i := 0; i < n; i++ {
		p.w.Step(p.t)
	}
}

// waitApplied waits until the producer has committed everything the source wrote so
// far and every given group has committed (so applied) every record of the wl
// topics: consumer lag 0.
func (p *pipeline) waitApplied(groups ...string) {
	t := p.t
	t.Helper()
	file, pos := cdctest.MasterPos(t, p.m.DB())
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ps, err := producer.ReadPosition(ctx, &p.pcfg.Kafka.Config, p.pcfg.Source.Name)
		cancel()
		if err != nil {
			t.Fatalf("read position: %v", err)
		}
		if ps != nil && ps.RowsDone == 0 && (ps.File > file || ps.File == file && ps.Pos >= pos) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("producer did not reach %s:%d within 90s; last committed %v", file, pos, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	adm := kadm.NewClient(p.k.Client(t))
	re := regexp.MustCompile(`^kanal\.wl\.[^.]+$`)
	var lag string
	for {
		lag = p.lag(adm, re, groups)
		if lag == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers not caught up within 90s: %s", lag)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lag describes the partitions a group has not fully committed, or "".
func (p *pipeline) lag(adm *kadm.Client, re *regexp.Regexp, groups []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, n := range topics.Names() {
		if re.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no topics yet"
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, g := range groups {
		committed, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return err.Error()
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset == 0 {
				return
			}
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || c.At < o.Offset {
				at := int64(-1)
				if ok {
					at = c.At
				}
				out = append(out, fmt.Sprintf("%s %s/%d at %d of %d", g, o.Topic, o.Partition, at, o.Offset))
			}
		})
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// binaryCols are the wl columns holding bytes.
var binaryCols = map[string]map[string]bool{"wl.items": {"data": true}}

// image reads every row of table from Redis, rendered like cdctest.SourceRows, and
// checks that each key is on the instance the ring (or route) assigns it to.
func (p *pipeline) image(table string) map[string]map[string]string {
	t := p.t
	t.Helper()
	ctx := ctxT(t)
	clients, err := p.rd.Instances(table)
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := p.rd.KeyPrefix(table)
	out := map[string]map[string]string{}
	for name, cl := range clients {
		iter := cl.Scan(ctx, 0, prefix+table+":*", 500).Iterator()
		for iter.Next(ctx) {
			recKey := strings.TrimPrefix(iter.Val(), prefix)
			_, owner, err := p.rd.Locate(recKey)
			if err != nil {
				t.Fatal(err)
			}
			if owner != cl {
				t.Errorf("%s is on instance %s, but the ring assigns it elsewhere", iter.Val(), name)
			}
			row, ok, err := p.rd.Get(ctx, recKey)
			if err != nil || !ok {
				t.Fatalf("read %s: %v %v", recKey, ok, err)
			}
			r := map[string]string{}
			for c, v := range row.Values {
				if binaryCols[table][c] {
					v = fmt.Sprintf("0x%x", []byte(v))
				}
				r[c] = v
			}
			for c := range row.Null {
				r[c] = "NULL"
			}
			out[recKey] = r
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// check compares every workload table in Redis with the source: every key equals
// its source row, no key exists for a deleted row, and the secondary sets of
// wl.items hold exactly the ids of the rows with that name.
func (p *pipeline) check() int {
	t := p.t
	t.Helper()
	db := p.m.DB()
	total := 0
	for _, tc := range []struct {
		table string
		key   func(map[string]string) string
		bin   []string
	}{
		{"wl.items", cdctest.ItemsKey, []string{"data"}},
		{"wl.pairs", cdctest.PairsKey, nil},
		{"wl.nopk", cdctest.NopkKey, nil},
	} {
		want := cdctest.SourceRows(t, db, tc.table, tc.key, tc.bin...)
		got := p.image(tc.table)
		if d := testdiff.Rows(want, got); d != "" {
			t.Errorf("%s in Redis differs from the source (%d keys vs %d rows):\n%s", tc.table, len(got), len(want), d)
		}
		total += len(want)
	}
	// Secondary sets: "s:<name>" holds the ids of the items named so.
	want := map[string][]string{}
	for _, r := range cdctest.SourceRows(t, db, "wl.items", cdctest.ItemsKey, "data") {
		if r["name"] != "NULL" {
			want["s:"+r["name"]] = append(want["s:"+r["name"]], r["id"])
		}
	}
	got := map[string][]string{}
	ctx := ctxT(t)
	clients, _ := p.rd.Instances("wl.items")
	for _, cl := range clients {
		iter := cl.Scan(ctx, 0, "s:*", 500).Iterator()
		for iter.Next(ctx) {
			got[iter.Val()] = nil
		}
	}
	for k := range got {
		ms, err := p.rd.SetMembers(ctx, "wl.items", k)
		if err != nil {
			t.Fatal(err)
		}
		got[k] = ms
	}
	for _, m := range []map[string][]string{want, got} {
		for _, v := range m {
			sort.Strings(v)
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Errorf("secondary sets differ from the source:\nwant %q\ngot  %q", want, got)
	}
	return total
}

// keyCount is the number of keys on every instance (rows, sets, tombstones).
func keyCount(t *testing.T, clients ...*redis.Client) int64 {
	var n int64
	for _, c := range clients {
		n += c.DBSize(ctxT(t)).Val()
	}
	return n
}

// TestEndToEndRandomWorkload: a random workload (inserts, updates, deletes,
// primary-key changes, NULLs, a composite key needing escapes, a table without a
// primary key, a big transaction) flows MariaDB → producer → Kafka → Runner → Redis
// while it runs; once every group's lag is 0, every Redis key equals its source row,
// no key exists for a deleted row and the secondary sets are exact.
func TestEndToEndRandomWorkload(t *testing.T) {
	srv := startRedis(t)
	p := newPipeline(t, 42, "delete", e2eSink(map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}, []string{"main"}, "main"))
	rr := p.startRunner("kanal-redis")
	began := time.Now()
	p.steps(80)
	p.w.Bulk(t, 1500)
	p.steps(80)
	p.waitApplied(rr.group)
	took := time.Since(began)
	rows := p.check()
	s := rr.h.Stats()
	t.Logf("%d statements; %d source rows; handler %+v; %.0f changes/s applied end to end (workload included)",
		p.w.Statements, rows, s, float64(s.Upserts+s.Deletes)/took.Seconds())
}

// TestEndToEndConsumerKilled: the consumer is killed mid-stream (no commit, group
// not left) while the workload keeps writing; a new consumer in the same group
// resumes from the last committed offsets, replays what the dead one applied but
// had not committed (below the partition watermarks: skipped) and Redis equals the
// source.
func TestEndToEndConsumerKilled(t *testing.T) {
	srv := startRedis(t)
	p := newPipeline(t, 7, "delete", e2eSink(map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}, []string{"main"}, "main"))
	first := p.startRunner("kanal-redis")
	p.steps(60)
	p.w.Bulk(t, 2000)
	// Kill while the bulk transaction is being applied.
	deadline := time.Now().Add(60 * time.Second)
	for first.h.Stats().Upserts < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("the first consumer applied only %+v in 60s", first.h.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	first.stop(t, true)
	killedAt := first.h.Stats()
	p.steps(60)
	second := p.startRunner("kanal-redis")
	p.steps(40)
	p.waitApplied(second.group)
	p.check()
	t.Logf("killed after %+v; the restarted consumer: %+v", killedAt, second.h.Stats())
}

// TestEndToEndReplayWhileWriting: a second group replays every topic from earliest
// (topics keep the full history here, so the replay really carries old versions of
// the rows) into the same Redis while the first group keeps applying new changes and
// the producer keeps writing. Held mid-replay, Redis still equals the source (the
// replay shares the handler's partition watermarks, so every old change it carries
// is skipped as applied); at the end the two groups have converged on the source.
func TestEndToEndReplayWhileWriting(t *testing.T) {
	srv := startRedis(t)
	p := newPipeline(t, 99, "delete", e2eSink(map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}, []string{"main"}, "main"))
	live := p.startRunner("kanal-redis")
	p.steps(100)
	p.waitApplied(live.group)
	p.check()
	// The replay handles a few batches from earliest and is held mid-stream; the
	// producer and the live group go on. Redis must still equal the source: every
	// old change the replay carried was below the watermarks, so skipped.
	replay := p.startRunnerHeld("kanal-redis-replay", 10)
	select {
	case <-replay.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the replay did not apply 10 batches within 60s")
	}
	p.steps(40)
	p.waitApplied(live.group)
	p.check()
	mid := replay.h.Stats()
	close(replay.resume)
	p.steps(60)
	p.waitApplied(live.group, replay.group)
	p.check()
	t.Logf("replay held after %+v", mid)
	if s := replay.h.Stats(); s.Stale == 0 {
		t.Errorf("the replay skipped no stale change (%+v): the watermarks were not exercised", s)
	}
	t.Logf("live %+v; replay %+v", live.h.Stats(), replay.h.Stats())
}

// TestEndToEndHashRing: wl.items and wl.pairs are spread over two Redis instances
// by the consistent-hash ring, wl.nopk goes to database 1 of the second: every key
// is on the instance Reader (the application's view of the ring) locates it on,
// both instances hold rows, and the union equals the source — after a kill and
// restart of the consumer, and after a rebuild replay from earliest of the
// compacted topics (where deletes may survive as a lone tombstone) into a flushed
// Redis while the producer keeps writing.
func TestEndToEndHashRing(t *testing.T) {
	a, b := startRedis(t), startRedis(t)
	p := newPipeline(t, 3, "compact", e2eSink(map[string]redissink.InstanceConfig{
		"a": {Addr: a.Addr}, "b": {Addr: b.Addr}, "b1": {Addr: b.Addr, DB: 1},
	}, []string{"a", "b"}, "b1"))
	first := p.startRunner("kanal-redis")
	p.steps(70)
	p.w.Bulk(t, 1000)
	p.waitApplied(first.group)
	first.stop(t, true)
	p.steps(50)
	second := p.startRunner("kanal-redis")
	p.waitApplied(second.group)
	p.check()
	ca, cb := client(t, a.Addr, 0), client(t, b.Addr, 0)
	na, nb := keyCount(t, ca), keyCount(t, cb)
	if na < 100 || nb < 100 {
		t.Errorf("the ring put %d keys on a and %d on b", na, nb)
	}
	if n := keyCount(t, client(t, a.Addr, 1)); n != 0 {
		t.Errorf("instance a database 1 holds %d keys", n)
	}
	t.Logf("keys: a=%d b=%d b/db1=%d", na, nb, keyCount(t, client(t, b.Addr, 1)))

	// Full rebuild: Redis lost everything; a new group replays from earliest.
	second.stop(t, false)
	for _, c := range []*redis.Client{ca, cb} {
		if err := c.FlushAll(ctxT(t)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rebuild := p.startRunner("kanal-redis-rebuild")
	p.steps(50)
	p.waitApplied(rebuild.group)
	p.check()
	t.Logf("rebuild: %+v", rebuild.h.Stats())
}
