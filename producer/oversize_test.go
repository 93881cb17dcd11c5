package producer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// counterValue is the value of the producer's counter name on its /metrics
// registry (failing the test when there is no such counter).
func counterValue(t *testing.T, p *producer.Producer, name string) float64 {
	t.Helper()
	fams, err := p.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 && f.GetMetric()[0].GetCounter() != nil {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s on the producer's metrics", name)
	return 0
}

// logCapture is a slog handler keeping every record's text, for tests that
// assert what the producer says.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
	h   slog.Handler
}

func newLogCapture(t *testing.T) (*slog.Logger, *logCapture) {
	lc := &logCapture{}
	lc.h = slog.NewTextHandler(&lockedWriter{lc}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(teeHandler{lc.h, cdctest.Logger(t).Handler()}), lc
}

type lockedWriter struct{ lc *logCapture }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.lc.mu.Lock()
	defer w.lc.mu.Unlock()
	return w.lc.buf.Write(p)
}

func (lc *logCapture) String() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.buf.String()
}

// lines returns the captured lines that contain every one of subs.
func (lc *logCapture) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(lc.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if t.a.Enabled(ctx, r.Level) {
		t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		t.b.Handle(ctx, r)
	}
	return nil
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}
func (t teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{t.a.WithGroup(g), t.b.WithGroup(g)}
}

// running is a producer started by runProducer.
type running struct {
	p    *producer.Producer
	done chan struct{} // closed when Run returned
	err  error         // what Run returned, once done is closed
}

// alive is for cdctest.WaitCaughtUp: an error once Run returned.
func (r *running) alive() error {
	select {
	case <-r.done:
		return errors.Join(r.err, errors.New("producer returned"))
	default:
		return nil
	}
}

// runProducer runs a producer with log until the test ends.
func runProducer(t *testing.T, cfg producer.Config, log *slog.Logger) *running {
	t.Helper()
	p, err := producer.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, done: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("producer did not stop within 30s")
		}
	})
	return r
}

func topicConfig(t *testing.T, k *testenv.KafkaCluster, topic, key string) string {
	t.Helper()
	rcs, err := kadm.NewClient(k.Client(t)).DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// TestBigRowFitsTheDefaults: a 2 MB LONGTEXT row (twice the broker's 1 MiB
// message.max.bytes) is written with the default settings, because the topics
// kanal creates take records of kafka.max_record_bytes; the changes after it are
// not held back. The brokers' limit is logged at start.
func TestBigRowFitsTheDefaults(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE big")
	m.Exec(t, "CREATE TABLE big.docs (id INT PRIMARY KEY, body LONGTEXT)")
	cfg := cdctest.ProducerConfig(m, k, "big")
	cfg.Tables.Include = []string{"big.*"}
	log, logs := newLogCapture(t)
	r := runProducer(t, cfg, log)
	body := strings.Repeat("x", 2<<20)
	m.Exec(t, "INSERT INTO big.docs VALUES (1, '"+body+"')")
	m.Exec(t, "INSERT INTO big.docs VALUES (2, 'small')")
	began := time.Now()
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, cfg.Source.Name, r.alive)
	t.Logf("a 2 MB row and the one after it committed in %v", time.Since(began).Round(time.Millisecond))
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.big\.docs$`, time.Minute)
	bodies := map[string]int{}
	for _, r := range recs {
		if r.Change != nil {
			bodies[r.Key] = len(r.Change.After["body"].(string))
		}
	}
	if len(recs) != 2 || bodies["big.docs:1"] != len(body) || bodies["big.docs:2"] != len("small") {
		t.Fatalf("got %d records with bodies %v, want the 2 MB row and the small one", len(recs), bodies)
	}
	want := strconv.Itoa(producer.DefaultConfig().Kafka.MaxRecordBytes + 1024)
	if got := topicConfig(t, k, "kanal.big.docs", "max.message.bytes"); got != want {
		t.Errorf("topic max.message.bytes = %q, want %s", got, want)
	}
	if l := logs.lines("kafka record size limits", "message.max.bytes=1048588", "max_record_bytes=16777216"); len(l) != 1 {
		t.Errorf("want one log line with the broker's message.max.bytes and kafka.max_record_bytes, got %q", l)
	}
}

// TestOversizeFail: a row larger than kafka.max_record_bytes under the default
// policy stops the producer at once with an error naming table, key, position
// and size: no endless retry.
func TestOversizeFail(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE big")
	m.Exec(t, "CREATE TABLE big.docs (id INT PRIMARY KEY, body LONGTEXT)")
	cfg := cdctest.ProducerConfig(m, k, "big-fail")
	cfg.Tables.Include = []string{"big.*"}
	cfg.Kafka.MaxRecordBytes = 64 << 10
	m.Exec(t, "INSERT INTO big.docs VALUES (1, 'small')")
	m.Exec(t, "INSERT INTO big.docs VALUES (2, '"+strings.Repeat("y", 100<<10)+"')")
	r := runProducer(t, cfg, cdctest.Logger(t))
	began := time.Now()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the producer is still running 60s after an oversize row: it must stop (oversize_policy fail)")
	}
	err := r.err
	t.Logf("stopped after %v: %v", time.Since(began).Round(time.Millisecond), err)
	var oe *producer.OversizeError
	if !errors.Is(err, producer.ErrOversize) || !errors.As(err, &oe) {
		t.Fatalf("got %v, want an OversizeError", err)
	}
	for _, s := range []string{"big.docs", "key big.docs:2", "binlog.", "oversize_policy", strconv.Itoa(64 << 10)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if oe.Oversize.Bytes <= 100<<10 || oe.Oversize.Limit != 64<<10 {
		t.Errorf("size %d, limit %d", oe.Oversize.Bytes, oe.Oversize.Limit)
	}
}

// TestOversizeSkip: with oversize_policy skip a too-large change becomes a small
// marker record on its table topic (same key, kanal.format=oversize, never a
// tombstone) and a copy in kanal._oversize, is counted, and the changes after it
// flow. A topic created beforehand with a smaller max.message.bytes lowers the
// limit for its table.
func TestOversizeSkip(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE big")
	m.Exec(t, "CREATE TABLE big.docs (id INT PRIMARY KEY, body LONGTEXT)")
	m.Exec(t, "CREATE TABLE big.pre (id INT PRIMARY KEY, body LONGTEXT)")
	small := strconv.Itoa(20000)
	resp, err := kadm.NewClient(k.Client(t)).CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &small}, "kanal.big.pre")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg := cdctest.ProducerConfig(m, k, "big-skip")
	cfg.Tables.Include = []string{"big.*"}
	cfg.Kafka.MaxRecordBytes = 64 << 10
	cfg.Kafka.OversizePolicy = "skip"
	log, logs := newLogCapture(t)
	r := runProducer(t, cfg, log)
	big := strings.Repeat("z", 100<<10)
	for _, q := range []string{
		"INSERT INTO big.docs VALUES (1, 'small')",
		"INSERT INTO big.docs VALUES (2, '" + big + "')",  // marker
		"UPDATE big.docs SET body = 'small' WHERE id = 2", // its before image is big: marker
		"UPDATE big.docs SET body = 'smaller' WHERE id = 2",
		"DELETE FROM big.docs WHERE id = 2",
		"INSERT INTO big.docs VALUES (4, '" + big + "')",                       // marker
		"DELETE FROM big.docs WHERE id = 4",                                    // marker, then its tombstone
		"INSERT INTO big.pre VALUES (1, '" + strings.Repeat("p", 30000) + "')", // above the topic's own limit: marker
		"INSERT INTO big.pre VALUES (2, 'fits')",
		"INSERT INTO big.docs VALUES (3, 'after')",
	} {
		m.Exec(t, q)
	}
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, cfg.Source.Name, r.alive)
	if n := r.p.Stats().OversizeSkipped.Load(); n != 5 {
		t.Errorf("OversizeSkipped = %d, want 5", n)
	}
	if v := counterValue(t, r.p, "kanal_producer_oversize_skipped_total"); v != 5 {
		t.Errorf("kanal_producer_oversize_skipped_total = %v, want 5", v)
	}
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.big\.(docs|pre)$`, time.Minute)
	got := map[string][]string{} // key → change op, "marker <op>" or "tombstone", in order
	markers := 0
	for _, r := range recs {
		switch {
		case r.Tombstone:
			got[r.Key] = append(got[r.Key], "tombstone")
		case r.Oversize != nil:
			markers++
			got[r.Key] = append(got[r.Key], "marker "+string(r.Oversize.Op))
			o := r.Oversize
			if o.Key != r.Key || !strings.HasPrefix(o.Pos, "binlog.") || o.Bytes <= o.Limit || o.Seq == 0 {
				t.Errorf("marker %+v for record key %s", o, r.Key)
			}
			if len(r.Value) > 1024 || r.Value == nil {
				t.Errorf("marker value of %d bytes (nil %t): want a small non-null value", len(r.Value), r.Value == nil)
			}
			hdr := r.Headers
			if hdr[schemas.HeaderFormat] != schemas.FormatOversize || hdr[schemas.HeaderOversize] != strconv.Itoa(o.Bytes) ||
				hdr[schemas.HeaderSeq] != strconv.FormatUint(o.Seq, 10) || hdr[schemas.HeaderOp] != string(o.Op) {
				t.Errorf("marker headers %v for %+v", hdr, o)
			}
			if _, err := schemas.Decode(hdr[schemas.HeaderFormat], r.Value); !errors.Is(err, schemas.ErrOversize) || !strings.Contains(err.Error(), r.Key) {
				t.Errorf("decoding a marker: %v, want ErrOversize naming the key", err)
			}
			if _, err := schemas.Decode("", r.Value); !errors.Is(err, schemas.ErrOversize) {
				t.Errorf("decoding a marker without its format header: %v, want ErrOversize", err)
			}
		default:
			got[r.Key] = append(got[r.Key], string(r.Change.Op))
		}
	}
	want := map[string][]string{
		"big.docs:1": {"c"},
		"big.docs:2": {"marker c", "marker u", "u", "d", "tombstone"},
		"big.docs:4": {"marker c", "marker d", "tombstone"},
		"big.docs:3": {"c"},
		"big.pre:1":  {"marker c"},
		"big.pre:2":  {"c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("table topics hold\n%v\nwant\n%v", got, want)
	}
	copies := cdctest.ReadAll(t, k.Brokers, `^kanal\._oversize$`, time.Minute)
	if len(copies) != markers {
		t.Fatalf("kanal._oversize holds %d records, want %d", len(copies), markers)
	}
	for _, c := range copies {
		o, err := schemas.DecodeOversize(c.Value)
		if err != nil || o.Key != c.Key || o.Bytes <= o.Limit {
			t.Errorf("copy %s: %+v %v", c.Key, o, err)
		}
	}
	if l := logs.lines("kanal.big.pre", "max.message.bytes=20000"); len(l) == 0 {
		t.Errorf("no warning that kanal.big.pre takes smaller records than kafka.max_record_bytes:\n%s", logs)
	}
	if l := logs.lines("oversize marker", "key=big.docs:2", "bytes="); len(l) != 2 {
		t.Errorf("want 2 warnings naming big.docs:2, got %q", l)
	}
}

// TestTopicLimitUnreadable: when kanal may not read an existing topic's
// max.message.bytes and the topic takes less than kafka.max_record_bytes, the
// broker's refusal stops the producer with an error naming the topic and what to
// do, instead of retrying the same batch forever.
func TestTopicLimitUnreadable(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE big")
	m.Exec(t, "CREATE TABLE big.pre (id INT PRIMARY KEY, body LONGTEXT)")
	small := "20000"
	adm := kadm.NewClient(k.Client(t))
	if _, err := adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"max.message.bytes": &small}, "kanal.big.pre"); err != nil {
		t.Fatal(err)
	}
	// DescribeConfigs (key 32) is refused, as without the DescribeConfigs ACL.
	k.Cluster.ControlKey(32, func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		dreq := req.(*kmsg.DescribeConfigsRequest)
		resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range dreq.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	cfg := cdctest.ProducerConfig(m, k, "unreadable")
	cfg.Tables.Include = []string{"big.*"}
	cfg.Kafka.MaxRecordBytes = 64 << 10
	// Random text: compression must not bring the batch under the limit.
	noise := make([]byte, 24000)
	rand.Read(noise)
	m.Exec(t, "INSERT INTO big.pre VALUES (1, '"+base64.StdEncoding.EncodeToString(noise)+"')")
	log, logs := newLogCapture(t)
	r := runProducer(t, cfg, log)
	began := time.Now()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the producer still retries a batch the broker refuses as too large")
	}
	t.Logf("stopped after %v: %v", time.Since(began).Round(time.Millisecond), r.err)
	if !errors.Is(r.err, producer.ErrOversize) || !strings.Contains(r.err.Error(), "kanal.big.pre") || !strings.Contains(r.err.Error(), "DescribeConfigs") {
		t.Errorf("got %v, want ErrOversize naming the topic and DescribeConfigs", r.err)
	}
	if l := logs.lines("cannot read the topic's max.message.bytes", "kanal.big.pre"); len(l) == 0 {
		t.Errorf("no warning that the topic's limit could not be read:\n%s", logs)
	}
}
