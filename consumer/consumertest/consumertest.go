// Package consumertest is a conformance suite for consumer.Handler
// implementations. A sink author runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		consumertest.Run(t, func(t *testing.T) consumertest.Sink {
//			h := newMySink(t) // empty
//			return consumertest.Sink{Handler: h, State: h.state, Versioned: true}
//		})
//	}
//
// It feeds the handler batches of generated changes the way the Runner does —
// per partition, in offset order, with tombstones after deletes, primary-key
// changes as delete + create, NULLs and bytes, and a backfill's snapshot reads
// (op r) interleaved with the changes — and checks what consumers rely on:
//
//   - applying the changes gives the source's final state;
//   - applying a batch twice equals applying it once (retries, replays);
//   - a crash in the middle of a batch (a prefix applied, or the context
//     cancelled mid-call), then a replay from the last commit — or, for an
//     consumer.OffsetStore, from the offsets it stored — gives the same state;
//   - for versioned sinks: an older change never overwrites a newer one;
//   - reads after the stream with other values replace rows, and tombstones
//     without a delete remove rows (kanal verify --repair);
//   - for OffsetStore handlers: LoadOffsets returns the offset after the last
//     applied record, and ResetOffsets (when implemented) moves it.
package consumertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/schemas"
)

// Sink is a handler under test with a way to read what it stored.
type Sink struct {
	Handler consumer.Handler
	// State returns the sink's rows: record key → column → value, each value
	// rendered by Render (NULL as "NULL", bytes as 0x-hex, others with fmt.Sprint).
	State func(ctx context.Context) (map[string]map[string]string, error)
	// Versioned says the sink keeps a per-row version (Record.Seq) and ignores
	// changes older than it: then delivering an old batch late must not regress it.
	Versioned bool
}

// Factory returns a new sink with no rows (and no stored offsets). It is called
// once per check; it should register its own cleanup.
type Factory func(t *testing.T) Sink

// Render renders one change value as State must return it.
func Render(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("0x%x", x)
	case schemas.Decimal:
		return string(x)
	default:
		return fmt.Sprint(x)
	}
}

// RenderRow renders a change's row with Render.
func RenderRow(row map[string]any) map[string]string {
	out := make(map[string]string, len(row))
	for k, v := range row {
		out[k] = Render(v)
	}
	return out
}

const (
	topic      = "kanal.ct.items"
	partitions = 3
	group      = "consumertest"
)

var columns = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "name", Type: "varchar"},
	{Name: "amount", Type: "decimal(10,2)"},
	{Name: "data", Type: "varbinary"},
}

// workload is a generated change stream split in batches per partition.
type workload struct {
	batches [][]consumer.Record // in delivery order; each one partition, offset order
	final   map[string]map[string]string
	ends    map[int32]int64 // partition → next offset after the last record
	// repairs are batches (one per partition) after the stream: reads with
	// changed values and tombstones of keys the source no longer has; repaired
	// is the state they leave, repairEnds the offsets after them.
	repairs    [][]consumer.Record
	repaired   map[string]map[string]string
	repairEnds map[int32]int64
}

func generate(seed uint64, changes, batchSize int) *workload {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	live := map[int64]map[string]any{}
	nextID := int64(1)
	var seq uint64
	byPart := map[int32][]consumer.Record{}
	offsets := map[int32]int64{}
	emit := func(op schemas.Op, before, after map[string]any) {
		seq++
		c := &schemas.Change{Op: op, Seq: seq, Columns: columns, Before: before, After: after,
			Source: schemas.Source{Name: "ct", File: "binlog.000001", Pos: uint32(seq), TsMs: time.Now().UnixMilli(), DB: "ct", Table: "items"}}
		key := c.Key()
		p := schemas.Partition([]byte(key), partitions)
		raw := &kgo.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: []byte(key),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderOp, Value: []byte(op)}, {Key: schemas.HeaderSeq, Value: []byte(strconv.FormatUint(seq, 10))}}}
		raw.Value, _ = c.MarshalJSON()
		byPart[p] = append(byPart[p], consumer.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: key,
			Table: "ct.items", Op: op, Seq: seq, Change: c, Raw: raw, Timestamp: time.Now()})
		offsets[p]++
		if op == schemas.OpDelete {
			traw := &kgo.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: []byte(key),
				Headers: []kgo.RecordHeader{{Key: schemas.HeaderOp, Value: []byte("d")}}}
			byPart[p] = append(byPart[p], consumer.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: key,
				Table: "ct.items", Op: schemas.OpDelete, Seq: seq, Tombstone: true, Raw: traw, Timestamp: time.Now()})
			offsets[p]++
		}
	}
	row := func(id int64) map[string]any {
		r := map[string]any{"id": id, "name": nil, "amount": nil, "data": nil}
		if rng.IntN(5) > 0 {
			r["name"] = []string{"ann", "bob", "comma,name", `back\slash`, "émoji 🎉", ""}[rng.IntN(6)]
		}
		if rng.IntN(5) > 0 {
			r["amount"] = schemas.Decimal(fmt.Sprintf("%d.%02d", rng.IntN(10000)-5000, rng.IntN(100)))
		}
		if rng.IntN(4) > 0 {
			b := make([]byte, rng.IntN(6))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			r["data"] = b
		}
		return r
	}
	pick := func() (int64, bool) {
		if len(live) == 0 {
			return 0, false
		}
		ids := make([]int64, 0, len(live))
		for id := range live {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		return ids[rng.IntN(len(ids))], true
	}
	// A backfill runs through the middle third of the stream: the keys live when
	// it starts are read in key order, a few at a time between the changes, each
	// with its value at that point, as the producer writes reads (op r); a key
	// deleted meanwhile is not read.
	var backfill []int64
	for i := 0; i < changes; i++ {
		if i == changes/3 {
			for id := range live {
				backfill = append(backfill, id)
			}
			sort.Slice(backfill, func(a, b int) bool { return backfill[a] < backfill[b] })
		}
		if len(backfill) > 0 && rng.IntN(3) == 0 {
			for n := 1 + rng.IntN(4); n > 0 && len(backfill) > 0; n-- {
				id := backfill[0]
				backfill = backfill[1:]
				if live[id] != nil {
					emit(schemas.OpRead, nil, live[id])
				}
			}
		}
		switch r := rng.IntN(10); {
		case r < 4 || len(live) < 3:
			id := nextID
			nextID++
			live[id] = row(id)
			emit(schemas.OpCreate, nil, live[id])
		case r < 7:
			id, _ := pick()
			after := row(id)
			emit(schemas.OpUpdate, live[id], after)
			live[id] = after
		case r < 8: // primary-key change: delete + create
			id, _ := pick()
			nid := nextID
			nextID++
			after := row(nid)
			emit(schemas.OpDelete, live[id], nil)
			delete(live, id)
			emit(schemas.OpCreate, nil, after)
			live[nid] = after
		default:
			id, _ := pick()
			emit(schemas.OpDelete, live[id], nil)
			delete(live, id)
		}
	}
	w := &workload{final: map[string]map[string]string{}, ends: map[int32]int64{}}
	for _, r := range live {
		c := &schemas.Change{Columns: columns, After: r, Source: schemas.Source{DB: "ct", Table: "items"}}
		w.final[c.Key()] = RenderRow(r)
	}
	// Repairs after the stream (kanal verify --repair): reads of every other
	// live key with new values (the source changed them behind the pipeline's
	// back), then reads of keys that were deleted, then tombstones without a
	// delete for those keys again (keys the source no longer has).
	mark := map[int32]int{}
	for p := range byPart {
		mark[p] = len(byPart[p])
	}
	ids := make([]int64, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	w.repaired = map[string]map[string]string{}
	for i, id := range ids {
		after := live[id]
		if i%2 == 0 {
			after = row(id)
			emit(schemas.OpRead, nil, after)
		}
		c := &schemas.Change{Columns: columns, After: after, Source: schemas.Source{DB: "ct", Table: "items"}}
		w.repaired[c.Key()] = RenderRow(after)
	}
	var gone []int64
	for id := int64(1); id < nextID && len(gone) < 5; id++ {
		if live[id] == nil {
			gone = append(gone, id)
			emit(schemas.OpRead, nil, row(id))
		}
	}
	for _, id := range gone {
		seq++
		key := string(schemas.AppendKey(nil, "ct", "items", []any{id}))
		p := schemas.Partition([]byte(key), partitions)
		traw := &kgo.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: []byte(key),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderOp, Value: []byte("d")}, {Key: schemas.HeaderSeq, Value: []byte(strconv.FormatUint(seq, 10))}}}
		byPart[p] = append(byPart[p], consumer.Record{Topic: topic, Partition: p, Offset: offsets[p], Key: key,
			Table: "ct.items", Op: schemas.OpDelete, Seq: seq, Tombstone: true, Raw: traw, Timestamp: time.Now()})
		offsets[p]++
	}
	for p := range byPart {
		if rest := byPart[p][mark[p]:]; len(rest) > 0 {
			w.repairs = append(w.repairs, rest)
		}
		byPart[p] = byPart[p][:mark[p]]
	}
	w.repairEnds = map[int32]int64{}
	for p, o := range offsets {
		w.repairEnds[p] = o
	}
	// Interleave the partitions' batches, as concurrent partitions would be.
	cursor := map[int32]int{}
	for more := true; more; {
		more = false
		for p := int32(0); p < partitions; p++ {
			recs := byPart[p][cursor[p]:]
			if len(recs) == 0 {
				continue
			}
			more = true
			n := min(len(recs), 1+rng.IntN(batchSize))
			w.batches = append(w.batches, recs[:n])
			cursor[p] += n
		}
	}
	for p := range byPart {
		if n := len(byPart[p]); n > 0 {
			w.ends[p] = byPart[p][n-1].Offset + 1
		}
	}
	return w
}

func batch(recs []consumer.Record) consumer.Batch {
	return consumer.Batch{Group: group, Topic: recs[0].Topic, Partition: recs[0].Partition, Records: recs}
}

func handle(t *testing.T, s Sink, recs []consumer.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Handler.Handle(ctx, batch(recs)); err != nil {
		t.Fatalf("Handle %s/%d@%d..%d: %v", recs[0].Topic, recs[0].Partition, recs[0].Offset, recs[len(recs)-1].Offset, err)
	}
}

func expectState(t *testing.T, s Sink, want map[string]map[string]string, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := s.State(ctx)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if d := testdiff.Rows(want, got); d != "" {
		t.Fatalf("%s: the sink's state is wrong (%d rows, want %d):\n%s", what, len(got), len(want), d)
	}
}

// Run runs every check against fresh sinks from newSink.
func Run(t *testing.T, newSink Factory) {
	t.Helper()
	w := generate(1, 400, 12)
	t.Run("ApplyOnce", func(t *testing.T) {
		s := newSink(t)
		for _, b := range w.batches {
			handle(t, s, b)
		}
		expectState(t, s, w.final, "after applying every change once")
	})
	t.Run("ApplyTwiceEqualsOnce", func(t *testing.T) {
		s := newSink(t)
		for _, b := range w.batches {
			handle(t, s, b)
			handle(t, s, b)
		}
		expectState(t, s, w.final, "after applying every batch twice")
	})
	t.Run("CrashMidBatchThenReplay", func(t *testing.T) { crashThenReplay(t, newSink(t), w) })
	t.Run("ReadsRepair", func(t *testing.T) {
		// Snapshot reads (op r) are upserts at their sequence: after the stream,
		// reads with other values replace rows (an aggregate counts the row's new
		// contribution instead of its old one), and tombstones without a delete
		// remove keys the source no longer has.
		s := newSink(t)
		for _, b := range w.batches {
			handle(t, s, b)
		}
		expectState(t, s, w.final, "after the stream (a backfill ran through it)")
		for _, b := range w.repairs {
			handle(t, s, b)
		}
		expectState(t, s, w.repaired, "after reads with new values and tombstones of keys the source no longer has")
		for _, b := range w.repairs {
			handle(t, s, b)
		}
		expectState(t, s, w.repaired, "after the repairs were applied twice")
		if s.Versioned {
			for i := len(w.batches) - 1; i >= 0; i -= 4 {
				handle(t, s, w.batches[i])
			}
			expectState(t, s, w.repaired, "after old batches (with older reads) were delivered again")
		}
	})
	t.Run("ReplayFromStart", func(t *testing.T) {
		s := newSink(t)
		for _, b := range w.batches {
			handle(t, s, b)
		}
		if _, ok := s.Handler.(consumer.OffsetStore); ok {
			// An OffsetStore handler is replayed from its own offsets: a replay
			// from the start only happens after ResetOffsets, checked below.
			t.Skip("OffsetStore handler")
		}
		for _, b := range w.batches {
			handle(t, s, b)
		}
		expectState(t, s, w.final, "after a replay of everything")
	})
	t.Run("OlderNeverOverwritesNewer", func(t *testing.T) {
		s := newSink(t)
		if !s.Versioned {
			t.Skip("sink is not versioned")
		}
		for _, b := range w.batches {
			handle(t, s, b)
		}
		// Old batches arrive late (two consumers overlapping after a revoke
		// timeout): none of them may bring an older row version back.
		for i := len(w.batches) - 1; i >= 0; i -= 3 {
			handle(t, s, w.batches[i])
		}
		expectState(t, s, w.final, "after old batches were delivered again out of order")
	})
	t.Run("OffsetsLoadBack", func(t *testing.T) {
		s := newSink(t)
		store, ok := s.Handler.(consumer.OffsetStore)
		if !ok {
			t.Skip("handler does not implement consumer.OffsetStore")
		}
		ctx := context.Background()
		parts := map[string][]int32{topic: {0, 1, 2}}
		got, err := store.LoadOffsets(ctx, group, parts)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[topic]) != 0 {
			t.Fatalf("a new sink has offsets: %v", got)
		}
		for _, b := range w.batches {
			handle(t, s, b)
		}
		got, err = store.LoadOffsets(ctx, group, parts)
		if err != nil {
			t.Fatal(err)
		}
		for p, end := range w.ends {
			if got[topic][p] != end {
				t.Errorf("LoadOffsets: partition %d at %d, want %d (after the last applied record)", p, got[topic][p], end)
			}
		}
		if got, err := store.LoadOffsets(ctx, "another-group", parts); err != nil || len(got[topic]) != 0 {
			t.Errorf("LoadOffsets of another group: %v, %v; offsets must be per group", got, err)
		}
		rs, ok := s.Handler.(consumer.OffsetResetter)
		if !ok {
			return
		}
		reset := map[string]map[int32]int64{topic: {0: 0, 1: 1}}
		if err := rs.ResetOffsets(ctx, group, reset); err != nil {
			t.Fatal(err)
		}
		got, err = store.LoadOffsets(ctx, group, parts)
		if err != nil {
			t.Fatal(err)
		}
		if got[topic][0] != 0 || got[topic][1] != 1 || got[topic][2] != w.ends[2] {
			t.Errorf("after ResetOffsets(0:0, 1:1): %v", got[topic])
		}
	})
}

// crashThenReplay delivers the batches like a Runner that crashes now and then:
// a prefix of a batch is applied, or Handle's context is cancelled while it runs;
// the restarted Runner resumes from the last committed batch boundary (or, for an
// OffsetStore, from the stored offsets).
func crashThenReplay(t *testing.T, s Sink, w *workload) {
	rng := rand.New(rand.NewPCG(7, 8))
	store, _ := s.Handler.(consumer.OffsetStore)
	crashes := 0
	for _, b := range w.batches {
		if rng.IntN(3) == 0 {
			crashes++
			if len(b) > 1 && rng.IntN(2) == 0 {
				handle(t, s, b[:1+rng.IntN(len(b)-1)])
			} else {
				ctx, cancel := context.WithCancel(context.Background())
				stop := time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				_ = s.Handler.Handle(ctx, batch(b)) // may fail: it was cancelled
				stop.Stop()
				cancel()
			}
			resume := b
			if store != nil {
				got, err := store.LoadOffsets(context.Background(), group, map[string][]int32{b[0].Topic: {b[0].Partition}})
				if err != nil {
					t.Fatal(err)
				}
				if off, ok := got[b[0].Topic][b[0].Partition]; ok {
					if off < b[0].Offset || off > b[len(b)-1].Offset+1 {
						t.Fatalf("after a crash in batch %d..%d LoadOffsets says %d", b[0].Offset, b[len(b)-1].Offset, off)
					}
					resume = resume[:0:0]
					for _, r := range b {
						if r.Offset >= off {
							resume = append(resume, r)
						}
					}
				}
			}
			if len(resume) == 0 {
				continue
			}
			handle(t, s, resume)
			continue
		}
		handle(t, s, b)
	}
	expectState(t, s, w.final, fmt.Sprintf("after %d crashes and replays", crashes))
}
