package consumer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// logBuffer collects a Runner's log lines (text format) for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startLogged starts a Runner that logs into a buffer.
func startLogged(t *testing.T, id string, cfg consumer.Config, reg *consumer.Registry, logs *logBuffer) *running {
	t.Helper()
	return startRunnerLog(t, id, cfg, reg, logs.logger())
}

func readyz(r *consumer.Runner) (int, string) {
	rec := httptest.NewRecorder()
	r.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	return rec.Code, rec.Body.String()
}

// TestBigUndecodableRecordIsDeadLetteredTruncated: a ~1 MB record that cannot be
// decoded is larger than a dead letter may be. It is dead-lettered anyway — with
// its headers, the first dlq_max_value_bytes of its value and the SHA-256 and
// length of the whole — and the partition goes on. (Before, the write failed
// with MESSAGE_TOO_LARGE for ever and the partition stalled without a sign.)
func TestBigUndecodableRecordIsDeadLetteredTruncated(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	pc := k.Client(t, kgo.ProducerBatchMaxBytes(2<<20), kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := int64(1); i <= 20; i++ {
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, "v"))
	}
	big := bytes.Repeat([]byte(`{"op":"c","garbage":"`), 1_000_000/21)
	bad := &kgo.Record{Topic: topic, Key: []byte("db.items:999"), Value: big, Headers: []kgo.RecordHeader{
		{Key: schemas.HeaderFormat, Value: []byte("json")}, {Key: schemas.HeaderSeq, Value: []byte("999")}}}
	recs = append(recs[:10], append([]*kgo.Record{bad}, recs[10:]...)...)
	produce(t, pc, recs...)

	sink := &memSink{name: "big", tr: newTracker(), id: "x", rows: map[string]string{}}
	reg := consumer.NewRegistry()
	if err := reg.Register(sink, consumer.Tables("db.items"), consumer.OnFailure(consumer.Halt)); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(k)
	rr := startRunner(t, "a", cfg, reg)
	waitFor(t, 30*time.Second, "the records after the big one to be applied", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.rows) == 20
	})
	d := readTopic(t, k, schemas.DLQTopic("kanal", "kanal-big"), 1)[0]
	sum := sha256.Sum256(big)
	switch {
	case string(d.Key) != "db.items:999" || hdr(d, schemas.HeaderDLQReason) != "decode":
		t.Errorf("dead letter key %s reason %s", d.Key, hdr(d, schemas.HeaderDLQReason))
	case len(d.Value) != cfg.DLQMaxValueBytes || !bytes.Equal(d.Value, big[:cfg.DLQMaxValueBytes]):
		t.Errorf("dead letter value: %d bytes, want the first %d of the original", len(d.Value), cfg.DLQMaxValueBytes)
	case hdr(d, schemas.HeaderDLQTruncated) != strconv.Itoa(len(big)) || hdr(d, schemas.HeaderDLQValueSHA256) != hex.EncodeToString(sum[:]):
		t.Errorf("truncation headers: length %q sha256 %q", hdr(d, schemas.HeaderDLQTruncated), hdr(d, schemas.HeaderDLQValueSHA256))
	case hdr(d, schemas.HeaderSeq) != "999" || hdr(d, schemas.HeaderDLQOffset) != "10":
		t.Errorf("original headers or position lost: seq %q offset %q", hdr(d, schemas.HeaderSeq), hdr(d, schemas.HeaderDLQOffset))
	}
	if code, body := readyz(rr.r); code != 200 {
		t.Errorf("/readyz after the dead letter: %d %s", code, body)
	}
	rr.stop(t)
	sink.tr.checkOrder(t)
}

// TestDeadLetterWriteFailureHaltsVisibly: when the dead-letter topic refuses a
// write for another reason than size, the partition halts where everyone can see
// it — /readyz names it, the halted-partitions gauge and the write-error counter
// count it, each failure is logged — and it is not skipped: a stop while halted
// returns at once (well within revoke_timeout) and the next run writes the dead
// letter and goes on.
func TestDeadLetterWriteFailureHaltsVisibly(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	dlq := schemas.DLQTopic("kanal", "kanal-dl")
	createTopic(t, k, dlq, 1)
	failing := k.RefuseProduce(t, dlq, kerr.TopicAuthorizationFailed.Code)
	pc := producerClient(t, k)
	var recs []*kgo.Record
	for i := int64(1); i <= 40; i++ {
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, "v"))
	}
	produce(t, pc, recs...)
	newSink := func() *memSink {
		return &memSink{name: "dl", tr: newTracker(), id: "x", rows: map[string]string{},
			fail: func(r *consumer.Record) error {
				if r.Change != nil && r.Change.After["id"].(int64) == 25 {
					return consumer.Permanent(errors.New("id 25 is poison"))
				}
				return nil
			}}
	}
	register := func(s *memSink) *consumer.Registry {
		reg := consumer.NewRegistry()
		if err := reg.Register(s, consumer.Tables("db.items"), consumer.OnFailure(consumer.DeadLetter)); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	cfg := testConfig(k)
	logs := &logBuffer{}
	sink := newSink()
	rr := startLogged(t, "a", cfg, register(sink), logs)
	waitFor(t, 30*time.Second, "the partition to halt on the dead-letter write", func() bool {
		return len(rr.r.Health().Halted) == 1 && len(logs.lines("dead-letter write failed")) >= 2
	})
	hp := rr.r.Health().Halted[0]
	if hp.Key != "db.items:25" || hp.Offset != 24 || !strings.Contains(hp.Error, "dead-letter write to "+dlq) || !strings.Contains(hp.Error, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("halted %+v", hp)
	}
	if code, body := readyz(rr.r); code != 503 || !strings.Contains(body, "db.items:25") {
		t.Errorf("/readyz while the dead-letter write fails: %d %s", code, body)
	}
	if g := counter(t, rr.r, "kanal_consumer_halted_partitions"); g != 1 {
		t.Errorf("halted partitions gauge %v, want 1", g)
	}
	if n := counter(t, rr.r, "kanal_consumer_dead_letter_write_errors_total"); n < 2 {
		t.Errorf("dead-letter write errors counted: %v", n)
	}
	if l := logs.lines("dead-letter write failed"); !strings.Contains(l[1], "attempt=2") {
		t.Errorf("retry not logged with its attempt: %s", l[1])
	}
	sink.mu.Lock()
	for i := 25; i <= 40; i++ {
		if _, ok := sink.rows[fmt.Sprintf("db.items:%d", i)]; ok {
			t.Errorf("db.items:%d applied although the record before it was neither applied nor dead-lettered", i)
		}
	}
	sink.mu.Unlock()

	start := time.Now()
	rr.stop(t)
	if took := time.Since(start); took >= cfg.RevokeTimeout {
		t.Errorf("stop while halted took %v, not within revoke_timeout (%v)", took, cfg.RevokeTimeout)
	} else {
		t.Logf("stop while halted took %v", took.Round(time.Millisecond))
	}

	failing.Store(false)
	sink2 := newSink()
	rr2 := startRunner(t, "b", cfg, register(sink2))
	waitFor(t, 30*time.Second, "the rest to be applied after the dead letter", func() bool {
		sink2.mu.Lock()
		defer sink2.mu.Unlock()
		_, last := sink2.rows["db.items:40"]
		return last
	})
	d := readTopic(t, k, dlq, 1)
	if string(d[0].Key) != "db.items:25" {
		t.Errorf("dead letter %s", d[0].Key)
	}
	if !rr2.r.Health().Ready {
		t.Errorf("not ready after the dead letter was written: %+v", rr2.r.Health())
	}
	rr2.stop(t)
}

// TestHaltedPartitionRetriesVisiblyAndStopsAtOnce: every retry of a halted record
// is logged at WARN with its attempt and error and counted in retries_total; a
// stop does not wait for the halted record (it is not in progress), so shutdown
// takes well under revoke_timeout.
func TestHaltedPartitionRetriesVisiblyAndStopsAtOnce(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	produce(t, producerClient(t, k), itemRecord(topic, 1, schemas.OpCreate, 1, "v"), itemRecord(topic, 2, schemas.OpCreate, 2, "v"))
	sink := &memSink{name: "stuck", tr: newTracker(), id: "x", rows: map[string]string{},
		fail: func(r *consumer.Record) error {
			if r.Change != nil && r.Change.After["id"].(int64) == 2 {
				return errors.New("sink is down")
			}
			return nil
		}}
	reg := consumer.NewRegistry()
	if err := reg.Register(sink, consumer.Tables("db.items"), consumer.OnFailure(consumer.Halt)); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(k)
	cfg.Retry.MaxInterval = 100 * time.Millisecond
	logs := &logBuffer{}
	rr := startLogged(t, "a", cfg, reg, logs)
	waitFor(t, 30*time.Second, "three retries of the halted record", func() bool {
		return len(logs.lines("halted partition: the record still fails")) >= 3
	})
	for i, l := range logs.lines("halted partition: the record still fails")[:3] {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, fmt.Sprintf("attempt=%d", i+1)) || !strings.Contains(l, "sink is down") || !strings.Contains(l, "key=db.items:2") {
			t.Errorf("halted retry log line %d: %s", i+1, l)
		}
	}
	// retries_total: the record's own retries before halting, then one per halted retry.
	if n := counter(t, rr.r, "kanal_consumer_retries_total"); n < float64(cfg.Retry.MaxAttempts-1+3) {
		t.Errorf("retries_total %v while halted, want >= %d", n, cfg.Retry.MaxAttempts-1+3)
	}
	start := time.Now()
	rr.stop(t)
	if took := time.Since(start); took >= cfg.RevokeTimeout {
		t.Errorf("stop with a halted partition took %v, not within revoke_timeout (%v)", took, cfg.RevokeTimeout)
	} else {
		t.Logf("stop with a halted partition took %v", took.Round(time.Millisecond))
	}
	if _, ok := sink.rows["db.items:1"]; !ok {
		t.Error("the record before the halted one was not applied")
	}
}

// callLog records every Handle call's offset span.
type callLog struct {
	mu    sync.Mutex
	spans map[[2]int64]int
}

// TestBisectFirst: a batch with one bad record is bisected at once — no run of
// several records is tried more than once — and only the bad record gets the
// retry budget before it is dead-lettered. (Before, the whole batch got the
// retry budget first: 6 attempts with backoff, then 6 more on the record.)
func TestBisectFirst(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	var recs []*kgo.Record
	for i := int64(1); i <= 300; i++ {
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, "v"))
	}
	produce(t, producerClient(t, k), recs...)
	calls := &callLog{spans: map[[2]int64]int{}}
	var applied atomic.Int64
	h := consumer.HandlerFunc{HandlerName: "bisect", Fn: func(_ context.Context, b consumer.Batch) error {
		span := [2]int64{b.Records[0].Offset, b.Records[len(b.Records)-1].Offset}
		calls.mu.Lock()
		calls.spans[span]++
		calls.mu.Unlock()
		for _, r := range b.Records {
			if r.Change.After["id"].(int64) == 77 {
				return errors.New("row 77 violates a constraint")
			}
		}
		applied.Add(int64(len(b.Records)))
		return nil
	}}
	reg := consumer.NewRegistry()
	if err := reg.Register(h, consumer.Tables("db.items"), consumer.OnFailure(consumer.DeadLetter)); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(k)
	cfg.BatchMaxRecords = 300
	cfg.QueueMaxRecords = 300
	rr := startRunner(t, "a", cfg, reg)
	dl := readTopic(t, k, schemas.DLQTopic("kanal", "kanal-bisect"), 1)
	waitFor(t, 30*time.Second, "the other records to be applied", func() bool { return applied.Load() == 299 })
	rr.stop(t)
	if string(dl[0].Key) != "db.items:77" || hdr(dl[0], schemas.HeaderDLQAttempts) != strconv.Itoa(cfg.Retry.MaxAttempts) {
		t.Errorf("dead letter %s after %s attempts", dl[0].Key, hdr(dl[0], schemas.HeaderDLQAttempts))
	}
	calls.mu.Lock()
	defer calls.mu.Unlock()
	multi := 0
	for span, n := range calls.spans {
		switch {
		case span[0] == span[1] && span[0] == 76:
			if n != cfg.Retry.MaxAttempts {
				t.Errorf("the bad record was tried %d times, want %d", n, cfg.Retry.MaxAttempts)
			}
		case n > 1 && span[0] <= 76 && span[1] >= 76:
			t.Errorf("records %d..%d (the bad one among them) tried %d times: bisect first", span[0], span[1], n)
		case span[0] <= 76 && span[1] >= 76:
			multi++
		}
	}
	t.Logf("%d calls of runs holding the bad record before it was isolated", multi)
}

// TestSameInstanceIDStopsTheFencedMember: two live members given the same
// explicit instance_id would fence each other back and forth; the one fenced
// stops instead, with an error naming the id and the setting.
func TestSameInstanceIDStopsTheFencedMember(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 2)
	cfg := testConfig(k)
	cfg.InstanceID = "pod-0"
	newReg := func() *consumer.Registry {
		reg := consumer.NewRegistry()
		if err := reg.Register(&memSink{name: "twin", tr: newTracker(), id: "x", rows: map[string]string{}}, consumer.Tables("db.items")); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	a := startRunner(t, "a", cfg, newReg())
	waitFor(t, 30*time.Second, "the first member to be assigned", func() bool {
		return counter(t, a.r, "kanal_consumer_partitions_changed_total") > 0
	})
	b := startRunner(t, "b", cfg, newReg())
	select {
	case err := <-a.done:
		close(a.done)
		if err == nil || !strings.Contains(err.Error(), `instance id "pod-0"`) || !strings.Contains(err.Error(), "consumers.instance_id") {
			t.Errorf("fenced member stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fenced member kept running")
	}
	if !b.r.Health().Ready {
		t.Errorf("the member that took the id is not ready: %+v", b.r.Health())
	}
}
