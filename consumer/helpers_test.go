package consumer_test

import (
	"context"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// kafka starts kfake with a session timeout floor low enough for crash tests.
func kafka(t *testing.T) *testenv.KafkaCluster {
	return testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
}

func testConfig(k *testenv.KafkaCluster) consumer.Config {
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = k.Brokers
	cfg.CommitInterval = 200 * time.Millisecond
	cfg.SessionTimeout = 4 * time.Second
	cfg.RevokeTimeout = 10 * time.Second
	cfg.MetadataMaxAge = 500 * time.Millisecond
	cfg.BatchMaxRecords = 200
	cfg.QueueMaxRecords = 1000
	cfg.Retry = consumer.RetryConfig{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
	return cfg
}

// running is a Runner started by a test.
type running struct {
	id     string
	r      *consumer.Runner
	cancel context.CancelFunc
	done   chan error
	net    *cdctest.NetCut
}

func startRunner(t *testing.T, id string, cfg consumer.Config, reg *consumer.Registry, opts ...consumer.Option) *running {
	t.Helper()
	return startRunnerLog(t, id, cfg, reg, testLogger(t).With("runner", id), opts...)
}

func startRunnerLog(t *testing.T, id string, cfg consumer.Config, reg *consumer.Registry, log *slog.Logger, opts ...consumer.Option) *running {
	t.Helper()
	nc := &cdctest.NetCut{}
	opts = append(opts, consumer.WithKafkaOptions(kgo.Dialer(nc.Dial), kgo.HeartbeatInterval(300*time.Millisecond)))
	r, err := consumer.NewRunner(cfg, reg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{id: id, r: r, cancel: cancel, done: make(chan error, 1), net: nc}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

// stop shuts the runner down gracefully (finish, commit, leave).
func (rr *running) stop(t *testing.T) {
	t.Helper()
	rr.cancel()
	select {
	case err, ok := <-rr.done:
		if ok {
			close(rr.done)
			if err != nil {
				t.Errorf("runner %s: %v", rr.id, err)
			}
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("runner %s did not stop within 60s", rr.id)
	}
}

// kill makes the runner vanish: network cut, nothing committed, group not left.
func (rr *running) kill(t *testing.T) {
	t.Helper()
	rr.net.Cut()
	consumer.Abort(rr.r)
	rr.stop(t)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tracker records which runner applied which offsets, per partition, to check
// order and coverage.
type tracker struct {
	mu sync.Mutex
	// sessions[runner][topic/partition] = offsets in the order applied
	sessions map[string]map[string][]int64
	applied  map[string]map[int64]int // topic/partition → offset → times applied
}

func newTracker() *tracker {
	return &tracker{sessions: map[string]map[string][]int64{}, applied: map[string]map[int64]int{}}
}

func tpKey(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

func (tr *tracker) observe(runner string, b consumer.Batch) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	k := tpKey(b.Topic, b.Partition)
	if tr.sessions[runner] == nil {
		tr.sessions[runner] = map[string][]int64{}
	}
	if tr.applied[k] == nil {
		tr.applied[k] = map[int64]int{}
	}
	last := int64(-1)
	for _, r := range b.Records {
		if r.Offset != last {
			tr.sessions[runner][k] = append(tr.sessions[runner][k], r.Offset)
			tr.applied[k][r.Offset]++
		}
		last = r.Offset
	}
}

func (tr *tracker) batches(runner string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, offs := range tr.sessions[runner] {
		n += len(offs)
	}
	return n
}

func (tr *tracker) partitionsOf(runner string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for k := range tr.sessions[runner] {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (tr *tracker) count(k string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.applied[k])
}

// checkOrder fails the test when some runner applied a partition's records out
// of offset order (within one runner's ownership offsets only go up, apart from
// a replay after the partition came back to it, which starts at or below where
// it was).
func (tr *tracker) checkOrder(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for runner, parts := range tr.sessions {
		for k, offs := range parts {
			for i := 1; i < len(offs); i++ {
				if offs[i] <= offs[i-1] {
					t.Errorf("runner %s applied %s@%d after @%d: out of order", runner, k, offs[i], offs[i-1])
					break
				}
			}
		}
	}
}

// covered fails the test when a record offset in want was never applied.
func (tr *tracker) covered(t *testing.T, want map[string][]int64) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	missing := 0
	for k, offs := range want {
		for _, o := range offs {
			if tr.applied[k][o] == 0 {
				if missing < 5 {
					t.Errorf("%s@%d was never applied", k, o)
				}
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d records never applied", missing)
	}
}

// itemRecord builds a kanal JSON change record of table db.items (id BIGINT PK,
// v VARCHAR) as the producer writes it.
func itemRecord(topic string, seq uint64, op schemas.Op, id int64, v string) *kgo.Record {
	cols := []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "v", Type: "varchar"}}
	env := schemas.Envelope{Op: op, Seq: seq, Columns: cols,
		Source: &schemas.Source{Name: "test", File: "binlog.000001", Pos: uint32(seq), TsMs: time.Now().UnixMilli(), DB: "db", Table: "items"}}
	row := []any{id, v}
	if op == schemas.OpDelete {
		env.Before = row
	} else {
		env.After = row
	}
	return &kgo.Record{
		Topic: topic,
		Key:   schemas.AppendKey(nil, "db", "items", []any{id}),
		Value: env.AppendJSON(nil),
		Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderOp, Value: []byte(op)},
			{Key: schemas.HeaderSeq, Value: []byte(strconv.FormatUint(seq, 10))},
			{Key: schemas.HeaderFormat, Value: []byte("json")},
		},
	}
}

func producerClient(t *testing.T, k *testenv.KafkaCluster) *kgo.Client {
	return k.Client(t, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.DefaultProduceTopic("x"))
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func createTopic(t *testing.T, k *testenv.KafkaCluster, topic string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(k.Client(t)).CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}
