package producer

import (
	"errors"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

type pumped struct {
	ev  *replication.BinlogEvent
	err error
}

// eventQueue carries binlog events from go-mysql's reading goroutine to the
// session. go-mysql hands each parsed event to HandleEvent (its
// SynchronousEventHandler), so an event changes goroutines once, not twice
// (through go-mysql's own channel and then a pump goroutine's), and the session
// can look at what is queued (idle).
type eventQueue struct {
	ch   chan pumped
	done <-chan struct{}
	meta *tableMetaCache
	// next is an event idle received while waiting; the session takes it first.
	next  *pumped
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
// go-mysql reading through a short stall (a Kafka commit takes a few ms, and the
// socket buffers hold more), few enough that parsed events and their decoded rows
// stay small next to max_buffered_bytes (a rows event is at most
// binlog_row_event_max_size, 8 KiB by default, apart from single huge rows).
const eventQueueSize = 512

// errStreamStopped ends go-mysql's stream when the session stopped reading.
var errStreamStopped = errors.New("binlog stream stopped")

// HandleEvent is go-mysql's SynchronousEventHandler.
func (q *eventQueue) HandleEvent(ev *replication.BinlogEvent) error {
	switch e := ev.Event.(type) {
	case *replication.TableMapEvent:
		// Before the next event is parsed: its rows are decoded with this map.
		if err := q.meta.fill(e); err != nil {
			return err
		}
	case *replication.TransactionPayloadEvent:
		// Its rows were parsed with the table maps still unfilled, so they took
		// go-mysql's decoder (which needs none of the metadata); the session
		// needs it to name and decode the columns.
		for _, inner := range e.Events {
			if tm, ok := inner.Event.(*replication.TableMapEvent); ok {
				if err := q.meta.fill(tm); err != nil {
					return err
				}
			}
		}
	}
	select {
	case q.ch <- pumped{ev: ev}:
		return nil
	case <-q.done:
		return errStreamStopped
	}
}

// take returns the event idle received, if any.
func (q *eventQueue) take() (pumped, bool) {
	if q.next == nil {
		return pumped{}, false
	}
	pe := *q.next
	q.next = nil
	return pe, true
}

// idle reports whether the source has nothing more for now: no event queued and
// none arriving within linger. Under load the session handles events faster than
// go-mysql parses them, so the queue is often empty for a moment in the middle of
// a burst; committing then would end a Kafka transaction every few binlog
// transactions, and each commit stops the session until Kafka has acknowledged
// it (bench row 2: 150 Kafka transactions per 100k rows without the wait, 7
// with 200 µs).
func (q *eventQueue) idle() bool {
	if q.next != nil || len(q.ch) > 0 {
		return false
	}
	if q.linger <= 0 {
		return true
	}
	q.timer.Reset(q.linger)
	select {
	case pe := <-q.ch:
		q.timer.Stop()
		q.next = &pe
		return false
	case <-q.timer.C:
		return true
	case <-q.done:
		q.timer.Stop()
		return true
	}
}
