package producer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/schemas"
)

// Progress is where a producer stands, as metrics, status records and the
// progress log show it. Read it with Producer.Progress.
type Progress struct {
	// Streaming is true while a binlog connection is open and being read.
	Streaming bool
	// ReadFile and ReadPos are the end of the last binlog event handled.
	ReadFile string
	ReadPos  uint32
	// ReadTs is the source timestamp of the last binlog event handled.
	ReadTs time.Time
	// CaughtUpAt is the last time the producer knew it had read everything
	// the server had written: the server's end at a poll (SHOW BINARY LOGS)
	// was already read, or the server sent a heartbeat (it does only when it
	// has nothing else to send).
	CaughtUpAt time.Time
	// Committed is the last position committed to Kafka by this process.
	Committed   *schemas.Position
	CommittedAt time.Time
	// PolledAt is when the source's binlog files were last listed; the fields
	// below are from that listing and are -1 before the first one.
	PolledAt time.Time
	// BytesBehind is the binlog the server had written beyond ReadFile:ReadPos.
	BytesBehind int64
	// RetentionMarginFiles is how many binlog files on the server are older
	// than the committed position's; RetentionMarginBytes is their size.
	RetentionMarginFiles int
	RetentionMarginBytes int64
	// Binlogs is the number of binlog files on the server.
	Binlogs int
}

// Lag is now minus the source time up to which the binlog has been read:
// the later of the last event's timestamp and the last time the producer knew
// it was caught up, so that an idle source does not look ever further behind.
// ok is false when neither is known.
func (pr Progress) Lag(now time.Time) (lag time.Duration, ok bool) {
	t := pr.ReadTs
	if pr.CaughtUpAt.After(t) {
		t = pr.CaughtUpAt
	}
	if t.IsZero() {
		return 0, false
	}
	return max(0, now.Sub(t)), true
}

// live is the part of the session's state that others read while it runs.
// The position of each event is stored without a lock (it is the hot path);
// the rest changes at most once per commit, rotation or poll.
type live struct {
	pos     atomic.Uint32 // end of the last event handled, in mu.file
	tsMs    atomic.Int64  // source timestamp of the last event with one
	binlogB atomic.Uint64 // bytes of binlog events read

	mu        sync.Mutex
	streaming bool
	file      string
	caughtUp  time.Time
	committed *schemas.Position
	commitAt  time.Time
	poll      binlogPoll
}

// binlogPoll is what the last listing of the source's binlog files showed.
type binlogPoll struct {
	at                   time.Time
	bytesBehind          int64
	marginFiles, binlogs int
	marginBytes          int64
}

func newLive() *live {
	return &live{poll: binlogPoll{bytesBehind: -1, marginFiles: -1, marginBytes: -1}}
}

func (l *live) setStreaming(on bool, file string, pos uint32) {
	l.mu.Lock()
	l.streaming = on
	if on {
		l.file = file
		l.pos.Store(pos)
	}
	l.mu.Unlock()
}

// rotate moves the read position to the start of the next binlog file.
func (l *live) rotate(file string, pos uint32) {
	l.mu.Lock()
	l.file = file
	l.pos.Store(pos)
	l.mu.Unlock()
}

func (l *live) caughtUpNow() {
	l.mu.Lock()
	l.caughtUp = time.Now()
	l.mu.Unlock()
}

func (l *live) committedAt(pos schemas.Position) {
	l.mu.Lock()
	l.committed = &pos
	l.commitAt = time.Now()
	l.mu.Unlock()
}

func (l *live) snapshot() Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	pr := Progress{
		Streaming: l.streaming, ReadFile: l.file, ReadPos: l.pos.Load(), CaughtUpAt: l.caughtUp,
		CommittedAt: l.commitAt, PolledAt: l.poll.at, BytesBehind: l.poll.bytesBehind,
		RetentionMarginFiles: l.poll.marginFiles, RetentionMarginBytes: l.poll.marginBytes, Binlogs: l.poll.binlogs,
	}
	if ts := l.tsMs.Load(); ts > 0 {
		pr.ReadTs = time.UnixMilli(ts)
	}
	if l.committed != nil {
		c := *l.committed
		pr.Committed = &c
	}
	return pr
}

// event records that the session handled ev (called for every binlog event).
func (l *live) event(h *replication.EventHeader, lastTsMs int64) {
	l.binlogB.Add(uint64(h.EventSize))
	switch h.EventType {
	case replication.HEARTBEAT_EVENT, replication.HEARTBEAT_LOG_EVENT_V2:
		// The server sends one only when it has sent everything it has.
		l.caughtUpNow()
		return
	}
	if h.LogPos != 0 {
		l.pos.Store(h.LogPos)
	}
	if lastTsMs != 0 && h.Timestamp != 0 {
		l.tsMs.Store(lastTsMs)
	}
}

// start resets the read position to where a session begins and records the
// position it resumes from as the committed one.
func (l *live) start(pos schemas.Position) {
	l.mu.Lock()
	l.file = pos.File
	l.pos.Store(pos.Pos)
	l.committed = &pos
	l.mu.Unlock()
}
