package consumer_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// largestSink is a memSink that notes the largest batch it was handed.
type largestSink struct {
	*memSink
	mu      sync.Mutex
	largest int
}

func (s *largestSink) Handle(ctx context.Context, b consumer.Batch) error {
	s.mu.Lock()
	s.largest = max(s.largest, len(b.Records))
	s.mu.Unlock()
	return s.memSink.Handle(ctx, b)
}

func (s *largestSink) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.largest
}

// sizedSink is a largestSink that sets its own batch bound
// (consumer.BatchSizer).
type sizedSink struct {
	*largestSink
	bound int
}

func (s *sizedSink) BatchMaxRecords() int { return s.bound }

// TestBatchSizer: a handler that sets its own batch bound gets batches up to
// it (beyond the Runner's BatchMaxRecords) while a backlog lasts, never more
// than QueueMaxRecords, and still every record exactly once and in order; a
// handler without one keeps the Runner's bound.
func TestBatchSizer(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	pc := producerClient(t, k)
	const n = 4000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		seq := uint64(i + 1)
		recs[i] = itemRecord(topic, seq, schemas.OpCreate, int64(i%500), "v"+strconv.FormatUint(seq, 10))
	}
	produce(t, pc, recs...)
	cfg := testConfig(k) // batches of 200, queues of 1000
	for _, tc := range []struct {
		name    string
		bound   int // 0: a handler without BatchSizer
		atLeast int // the largest batch must exceed this
		atMost  int
		handler string
	}{
		{"own bound", 700, cfg.BatchMaxRecords, 700, "sized-700"},
		{"capped by the queue", 5000, 700, cfg.QueueMaxRecords, "sized-5000"},
		{"no bound", 0, 0, cfg.BatchMaxRecords, "plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			ls := &largestSink{memSink: &memSink{name: tc.handler, tr: tr, id: "r", rows: map[string]string{}}}
			var h consumer.Handler = ls
			if tc.bound > 0 {
				h = &sizedSink{largestSink: ls, bound: tc.bound}
			}
			reg := consumer.NewRegistry()
			if err := reg.Register(h, consumer.Tables("db.*")); err != nil {
				t.Fatal(err)
			}
			r := startRunner(t, "r", cfg, reg)
			waitFor(t, 60*time.Second, "all records applied", func() bool { return tr.count(tpKey(topic, 0)) >= n })
			r.stop(t)
			tr.checkOrder(t)
			tr.mu.Lock()
			for o, times := range tr.applied[tpKey(topic, 0)] {
				if times != 1 {
					t.Errorf("offset %d applied %d times", o, times)
				}
			}
			tr.mu.Unlock()
			// The whole topic is there before the Runner starts: the first
			// batches are as big as the bound allows.
			if largest := ls.max(); largest <= tc.atLeast || largest > tc.atMost {
				t.Errorf("largest batch %d records, want more than %d and at most %d", largest, tc.atLeast, tc.atMost)
			} else {
				t.Logf("largest batch: %d records", largest)
			}
		})
	}
}
