package producer

import (
	"errors"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

func newTestQueue(linger time.Duration) (*eventQueue, chan struct{}) {
	done := make(chan struct{})
	q := &eventQueue{ch: make(chan pumped, 4), done: done, meta: newTableMetaCache(), timer: time.NewTimer(time.Hour), linger: linger}
	q.timer.Stop()
	return q, done
}

// idle commits at once when nothing can come (linger 0), waits for an event that
// is on its way, and hands that event to the session before anything else.
func TestEventQueueIdle(t *testing.T) {
	ev := func(pos uint32) *replication.BinlogEvent {
		return &replication.BinlogEvent{Header: &replication.EventHeader{LogPos: pos}, Event: &replication.XIDEvent{}}
	}

	q, _ := newTestQueue(0)
	if !q.idle() {
		t.Error("linger 0, empty queue: not idle")
	}
	if err := q.HandleEvent(ev(1)); err != nil {
		t.Fatal(err)
	}
	if q.idle() {
		t.Error("an event queued: idle")
	}

	q, _ = newTestQueue(time.Minute)
	go func() {
		time.Sleep(10 * time.Millisecond)
		_ = q.HandleEvent(ev(2))
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

	q, _ = newTestQueue(20 * time.Millisecond)
	if !q.idle() {
		t.Error("no event within the linger: not idle")
	}

	// A stopping session is idle at once, and go-mysql's handler stops waiting.
	q, done := newTestQueue(time.Minute)
	close(done)
	if !q.idle() {
		t.Error("stopped: not idle")
	}
	for len(q.ch) < cap(q.ch) {
		q.ch <- pumped{ev: ev(3)}
	}
	if err := q.HandleEvent(ev(4)); !errors.Is(err, errStreamStopped) {
		t.Errorf("HandleEvent on a full queue of a stopped session: %v, want errStreamStopped", err)
	}
}
