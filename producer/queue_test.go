package producer

import (
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// testQueue is an eventQueue fed by hand: batches are sent on ch, and released
// ones are collected.
type testQueue struct {
	*eventQueue
	ch       chan *eventBatch
	done     chan struct{}
	released []uint64
}

func newTestQueue(linger time.Duration) *testQueue {
	tq := &testQueue{ch: make(chan *eventBatch, 4), done: make(chan struct{})}
	tq.eventQueue = &eventQueue{ch: tq.ch, done: tq.done, timer: time.NewTimer(time.Hour), linger: linger,
		release: func(b *eventBatch) { tq.released = append(tq.released, b.seq) }}
	tq.timer.Stop()
	return tq
}

// batchOf returns a batch of XID events at the given positions.
func batchOf(seq uint64, pos ...uint32) *eventBatch {
	b := &eventBatch{seq: seq, events: make([]streamEvent, len(pos)), n: len(pos)}
	for i, p := range pos {
		b.events[i].ev = &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: p}, Event: &replication.XIDEvent{}}
	}
	return b
}

// idle commits at once when nothing can come (linger 0), waits for an event that
// is on its way, and hands that event to the session before anything else.
func TestEventQueueIdle(t *testing.T) {
	q := newTestQueue(0)
	if !q.idle() {
		t.Error("linger 0, empty queue: not idle")
	}
	q.ch <- batchOf(1, 1)
	if q.idle() {
		t.Error("an event queued: idle")
	}

	q = newTestQueue(time.Minute)
	go func() {
		time.Sleep(10 * time.Millisecond)
		q.ch <- batchOf(1, 2)
	}()
	began := time.Now()
	if q.idle() {
		t.Fatal("an event arrived within the linger: idle")
	}
	if waited := time.Since(began); waited > 30*time.Second {
		t.Fatalf("idle waited %v for an event that came after 10ms", waited)
	}
	pe, ok := q.take()
	if !ok || pe.ev.Header.LogPos != 2 {
		t.Fatalf("take after idle: %v %v, want the event idle received", ok, pe.ev)
	}
	if _, ok := q.take(); ok {
		t.Fatal("take returned the same event twice")
	}

	q = newTestQueue(20 * time.Millisecond)
	if !q.idle() {
		t.Error("no event within the linger: not idle")
	}

	// A stopping session is idle at once.
	q = newTestQueue(time.Minute)
	close(q.done)
	if !q.idle() {
		t.Error("stopped: not idle")
	}
}

// take hands out events in order, gives a batch back only once the session has
// moved past its last event (its memory is then reused), and ends with the
// stream's error.
func TestEventQueueTakeReleases(t *testing.T) {
	q := newTestQueue(0)
	q.put(batchOf(1, 10, 11))
	next := func(want uint32) {
		t.Helper()
		pe, ok := q.take()
		if !ok || pe.err != nil || pe.ev.Header.LogPos != want {
			t.Fatalf("take: %v %+v, want the event at %d", ok, pe, want)
		}
	}
	next(10)
	next(11)
	if len(q.released) != 0 {
		t.Fatalf("batch released while its last event is being handled: %v", q.released)
	}
	if _, ok := q.take(); ok {
		t.Fatal("take: an event after the last one")
	}
	if len(q.released) != 1 || q.released[0] != 1 {
		t.Fatalf("released %v, want batch 1 once the session moved past it", q.released)
	}
	if q.pending() {
		t.Fatal("pending with nothing queued")
	}
	end := batchOf(2, 12)
	end.err = errStreamStopped
	q.ch <- end
	if !q.pending() {
		t.Fatal("not pending with a batch in the channel")
	}
	q.put(<-q.ch)
	next(12)
	if pe, ok := q.take(); !ok || pe.err != errStreamStopped {
		t.Fatalf("take after the last event of the last batch: %v %+v, want the stream's error", ok, pe)
	}
}
