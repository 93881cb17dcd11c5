package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// memSink is an in-memory handler used by the tests that are about the Runner's
// mechanics rather than a sink (the sink tests use Postgres).
type memSink struct {
	name string
	tr   *tracker
	id   string
	fail func(r *consumer.Record) error
	slow time.Duration

	mu   sync.Mutex
	rows map[string]string
}

func (m *memSink) Name() string { return m.name }

func (m *memSink) Handle(ctx context.Context, b consumer.Batch) error {
	if m.fail != nil {
		for i := range b.Records {
			if err := m.fail(&b.Records[i]); err != nil {
				return err
			}
		}
	}
	if m.slow > 0 {
		select {
		case <-time.After(m.slow):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	for _, r := range b.Records {
		if r.Change != nil && r.Change.After != nil {
			m.rows[r.Key] = fmt.Sprint(r.Change.After["v"])
		} else {
			delete(m.rows, r.Key)
		}
	}
	m.mu.Unlock()
	m.tr.observe(m.id, b)
	return nil
}

// TestGracefulRebalanceAppliesEachRecordOnce: runners join and leave gracefully
// while records arrive; on revoke in-flight batches finish and are committed
// before the partition moves, so every record is applied exactly once and, per
// partition, in offset order.
func TestGracefulRebalanceAppliesEachRecordOnce(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 6)
	pc := producerClient(t, k)
	tr := newTracker()
	cfg := testConfig(k)
	cfg.BatchMaxRecords = 50
	newReg := func(id string) *consumer.Registry {
		reg := consumer.NewRegistry()
		if err := reg.Register(&memSink{name: "mem", tr: tr, id: id, rows: map[string]string{}, slow: 2 * time.Millisecond},
			consumer.Tables("db.*")); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	seq := uint64(0)
	burst := func(n int) {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			seq++
			recs[i] = itemRecord(topic, seq, schemas.OpCreate, int64(seq), "v"+strconv.FormatUint(seq, 10))
		}
		produce(t, pc, recs...)
	}
	// Records keep arriving while the group changes.
	whileProducing := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			burst(30)
		}
	}
	a := startRunner(t, "a", cfg, newReg("a"))
	burst(2000)
	whileProducing("runner a to apply records", func() bool { return tr.batches("a") > 0 })
	b := startRunner(t, "b", cfg, newReg("b"))
	whileProducing("runner b to apply records", func() bool { return tr.batches("b") > 0 })
	c := startRunner(t, "c", cfg, newReg("c"))
	burst(2000)
	whileProducing("runner c to apply records", func() bool { return tr.batches("c") > 0 })
	a.stop(t)
	burst(2000)
	b.stop(t)
	burst(2000)
	total := int(seq)
	waitFor(t, 60*time.Second, "all records applied", func() bool {
		n := 0
		for p := 0; p < 6; p++ {
			n += tr.count(tpKey(topic, int32(p)))
		}
		return n >= total
	})
	c.stop(t)
	tr.checkOrder(t)
	dups := 0
	tr.mu.Lock()
	for k, offs := range tr.applied {
		for o, n := range offs {
			if n != 1 {
				if dups < 5 {
					t.Errorf("%s@%d applied %d times across graceful rebalances", k, o, n)
				}
				dups++
			}
		}
	}
	tr.mu.Unlock()
	t.Logf("%d records, 3 runners, %d partitions owned by a/b/c: %d/%d/%d", total, 6,
		len(tr.partitionsOf("a")), len(tr.partitionsOf("b")), len(tr.partitionsOf("c")))
}

// TestIsolationDeadLetters: a handler that rejects some records inside large
// batches. The batch is bisected, the bad records go to the dead-letter topic
// with headers naming where they came from, everything else is applied in
// order, and an undecodable record is dead-lettered too.
func TestIsolationDeadLetters(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 2)
	pc := producerClient(t, k)
	bad := map[int64]string{17: "permanent", 333: "retries-exhausted", 640: "permanent"}
	var flaky atomic.Int32
	sink := &memSink{name: "iso", tr: newTracker(), id: "x", rows: map[string]string{},
		fail: func(r *consumer.Record) error {
			if r.Change == nil {
				return nil
			}
			id := r.Change.After["id"].(int64)
			switch {
			case bad[id] == "permanent":
				return consumer.Permanent(fmt.Errorf("id %d is poison", id))
			case bad[id] == "retries-exhausted":
				return errors.New("sink says no, again")
			case id == 500 && flaky.Add(1) <= 2:
				return errors.New("transient hiccup")
			}
			return nil
		}}
	cfg := testConfig(k)
	cfg.BatchMaxRecords = 200
	reg := consumer.NewRegistry()
	if err := reg.Register(sink, consumer.Tables("db.items"), consumer.OnFailure(consumer.DeadLetter)); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := int64(1); i <= 1000; i++ {
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, "v"))
	}
	garbage := &kgo.Record{Topic: topic, Key: []byte("db.items:999999"), Value: []byte(`{"op":"c","seq":`),
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte("json")}}}
	recs = append(recs[:700], append([]*kgo.Record{garbage}, recs[700:]...)...)
	produce(t, pc, recs...)
	origin := map[string]*kgo.Record{}
	for _, r := range recs {
		origin[string(r.Key)] = r
	}

	rr := startRunner(t, "a", cfg, reg)
	waitFor(t, 60*time.Second, "the good records to be applied", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.rows) == 1000-len(bad)
	})
	dlq := readTopic(t, k, schemas.DLQTopic("kanal", "kanal-iso"), 4)
	rr.stop(t)
	want := map[string]string{"db.items:17": "permanent", "db.items:333": "retries-exhausted", "db.items:640": "permanent", "db.items:999999": "decode"}
	for _, d := range dlq {
		key := string(d.Key)
		reason := hdr(d, schemas.HeaderDLQReason)
		if want[key] != reason {
			t.Errorf("dead letter %s: reason %q, want %q", key, reason, want[key])
		}
		o := origin[key]
		if hdr(d, schemas.HeaderDLQTopic) != topic || hdr(d, schemas.HeaderDLQPartition) != strconv.Itoa(int(o.Partition)) ||
			hdr(d, schemas.HeaderDLQOffset) != strconv.FormatInt(o.Offset, 10) {
			t.Errorf("dead letter %s: headers topic=%s partition=%s offset=%s, want %s/%d@%d", key,
				hdr(d, schemas.HeaderDLQTopic), hdr(d, schemas.HeaderDLQPartition), hdr(d, schemas.HeaderDLQOffset), topic, o.Partition, o.Offset)
		}
		if string(d.Value) != string(o.Value) || hdr(d, schemas.HeaderFormat) == "" {
			t.Errorf("dead letter %s does not carry the original value and headers", key)
		}
		wantAttempts := map[string]string{"permanent": "1", "retries-exhausted": strconv.Itoa(cfg.Retry.MaxAttempts), "decode": "0"}[reason]
		if got := hdr(d, schemas.HeaderDLQAttempts); got != wantAttempts {
			t.Errorf("dead letter %s: attempts %s, want %s", key, got, wantAttempts)
		}
		if hdr(d, schemas.HeaderDLQHandler) != "iso" || hdr(d, schemas.HeaderDLQError) == "" {
			t.Errorf("dead letter %s: handler %q error %q", key, hdr(d, schemas.HeaderDLQHandler), hdr(d, schemas.HeaderDLQError))
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Errorf("not dead-lettered: %v", want)
	}
	sink.tr.checkOrder(t)
	sink.mu.Lock()
	if _, ok := sink.rows["db.items:500"]; !ok {
		t.Error("the record that failed twice and then succeeded was not applied")
	}
	sink.mu.Unlock()
	if got := counter(t, rr.r, "kanal_consumer_dead_letters_total"); got != 4 {
		t.Errorf("dead letters counted: %v, want 4", got)
	}
}

// TestHaltPolicy: with policy halt a failing record stops its partition (and only
// it) and /readyz says where; once the cause goes away the partition resumes on
// its own and nothing was skipped.
func TestHaltPolicy(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 2)
	pc := producerClient(t, k)
	var broken atomic.Bool
	broken.Store(true)
	sink := &memSink{name: "halter", tr: newTracker(), id: "x", rows: map[string]string{},
		fail: func(r *consumer.Record) error {
			if r.Change != nil && r.Change.After["id"].(int64) == 50 && broken.Load() {
				return errors.New("sink rejects id 50 for now")
			}
			return nil
		}}
	cfg := testConfig(k)
	reg := consumer.NewRegistry()
	if err := reg.Register(sink, consumer.Tables("db.items"), consumer.OnFailure(consumer.Halt)); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := int64(1); i <= 400; i++ {
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, "v"))
	}
	produce(t, pc, recs...)
	var halted *kgo.Record
	blocked := map[string]bool{}
	for _, r := range recs {
		if string(r.Key) == "db.items:50" {
			halted = r
		}
	}
	for _, r := range recs {
		if r.Partition == halted.Partition && r.Offset >= halted.Offset {
			blocked[string(r.Key)] = true
		}
	}
	rr := startRunner(t, "a", cfg, reg)
	waitFor(t, 60*time.Second, "the partition to halt and the other one to finish", func() bool {
		sink.mu.Lock()
		n := len(sink.rows)
		sink.mu.Unlock()
		return n == 400-len(blocked) && !rr.r.Health().Ready
	})
	h := rr.r.Health()
	if len(h.Halted) != 1 {
		t.Fatalf("health %+v, want one halted partition", h)
	}
	hp := h.Halted[0]
	if hp.Key != "db.items:50" || hp.Table != "db.items" || hp.Partition != halted.Partition || hp.Offset != halted.Offset || hp.Error == "" {
		t.Errorf("halted %+v, want key db.items:50 at %d@%d", hp, halted.Partition, halted.Offset)
	}
	sink.mu.Lock()
	for key := range blocked {
		if _, ok := sink.rows[key]; ok {
			t.Errorf("%s was applied although it comes after the halted record", key)
		}
	}
	sink.mu.Unlock()
	if got := counter(t, rr.r, "kanal_consumer_halted_partitions"); got != 1 {
		t.Errorf("halted partitions gauge %v, want 1", got)
	}
	ready := httptest.NewRecorder()
	rr.r.HTTPHandler().ServeHTTP(ready, httptest.NewRequest("GET", "/readyz", nil))
	if ready.Code != 503 || !strings.Contains(ready.Body.String(), `"key": "db.items:50"`) {
		t.Errorf("/readyz while halted: %d %s", ready.Code, ready.Body)
	}
	metrics := httptest.NewRecorder()
	rr.r.HTTPHandler().ServeHTTP(metrics, httptest.NewRequest("GET", "/metrics", nil))
	for _, m := range []string{`kanal_consumer_records_applied_total{handler="halter",table="db.items"}`, "kanal_consumer_apply_seconds_bucket",
		"kanal_consumer_lag_records", "kanal_consumer_retries_total", "kanal_consumer_freshness_seconds"} {
		if !strings.Contains(metrics.Body.String(), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	broken.Store(false)
	waitFor(t, 30*time.Second, "the halted partition to resume", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.rows) == 400 && rr.r.Health().Ready
	})
	sink.tr.checkOrder(t)
	ready = httptest.NewRecorder()
	rr.r.HTTPHandler().ServeHTTP(ready, httptest.NewRequest("GET", "/readyz", nil))
	if ready.Code != 200 {
		t.Errorf("/readyz after the partition resumed: %d %s", ready.Code, ready.Body)
	}
	rr.stop(t)
}

func hdr(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// readTopic reads n records of a topic from the start.
func readTopic(t *testing.T, k interface {
	Client(testenv.T, ...kgo.Opt) *kgo.Client
}, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: got %d records, want %d", topic, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// counter sums the values of a metric family.
func counter(t *testing.T, r *consumer.Runner, name string) float64 {
	t.Helper()
	mfs, err := r.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
