// Package producer reads a MySQL/MariaDB row-based binlog as a replica and writes every
// row change to Kafka exactly once: changes and the source position that covers them
// are committed in one Kafka transaction, and a restarted producer resumes right after
// the last committed position.
package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// Stats are counters a running producer keeps; read them with Producer.Stats.
type Stats struct {
	Changes      atomic.Uint64 // change records written (committed or in the open transaction)
	Transactions atomic.Uint64 // binlog transactions read
	Commits      atomic.Uint64 // Kafka transactions committed
	// Committed is the value Changes had at the last successful Kafka commit: the
	// changes of this process that read_committed consumers can see (a restart
	// after an aborted transaction rewrites, and counts again, what was lost).
	Committed  atomic.Uint64
	Heartbeats atomic.Uint64
	Restarts   atomic.Uint64 // reconnects after a transient error
	// SlowRowsEvents counts rows events of captured tables decoded by go-mysql's
	// generic decoder instead of kanal's own (column types or row images the
	// latter leaves to it, such as BIT, SET, TIME or JSON columns, pre-1970 dates).
	SlowRowsEvents atomic.Uint64
	// CommitNanos is the time spent waiting for Kafka commits (flushing the
	// transaction's records and ending it), during which no binlog event is handled.
	CommitNanos atomic.Int64
}

// Producer captures one source. Create it with New and call Run.
type Producer struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
	// emitHook, set only by tests, runs after each change is handed to Kafka.
	emitHook func(changes uint64)
}

// New validates cfg and returns a producer. A nil logger discards logs.
func New(cfg Config, log *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Producer{cfg: cfg, log: log.With("source", cfg.Source.Name)}, nil
}

// Stats returns the producer's live counters.
func (p *Producer) Stats() *Stats { return &p.stats }

// permanent reports errors that a reconnect cannot fix.
func permanent(err error) bool {
	var rowErr *RowError
	return errors.Is(err, ErrServerConfig) || errors.Is(err, ErrBinlogPurged) || errors.Is(err, ErrNoPrimaryKey) ||
		errors.Is(err, ErrFenced) || errors.Is(err, ErrConfig) || errors.As(err, &rowErr)
}

// Run captures changes until ctx is cancelled (then it commits what it has and
// returns nil) or a permanent error occurs. Transient failures of MySQL or Kafka are
// retried with exponential backoff, each time resuming from the last committed position.
func (p *Producer) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	bo.MaxElapsedTime = 0
	for {
		progressed, err := p.runOnce(ctx)
		if ctx.Err() != nil {
			if err != nil {
				// Nothing is lost: the aborted part is re-read from the last
				// committed position on the next start.
				p.log.Warn("stopped without committing the last transaction", "err", err)
			}
			return nil
		}
		if err == nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		if progressed {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		p.stats.Restarts.Add(1)
		p.log.Warn("capture interrupted; resuming from the last committed position", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

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
	if tm, ok := ev.Event.(*replication.TableMapEvent); ok {
		// Before the next event is parsed: its rows are decoded with this map.
		if err := q.meta.fill(tm); err != nil {
			return err
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

// session is the state of one connection: from a loaded position to an error.
type session struct {
	p      *Producer
	cfg    *Config
	log    *slog.Logger
	w      *writer
	info   *serverInfo
	filter filter

	tables map[uint64]*tableInfo

	file     string           // current binlog file
	boundary schemas.Position // end of the last complete binlog transaction
	inTxn    bool
	txnStart schemas.Position // where the current binlog transaction starts
	txnGTID  string
	// txnMariaGTID is the current transaction's MariaDB GTID when txnMariaOK: the
	// set is updated from it directly rather than by re-parsing txnGTID.
	txnMariaGTID mysql.MariadbGTID
	txnMariaOK   bool
	txnRows      int // changes of the current binlog transaction, written or skipped
	skipRows     int // changes of the first transaction already written before a restart
	gtidSet      mysql.GTIDSet
	seq          uint64
	lastTs       int64
	lastCommit   time.Time
	progressed   bool
	// committedMidTxn: the last committed position points inside a binlog
	// transaction (RowsDone > 0).
	committedMidTxn bool

	keyBuf  []byte
	fpBuf   []byte // scratch for table map fingerprints
	canalID int64

	// Per-record scratch and allocation batching (see emit): converted row images
	// are reused from row to row, record bytes are carved from an arena, and
	// records and headers are allocated in chunks.
	rowA, rowB []schemas.Value
	// scratchA and scratchB hold the text of rowA's and rowB's temporal values.
	scratchA, scratchB []byte
	// anyA and anyB are the images boxed for canal-json, which encodes []any.
	anyA, anyB []any
	valBuf     []byte
	posHdr     []byte // kanal.pos of the rows event being handled
	srcJSON    []byte // schemas.AppendSourcePrefixJSON of the rows event being handled
	formatHdr  []byte
	posText    []byte    // the text of posHdr, which is carved from the arena when first needed
	eventTime  time.Time // the Kafka timestamp of the rows event's records
	arena      arena
	records    blocks[kgo.Record]
	headers    blocks[kgo.RecordHeader]
}

// arena hands out copies of byte slices carved from 64 KiB blocks, so a record's key,
// value and header values cost no allocation of their own (and the garbage collector
// sees a few large pointer-free blocks instead of millions of small objects). After a
// commit the Kafka client has released every record (Flush returns once each
// record's promise has run), so release makes every block reusable: in steady state
// the arena allocates nothing.
type arena struct{ b blocks[byte] }

const arenaBlock = 64 << 10

func (a *arena) copy(b []byte) []byte {
	if len(b) > cap(a.b.cur)-len(a.b.cur) {
		if len(b) > arenaBlock/8 {
			c := bytes.Clone(b)
			return c[:len(c):len(c)]
		}
		a.b.grow()
	}
	n := len(a.b.cur)
	a.b.cur = append(a.b.cur, b...)
	return a.b.cur[n:len(a.b.cur):len(a.b.cur)]
}

// reserve returns an empty slice to append one value to, in place at the end of the
// current block when about twice the expected size is free there; pass the result to
// commit. Should the value outgrow the free space, append moves it to its own array:
// still correct, only not carved from the block.
func (a *arena) reserve(expect int) []byte {
	need := 2*expect + 64
	if need > arenaBlock/8 {
		return make([]byte, 0, need)
	}
	if need > cap(a.b.cur)-len(a.b.cur) {
		a.b.grow()
	}
	return a.b.cur[len(a.b.cur):len(a.b.cur)]
}

// commit takes ownership of a value built on reserve's slice.
func (a *arena) commit(v []byte) []byte {
	free := a.b.cur[len(a.b.cur):cap(a.b.cur)]
	if len(v) > 0 && len(free) >= len(v) && &free[0] == &v[0] {
		a.b.cur = a.b.cur[:len(a.b.cur)+len(v)]
	}
	return v[:len(v):len(v)]
}

// blocks hands out elements of fixed-size blocks and takes them all back at once
// (release), when nothing refers to them any more. Blocks beyond maxFree are left to
// the garbage collector, which bounds what an idle producer keeps.
type blocks[T any] struct {
	cur     []T // the block being filled: len is what is handed out
	used    [][]T
	free    [][]T
	size    int
	maxFree int
}

func (b *blocks[T]) grow() {
	if cap(b.cur) > 0 {
		b.used = append(b.used, b.cur)
	}
	if n := len(b.free); n > 0 {
		b.cur, b.free = b.free[n-1][:0], b.free[:n-1]
		return
	}
	size := b.size
	if size <= 0 { // a zero blocks still works
		size = 256
	}
	b.cur = make([]T, 0, size)
}

// take returns n zeroed elements (capacity n).
func (b *blocks[T]) take(n int) []T {
	if cap(b.cur)-len(b.cur) < n {
		b.grow()
	}
	m := len(b.cur)
	b.cur = b.cur[:m+n]
	return b.cur[m : m+n : m+n]
}

// release takes back everything handed out. Blocks are cleared, so reused
// elements start zeroed and released ones keep nothing alive.
func (b *blocks[T]) release() {
	for _, blk := range b.used {
		if len(b.free) < b.maxFree {
			clear(blk[:cap(blk)])
			b.free = append(b.free, blk)
		}
	}
	clear(b.used)
	b.used = b.used[:0]
	clear(b.cur)
	b.cur = b.cur[:0]
}

// opHeader holds the kanal.op header values; records share these read-only slices.
var opHeader = map[schemas.Op][]byte{
	schemas.OpCreate: []byte(schemas.OpCreate), schemas.OpUpdate: []byte(schemas.OpUpdate),
	schemas.OpDelete: []byte(schemas.OpDelete), schemas.OpRead: []byte(schemas.OpRead),
}

// newRecord returns a zeroed record from a chunk of 256.
func (s *session) newRecord() *kgo.Record { return &s.records.take(1)[0] }

// newHeaders returns n zeroed headers (capacity n) from a chunk of 1024.
func (s *session) newHeaders(n int) []kgo.RecordHeader { return s.headers.take(n) }

// released is called after a commit: the Kafka client holds no record any more,
// so record structs, headers and arena bytes are all reused from here.
func (s *session) released() {
	s.arena.b.release()
	s.records.release()
	s.headers.release()
	s.posHdr = nil // it was carved from the arena
}

// initBlocks sizes the reuse of record memory to what one Kafka transaction
// holds (kafka.flush_records and flush_bytes), tombstones included.
func (s *session) initBlocks() {
	k := &s.cfg.Kafka
	s.arena.b = blocks[byte]{size: arenaBlock, maxFree: k.FlushBytes/arenaBlock + 8}
	s.records = blocks[kgo.Record]{size: 256, maxFree: 2*k.FlushRecords/256 + 4}
	s.headers = blocks[kgo.RecordHeader]{size: 1024, maxFree: 8*k.FlushRecords/1024 + 4}
}

func (p *Producer) runOnce(ctx context.Context) (progressed bool, err error) {
	cfg := &p.cfg
	db, err := openSQL(&cfg.Source)
	if err != nil {
		return false, err
	}
	defer db.Close()
	checkCtx, cancel := context.WithTimeout(ctx, cfg.Source.ConnectTimeout)
	info, err := checkServer(checkCtx, db, &cfg.Source)
	cancel()
	if err != nil {
		return false, err
	}
	w, err := newWriter(&cfg.Kafka, cfg.Source.Name, p.log)
	if err != nil {
		return false, err
	}
	defer w.close()
	if err := w.fence(ctx); err != nil {
		return false, err
	}
	if err := w.ensureInternalTopics(ctx); err != nil {
		return false, err
	}
	pos, err := w.loadPosition(ctx)
	if err != nil {
		return false, err
	}
	files, err := binlogFiles(ctx, db)
	if err != nil {
		return false, err
	}
	if len(files) == 0 {
		return false, fmt.Errorf("%w: %s has no binary logs", ErrServerConfig, cfg.Source.Addr)
	}
	switch {
	case pos != nil:
		found := false
		for _, f := range files {
			found = found || f == pos.File
		}
		if !found {
			return false, &BinlogPurgedError{Source: cfg.Source.Name, Want: *pos, Oldest: files[0]}
		}
		p.log.Info("resuming", "position", pos.String(), "seq", pos.Seq)
	case cfg.Source.Start == "earliest":
		pos = &schemas.Position{File: files[0], Pos: 4}
		p.log.Info("no stored position; starting at the oldest binlog", "position", pos.String())
	default:
		cur, err := currentPosition(ctx, db, info.flavor)
		if err != nil {
			return false, err
		}
		pos = &cur
		p.log.Info("no stored position; starting at the current binlog position", "position", pos.String())
	}
	pos.Source, pos.Flavor, pos.ServerID = cfg.Source.Name, info.flavor, info.serverID

	s := &session{
		p: p, cfg: cfg, log: p.log, w: w, info: info,
		filter:   filter{include: cfg.Tables.Include, exclude: cfg.Tables.Exclude},
		tables:   map[uint64]*tableInfo{},
		file:     pos.File,
		boundary: schemas.Position{File: pos.File, Pos: pos.Pos, GTIDSet: pos.GTIDSet, Seq: pos.Seq},
		skipRows: pos.RowsDone,
		seq:      pos.Seq,
	}
	s.initBlocks()
	if s.gtidSet, err = mysql.ParseGTIDSet(info.flavor, pos.GTIDSet); err != nil {
		s.log.Warn("stored GTID set unreadable; tracking GTIDs from here", "gtid_set", pos.GTIDSet, "err", err)
		s.gtidSet, _ = mysql.ParseGTIDSet(info.flavor, "")
	}
	err = s.stream(ctx)
	return s.progressed, err
}

func (s *session) syncerConfig() (replication.BinlogSyncerConfig, error) {
	host, portStr, err := net.SplitHostPort(s.cfg.Source.Addr)
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: source.addr: %v", ErrConfig, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: source.addr: bad port %q", ErrConfig, portStr)
	}
	return replication.BinlogSyncerConfig{
		ServerID:  s.cfg.Source.ServerID,
		Flavor:    s.info.flavor,
		Host:      host,
		Port:      uint16(port),
		User:      s.cfg.Source.User,
		Password:  s.cfg.Source.Password,
		ParseTime: true,
		// The server sends heartbeats when idle, so a long silence while we wait
		// for it means a dead connection: silenceConn fails the read then (and
		// go-mysql's own per-packet ReadTimeout stays off, see silence.go).
		HeartbeatPeriod:  sourceHeartbeat,
		Dialer:           silenceDialer(sourceSilenceLimit),
		DisableRetrySync: true, // we reconnect ourselves, from the committed position
		Logger:           s.log.With("component", "go-mysql"),
	}, nil
}

func (s *session) stream(ctx context.Context) error {
	scfg, err := s.syncerConfig()
	if err != nil {
		return err
	}
	// Rows of captured tables are decoded by kanal's own decoder, straight into
	// the values it encodes (see rowDecoder).
	scfg.RowsEventDecodeFunc = newRowDecoder(s.filter, &s.p.stats.SlowRowsEvents).decode
	pumpCtx, stopPump := context.WithCancel(ctx)
	q := &eventQueue{ch: make(chan pumped, eventQueueSize), done: pumpCtx.Done(), meta: newTableMetaCache(),
		timer: time.NewTimer(time.Hour), linger: s.cfg.Kafka.FlushIdle}
	q.timer.Stop()
	scfg.SynchronousEventHandler = q
	scfg.TableMapOptionalMetaDecodeFunc = q.meta.decode
	syncer := replication.NewBinlogSyncer(scfg)
	// Deferred in this order so that stopPump runs first: it releases a
	// HandleEvent blocked on a full queue, which Close waits for.
	defer syncer.Close()
	defer stopPump()
	streamer, err := syncer.StartSync(mysql.Position{Name: s.boundary.File, Pos: s.boundary.Pos})
	if err != nil {
		return fmt.Errorf("start binlog sync at %s: %w", s.boundary.String(), err)
	}
	go func() {
		// With a synchronous handler the streamer carries only the error that
		// ends the stream; it follows every event already queued.
		_, err := streamer.GetEvent(pumpCtx)
		if err != nil && pumpCtx.Err() == nil {
			select {
			case q.ch <- pumped{err: err}:
			case <-pumpCtx.Done():
			}
		}
	}()

	var tick <-chan time.Time
	if hb := s.cfg.Source.HeartbeatInterval; hb > 0 {
		t := time.NewTicker(hb)
		defer t.Stop()
		tick = t.C
	}
	s.lastCommit = time.Now()
	for {
		pe, ok := q.take()
		if !ok {
			select {
			case <-ctx.Done():
				return s.shutdown()
			case <-tick:
				if err := s.heartbeat(ctx); err != nil {
					return err
				}
				continue
			case pe = <-q.ch:
			}
		}
		// Events already queued are taken with plain receives rather than a
		// select each (selecting was ~4 % of the producer's CPU); ticks and
		// cancellation get their turn again after at most 128 events.
		for n := 0; ; n++ {
			if ctx.Err() != nil {
				// Stop promptly: the position committed covers only what was handled.
				return s.shutdown()
			}
			if pe.err != nil {
				s.w.abort()
				return s.classifyStreamErr(pe.err)
			}
			if err := s.handle(ctx, pe.ev, q.idle); err != nil {
				s.w.abort()
				return err
			}
			if n == 127 {
				break
			}
			if pe, ok = q.take(); ok {
				continue
			}
			if len(q.ch) == 0 {
				break
			}
			pe = <-q.ch
		}
	}
}

// classifyStreamErr turns the server's "purged" answer into BinlogPurgedError.
func (s *session) classifyStreamErr(err error) error {
	var me *mysql.MyError
	if errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
		oldest := "unknown"
		if db, e := openSQL(&s.cfg.Source); e == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if files, e := binlogFiles(ctx, db); e == nil && len(files) > 0 {
				oldest = files[0]
			}
			cancel()
			db.Close()
		}
		if strings.Contains(strings.ToLower(me.Message), "purged") || strings.Contains(me.Message, "Could not find first log") {
			return &BinlogPurgedError{Source: s.cfg.Source.Name, Want: s.boundary, Oldest: oldest}
		}
	}
	return fmt.Errorf("read binlog after %s: %w", s.boundary.String(), err)
}

// shutdown commits what is already written (a clean stop loses nothing and leaves no
// open transaction behind).
func (s *session) shutdown() error {
	if !s.w.inTxn {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.commit(ctx); err != nil {
		s.w.abort()
		return fmt.Errorf("commit on shutdown: %w", err)
	}
	s.log.Info("committed on shutdown", "position", s.currentPosition().String())
	return nil
}

// currentPosition is where a restart must resume to skip exactly what was written.
func (s *session) currentPosition() schemas.Position {
	pos := s.boundary
	if s.inTxn {
		pos = s.txnStart
		pos.RowsDone = s.txnRows
		pos.GTID = s.txnGTID
	}
	pos.Source, pos.Flavor, pos.ServerID = s.cfg.Source.Name, s.info.flavor, s.info.serverID
	pos.GTIDSet = s.gtidSet.String()
	pos.Seq = s.seq
	pos.TsMs = s.lastTs
	return pos
}

func (s *session) commit(ctx context.Context) error {
	pos := s.currentPosition()
	// A commit already under way finishes even when shutdown was requested: what
	// was handed to Kafka becomes visible, and the position moves with it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Kafka.TransactionTimeout)
	defer cancel()
	began := time.Now()
	err := s.w.commit(ctx, pos)
	s.p.stats.CommitNanos.Add(int64(time.Since(began)))
	if err != nil {
		return err
	}
	s.released()
	s.committedMidTxn = pos.RowsDone > 0
	s.p.stats.Committed.Store(s.p.stats.Changes.Load())
	s.p.stats.Commits.Add(1)
	s.lastCommit = time.Now()
	s.progressed = true
	return nil
}

func (s *session) heartbeat(ctx context.Context) error {
	if s.w.inTxn || s.inTxn || time.Since(s.lastCommit) < s.cfg.Source.HeartbeatInterval {
		return nil
	}
	pos := s.currentPosition()
	hb := schemas.Heartbeat{Source: s.cfg.Source.Name, TsMs: time.Now().UnixMilli(), SourceTsMs: pos.TsMs, File: pos.File, Pos: pos.Pos}
	val, _ := jsonMarshal(hb)
	if err := s.w.produce(ctx, &kgo.Record{Topic: HeartbeatsTopic(s.cfg.Kafka.TopicPrefix), Key: []byte(s.cfg.Source.Name), Value: val}); err != nil {
		return err
	}
	s.p.stats.Heartbeats.Add(1)
	return s.commit(ctx)
}

func (s *session) beginTxn() {
	if s.inTxn {
		return
	}
	s.inTxn = true
	s.txnStart = s.boundary
	s.txnRows = 0
	s.txnGTID = ""
	s.txnMariaOK = false
}

// mariaGTIDString formats a MariaDB GTID as MariadbGTID.String does
// ("domain-server-seq", "" for the zero GTID), without fmt: it runs once per
// transaction, and most transactions are one row.
func mariaGTIDString(g *mysql.MariadbGTID) string {
	if g.DomainID == 0 && g.ServerID == 0 && g.SequenceNumber == 0 {
		return ""
	}
	var buf [64]byte
	b := strconv.AppendUint(buf[:0], uint64(g.DomainID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(g.ServerID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, g.SequenceNumber, 10)
	return string(b)
}

// endTxn marks the end of a binlog transaction at the given end position and
// commits the Kafka transaction when a flush limit is reached or no more events are
// waiting (so an idle source's changes are visible at once, and a busy one's are
// batched).
func (s *session) endTxn(ctx context.Context, endPos uint32, idle func() bool) error {
	if s.inTxn && s.txnGTID != "" {
		var err error
		if ms, ok := s.gtidSet.(*mysql.MariadbGTIDSet); ok && s.txnMariaOK {
			err = ms.AddSet(&s.txnMariaGTID) // what Update does after parsing the text
		} else {
			err = s.gtidSet.Update(s.txnGTID)
		}
		if err != nil {
			s.log.Warn("cannot track GTID", "gtid", s.txnGTID, "err", err)
		}
	}
	s.inTxn = false
	s.skipRows = 0
	s.boundary = schemas.Position{File: s.file, Pos: endPos}
	if len(s.tables) > maxCachedTables {
		clear(s.tables) // between transactions: the next one repeats its table maps
	}
	s.p.stats.Transactions.Add(1)
	if !s.w.inTxn {
		if s.committedMidTxn && idle() {
			// The transaction's last rows went out in a mid-transaction commit;
			// move the stored position past its end now rather than at the next
			// heartbeat, so a restart does not re-read it.
			return s.commit(ctx)
		}
		return nil
	}
	k := &s.cfg.Kafka
	if s.w.records >= k.FlushRecords || s.w.bytes >= k.FlushBytes || time.Since(s.w.began) >= k.FlushInterval || idle() {
		return s.commit(ctx)
	}
	return nil
}

func (s *session) handle(ctx context.Context, ev *replication.BinlogEvent, idle func() bool) error {
	h := ev.Header
	if h.Timestamp != 0 {
		s.lastTs = int64(h.Timestamp) * 1000
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		s.file = string(e.NextLogName)
		if !s.inTxn {
			s.boundary = schemas.Position{File: s.file, Pos: uint32(e.Position)}
		}
	case *replication.MariadbGTIDEvent:
		s.beginTxn()
		s.txnGTID = mariaGTIDString(&e.GTID)
		s.txnMariaGTID, s.txnMariaOK = e.GTID, true
	case *replication.GTIDEvent:
		s.beginTxn()
		if !bytes.Equal(e.SID, make([]byte, len(e.SID))) {
			if next, err := e.GTIDNext(); err == nil {
				s.txnGTID = next.String()
			}
		}
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		upper := strings.ToUpper(truncate(q, 20))
		switch {
		case upper == "BEGIN":
			s.beginTxn()
		case upper == "COMMIT":
			if s.inTxn {
				return s.endTxn(ctx, h.LogPos, idle)
			}
		case s.inTxn && (strings.HasPrefix(upper, "SAVEPOINT") || strings.HasPrefix(upper, "ROLLBACK TO")):
			// Statements inside a transaction; the rows around them are what counts.
		default:
			// DDL commits on its own. Table maps after it describe the new shape,
			// so drop the cached ones.
			s.log.Info("ddl", "schema", string(e.Schema), "query", truncate(q, 200), "pos", s.file+":"+strconv.FormatUint(uint64(h.LogPos), 10))
			clear(s.tables)
			s.beginTxn()
			return s.endTxn(ctx, h.LogPos, idle)
		}
	case *replication.XIDEvent:
		return s.endTxn(ctx, h.LogPos, idle)
	case *replication.TableMapEvent:
		return s.tableMap(ctx, e)
	case *replication.RowsEvent:
		return s.rows(ctx, ev, e)
	case *replication.TransactionPayloadEvent:
		// MySQL 8's binlog_transaction_compression wraps a whole transaction in
		// one event. Unpacking it is not built (and untested: no MySQL here);
		// stopping is better than skipping its rows silently.
		return fmt.Errorf("%w: %s: compressed transaction payload at %s: kanal cannot read transactions written with binlog_transaction_compression=ON; "+
			"set it OFF on the source, then either start after the compressed transactions (kanal positions reset, source.start: current) "+
			"and rebuild the targets from a fresh copy of the tables",
			ErrServerConfig, s.cfg.Source.Name, s.posString(ev))
	}
	return nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (s *session) tableMap(ctx context.Context, tm *replication.TableMapEvent) error {
	// Every transaction repeats its table maps: compare in a reused buffer.
	s.fpBuf = appendTableFingerprint(s.fpBuf[:0], tm)
	if ti, ok := s.tables[tm.TableID]; ok && bytes.Equal(ti.fingerprint, s.fpBuf) {
		return nil
	}
	db, table := string(tm.Schema), string(tm.Table)
	if !s.filter.match(db, table) {
		s.tables[tm.TableID] = &tableInfo{skip: true, fingerprint: bytes.Clone(s.fpBuf)}
		return nil
	}
	ti, err := newTableInfo(tm)
	if err != nil {
		return err
	}
	if ti.keyFallback && s.cfg.Source.NoPrimaryKey == "refuse" {
		return fmt.Errorf("%w: %s.%s (source.no_primary_key is refuse: add a primary key, exclude the table, or set no_primary_key: all-columns)",
			ErrNoPrimaryKey, db, table)
	}
	ti.topic = TopicName(s.cfg.Kafka.TopicPrefix, db, table)
	if err := s.w.ensureTableTopic(ctx, ti.topic); err != nil {
		return err
	}
	s.tables[tm.TableID] = ti
	return nil
}

func (s *session) rows(ctx context.Context, ev *replication.BinlogEvent, re *replication.RowsEvent) error {
	ti := s.tables[re.TableID]
	if ti == nil {
		return &RowError{Table: fmt.Sprintf("%s.%s", re.Table.Schema, re.Table.Table), Pos: s.posString(ev), Err: errors.New("rows event without a preceding table map")}
	}
	if ti.skip {
		return nil
	}
	if !s.inTxn {
		s.beginTxn()
	}
	src := schemas.Source{
		Name: s.cfg.Source.Name, ServerID: ev.Header.ServerID, File: s.file, Pos: ev.Header.LogPos,
		GTID: s.txnGTID, TsMs: int64(ev.Header.Timestamp) * 1000, DB: ti.db, Table: ti.table,
	}
	// The kanal.pos header is the same for every row of the event.
	s.posText = strconv.AppendUint(append(append(s.posText[:0], src.File...), ':'), uint64(src.Pos), 10)
	s.posHdr = nil
	// One timestamp for the event's records: the client would read the clock
	// for each record otherwise (4 % of the producer's CPU).
	s.eventTime = time.Now()
	s.srcJSON = schemas.AppendSourcePrefixJSON(s.srcJSON[:0], &src)
	images := len(re.Rows)
	dr, fast := decodedRowsOf(re)
	if fast {
		// Decoded by rowDecoder; its values are encoded before it is reused, and
		// the event must not point at it afterwards.
		defer func() {
			re.Rows = nil
			dr.release()
		}()
		if dr.ncols != len(ti.decoders) {
			return &RowError{Table: ti.db + "." + ti.table, Pos: s.posString(ev),
				Err: fmt.Errorf("row has %d values, table map has %d columns", dr.ncols, len(ti.decoders))}
		}
		images = dr.images
	}
	image := func(i int, buf *[]schemas.Value, scratch *[]byte) ([]schemas.Value, error) {
		if fast {
			return dr.image(i), nil
		}
		return s.convert(ti, re.Rows[i], ev, i, buf, scratch)
	}
	switch ev.Header.EventType {
	// MariaDB's log_bin_compress writes the *_COMPRESSED_EVENT_V1 types; go-mysql
	// decompresses them into the same rows (they were silently skipped before).
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		for i := range images {
			after, err := image(i, &s.rowA, &s.scratchA)
			if err != nil {
				return err
			}
			if err := s.emit(ctx, ti, &src, schemas.OpCreate, nil, after); err != nil {
				return err
			}
		}
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		for i := range images {
			before, err := image(i, &s.rowA, &s.scratchA)
			if err != nil {
				return err
			}
			if err := s.emit(ctx, ti, &src, schemas.OpDelete, before, nil); err != nil {
				return err
			}
		}
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.PARTIAL_UPDATE_ROWS_EVENT, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1:
		for i := 0; i+1 < images; i += 2 {
			before, err := image(i, &s.rowA, &s.scratchA)
			if err != nil {
				return err
			}
			after, err := image(i+1, &s.rowB, &s.scratchB)
			if err != nil {
				return err
			}
			if s.sameKey(ti, before, after) {
				if err := s.emit(ctx, ti, &src, schemas.OpUpdate, before, after); err != nil {
					return err
				}
				continue
			}
			// A key change moves the row: delete the old key (with its tombstone)
			// then create the new one, so no key-based sink keeps the old row.
			if err := s.emit(ctx, ti, &src, schemas.OpDelete, before, nil); err != nil {
				return err
			}
			if err := s.emit(ctx, ti, &src, schemas.OpCreate, nil, after); err != nil {
				return err
			}
		}
	}
	return nil
}

// boxRow returns row boxed into *buf (nil for a nil row), for encoders that take
// []any.
func boxRow(buf *[]any, row []schemas.Value) []any {
	if row == nil {
		return nil
	}
	if cap(*buf) < len(row) {
		*buf = make([]any, len(row))
	}
	out := (*buf)[:len(row)]
	for i, v := range row {
		out[i] = v.Any()
	}
	return out
}

func (s *session) posString(ev *replication.BinlogEvent) string {
	return s.file + ":" + strconv.FormatUint(uint64(ev.Header.LogPos), 10)
}

// convert decodes one row image into *buf, with the text of temporal values in
// *scratch (both reused from row to row: the result is valid until the next convert
// into the same buffers).
func (s *session) convert(ti *tableInfo, row []any, ev *replication.BinlogEvent, i int, buf *[]schemas.Value, scratch *[]byte) ([]schemas.Value, error) {
	if len(row) != len(ti.decoders) {
		return nil, &RowError{Table: ti.db + "." + ti.table, Pos: s.posString(ev), Row: i,
			Err: fmt.Errorf("row has %d values, table map has %d columns", len(row), len(ti.decoders))}
	}
	if cap(*buf) < len(row) {
		*buf = make([]schemas.Value, len(row))
	}
	out := (*buf)[:len(row)]
	*scratch = (*scratch)[:0]
	for c, v := range row {
		x, err := ti.decoders[c].decode(v, scratch)
		if err != nil {
			return nil, &RowError{Table: ti.db + "." + ti.table, Pos: s.posString(ev), Row: i,
				Err: fmt.Errorf("column %s: %w", ti.columns[c].Name, err)}
		}
		out[c] = x
	}
	return out, nil
}

func (s *session) key(ti *tableInfo, row []schemas.Value) []byte {
	s.valBuf = schemas.AppendKeyValues(s.valBuf[:0], ti.db, ti.table, row, ti.pk)
	return s.arena.copy(s.valBuf)
}

func (s *session) sameKey(ti *tableInfo, a, b []schemas.Value) bool {
	s.keyBuf = s.keyBuf[:0]
	for _, c := range ti.pk {
		s.keyBuf = schemas.AppendKeyComponent(s.keyBuf, a[c])
		s.keyBuf = append(s.keyBuf, ',')
	}
	n := len(s.keyBuf)
	for _, c := range ti.pk {
		s.keyBuf = schemas.AppendKeyComponent(s.keyBuf, b[c])
		s.keyBuf = append(s.keyBuf, ',')
	}
	return bytes.Equal(s.keyBuf[:n], s.keyBuf[n:])
}

// emit writes one change (and its tombstone) unless a previous run already did, then
// commits mid-transaction when the open Kafka transaction has grown past the limits.
func (s *session) emit(ctx context.Context, ti *tableInfo, src *schemas.Source, op schemas.Op, before, after []schemas.Value) error {
	idx := s.txnRows
	s.txnRows++
	if idx < s.skipRows {
		return nil // written and committed before the restart
	}
	s.seq++
	src.Row = idx
	env := schemas.Envelope{Op: op, Seq: s.seq, Source: src, Columns: ti.columns, ColumnsJSON: ti.columnsJSON, ColumnKeys: ti.columnKeys,
		KeyFallback: ti.keyFallback}
	row := after
	if row == nil {
		row = before
	}
	// Allocation per record is what dominated the producer's profile (docs/bench.md):
	// the key and value are encoded into scratch buffers and copied into the arena,
	// header values are shared or carved from the arena, and records and header
	// slices come from chunks.
	key := s.key(ti, row)
	format := s.cfg.Kafka.Format
	// The value is encoded straight into the arena's free space.
	dst := s.arena.reserve(ti.lastValueLen)
	if format == schemas.FormatCanalJSON {
		s.canalID++
		env.Before, env.After = boxRow(&s.anyA, before), boxRow(&s.anyB, after)
		dst = env.AppendCanalJSON(dst, s.canalID, time.Now().UnixMilli())
		clear(s.anyA) // the boxed copies are garbage once encoded
		clear(s.anyB)
	} else {
		dst = env.AppendJSONValues(dst, s.srcJSON, before, after)
	}
	value := s.arena.commit(dst)
	ti.lastValueLen = len(value)
	if s.formatHdr == nil {
		s.formatHdr = []byte(format)
	}
	opHdr := opHeader[op]
	if opHdr == nil {
		opHdr = []byte(op)
	}
	if s.posHdr == nil { // a new rows event, or a commit released the last copy
		s.posHdr = s.arena.copy(s.posText)
	}
	headers := s.newHeaders(4)
	headers[0] = kgo.RecordHeader{Key: HeaderOp, Value: opHdr}
	headers[1] = kgo.RecordHeader{Key: HeaderPos, Value: s.posHdr}
	headers[2] = kgo.RecordHeader{Key: HeaderSeq, Value: s.arena.copy(strconv.AppendUint(s.valBuf[:0], s.seq, 10))}
	headers[3] = kgo.RecordHeader{Key: HeaderFormat, Value: s.formatHdr}
	rec := s.newRecord()
	rec.Topic, rec.Key, rec.Value, rec.Headers, rec.Timestamp = ti.topic, key, value, headers, s.eventTime
	if err := s.w.produce(ctx, rec); err != nil {
		return err
	}
	if op == schemas.OpDelete && s.cfg.Kafka.Tombstones {
		tomb := s.newRecord()
		tomb.Topic, tomb.Key, tomb.Headers, tomb.Timestamp = ti.topic, key, headers[:3:3], s.eventTime // op, pos and seq: the delete's version, for sinks
		if err := s.w.produce(ctx, tomb); err != nil {
			return err
		}
	}
	n := s.p.stats.Changes.Add(1)
	if s.p.emitHook != nil {
		s.p.emitHook(n)
	}
	k := &s.cfg.Kafka
	if s.w.records >= k.FlushRecords || s.w.bytes >= k.FlushBytes {
		return s.commit(ctx)
	}
	return nil
}
