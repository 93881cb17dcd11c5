package producer

import (
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

type pumped struct {
	ev  *replication.BinlogEvent
	err error
}

// eventQueue hands the session the events binlogStream parsed, batch by batch,
// and gives each batch back to the stream once the session has moved past its
// last event (take). The session can look at what is queued (idle).
type eventQueue struct {
	ch      <-chan *eventBatch
	done    <-chan struct{}
	release func(*eventBatch)
	cur     *eventBatch
	i       int // the next event of cur
	// next is a batch received while cur was being handled (by idle, or by the
	// session's own receive); it is taken after cur.
	next  *eventBatch
	timer *time.Timer
	// linger is kafka.flush_idle.
	linger time.Duration
}

// sourceHeartbeat is how often an idle server sends a heartbeat event, and
// sourceSilenceLimit how long the producer waits for any bytes before it gives
// the connection up and reconnects from the committed position.
const (
	sourceHeartbeat    = 10 * time.Second
	sourceSilenceLimit = 3 * sourceHeartbeat
)

// eventQueueSize bounds the events parsed ahead of the session: enough to keep
// the stream reading through a short stall (a Kafka commit takes a few ms, and the
// socket buffers hold more), few enough that parsed events and their decoded rows
// stay small next to max_buffered_bytes (a rows event is at most
// binlog_row_event_max_size, 8 KiB by default, apart from single huge rows).
const eventQueueSize = 512

func newEventQueue(st *binlogStream, linger time.Duration) *eventQueue {
	q := &eventQueue{ch: st.out, done: st.done, release: st.release, timer: time.NewTimer(time.Hour), linger: linger}
	q.timer.Stop()
	return q
}

// take returns the next event already received, without waiting. The event it
// returned before is then done with: its batch goes back to the stream once
// every event of it is.
func (q *eventQueue) take() (pumped, bool) {
	for {
		if b := q.cur; b != nil {
			if q.i < b.n {
				q.i++
				return pumped{ev: b.events[q.i-1].ev}, true
			}
			if b.err != nil {
				return pumped{err: b.err}, true
			}
			q.cur = nil
			q.release(b)
		}
		if q.next == nil {
			return pumped{}, false
		}
		q.cur, q.i, q.next = q.next, 0, nil
	}
}

// put queues a batch received from ch; call it only after take found nothing.
func (q *eventQueue) put(b *eventBatch) { q.next = b }

// pending reports whether an event (or the stream's end) is queued.
func (q *eventQueue) pending() bool {
	return q.next != nil || len(q.ch) > 0 || (q.cur != nil && (q.i < q.cur.n || q.cur.err != nil))
}

// idle reports whether the source has nothing more for now: no event queued and
// none arriving within linger. Under load the session handles events faster than
// they are parsed, so the queue is often empty for a moment in the middle of
// a burst; committing then would end a Kafka transaction every few binlog
// transactions, and each commit stops the session until Kafka has acknowledged
// it (bench row 2: 150 Kafka transactions per 100k rows without the wait, 7
// with 200 µs).
func (q *eventQueue) idle() bool {
	if q.pending() {
		return false
	}
	if q.linger <= 0 {
		return true
	}
	q.timer.Reset(q.linger)
	select {
	case b := <-q.ch:
		q.timer.Stop()
		q.next = b
		return false
	case <-q.timer.C:
		return true
	case <-q.done:
		q.timer.Stop()
		return true
	}
}
