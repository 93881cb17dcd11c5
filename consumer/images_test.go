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

// imageSink keeps, per record key and op, whether the change came with a
// before image.
type imageSink struct {
	name string
	mu   sync.Mutex
	seen map[string]bool // "<key> <op>" → Before != nil
}

func (s *imageSink) Name() string { return s.name }
func (s *imageSink) Handle(_ context.Context, b consumer.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Records {
		if r.Change != nil {
			s.seen[r.Key+" "+string(r.Op)] = r.Change.Before != nil
		}
	}
	return nil
}

func (s *imageSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// afterOnlySink is an imageSink that reads no update's before image.
type afterOnlySink struct{ imageSink }

func (*afterOnlySink) UsesUpdateBefore() bool { return false }

// TestUpdateBeforeImages: a group whose handler reads no update's before image
// gets updates without it (deletes keep theirs); a group whose handler does not
// say so, or whose route has middleware (which might read it), gets it.
func TestUpdateBeforeImages(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 1)
	cols := []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "v", Type: "varchar"}}
	rec := func(seq uint64, op schemas.Op, before, after []any) *kgo.Record {
		env := schemas.Envelope{Op: op, Seq: seq, Columns: cols, Before: before, After: after,
			Source: &schemas.Source{Name: "test", File: "binlog.000001", Pos: uint32(seq), TsMs: time.Now().UnixMilli(), DB: "db", Table: "items"}}
		return &kgo.Record{Topic: topic, Key: schemas.AppendKey(nil, "db", "items", []any{int64(1)}), Value: env.AppendJSON(nil),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSeq, Value: []byte(strconv.FormatUint(seq, 10))},
				{Key: schemas.HeaderFormat, Value: []byte("json")}}}
	}
	produce(t, producerClient(t, k),
		rec(1, schemas.OpCreate, nil, []any{int64(1), "a"}),
		rec(2, schemas.OpUpdate, []any{int64(1), "a"}, []any{int64(1), "b"}),
		rec(3, schemas.OpDelete, []any{int64(1), "b"}, nil))

	skip := &afterOnlySink{imageSink{name: "skip", seen: map[string]bool{}}}
	wrapped := &afterOnlySink{imageSink{name: "wrapped", seen: map[string]bool{}}}
	plain := &imageSink{name: "plain", seen: map[string]bool{}}
	reg := consumer.NewRegistry()
	noop := func(h consumer.Handler) consumer.Handler { return h }
	for _, r := range []struct {
		h    consumer.Handler
		opts []consumer.RouteOption
	}{{skip, nil}, {wrapped, []consumer.RouteOption{consumer.Use(noop)}}, {plain, nil}} {
		if err := reg.Register(r.h, append([]consumer.RouteOption{consumer.Tables("db.items")}, r.opts...)...); err != nil {
			t.Fatal(err)
		}
	}
	rr := startRunner(t, "a", testConfig(k), reg)
	waitFor(t, 60*time.Second, "every group to handle the 3 changes", func() bool {
		return skip.count() == 3 && wrapped.count() == 3 && plain.count() == 3
	})
	rr.stop(t)
	for _, c := range []struct {
		s          *imageSink
		wantUpdate bool
	}{{&skip.imageSink, false}, {&wrapped.imageSink, true}, {plain, true}} {
		want := map[string]bool{"db.items:1 c": false, "db.items:1 u": c.wantUpdate, "db.items:1 d": true}
		for k, w := range want {
			if got := c.s.seen[k]; got != w {
				t.Errorf("%s: %s has a before image: %v, want %v", c.s.name, k, got, w)
			}
		}
	}
}
