package producer

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

// Backfills (snapshots) run inside the session, between binlog transactions, with
// the watermark algorithm of DBLog and Flink CDC, read-only:
//
//  1. Between two binlog transactions the session opens a chunk's window: it notes
//     the stream's position (the boundary) and its change sequence, and from then
//     on remembers the keys of the table that the stream changes.
//  2. The snapshot reader, on its own connection, starts a transaction WITH
//     CONSISTENT SNAPSHOT and learns a binlog position after every transaction
//     the snapshot sees, such that every transaction before the window's boundary
//     is in the snapshot: MariaDB's binlog_snapshot_file/position, or (MySQL) the
//     binlog's end after a watermark row committed just before the snapshot
//     (snapshot_watermark.go). It then SELECTs the next chunk in key order.
//  3. Once the stream has handled everything up to the snapshot's position, the
//     session emits the chunk's rows as reads ("r"), between two binlog
//     transactions, except those whose key the stream changed since the window
//     opened: their changes are in the stream after the snapshot or carry the
//     same row (DBLog drops them the same way).
//
// Every read is thus emitted at a point of the stream where its value is the
// row's current value, and gets the next sequence number: version-guarded sinks
// order it correctly against the live changes. The backfill's progress (the last
// key done) is part of the position committed with the records, so a restart
// continues with the next chunk and emits no row twice. A DDL that names the
// table while a window is open discards the chunk; a chunk whose table shape
// differs from the backfill's restarts the backfill from the first row.
//
// Why MariaDB's snapshot position by default rather than a watermark table
// written by the producer (DBLog, Debezium's signal table): it needs no write
// access to the source and no table in its binlog; MySQL has no such position,
// so there the table is used (source.signal_table). Why not plain SHOW MASTER
// STATUS positions around the SELECT (Flink CDC): a transaction can be in the
// binlog before it is visible to a new snapshot, so a position read next to the
// SELECT does not say exactly what the SELECT saw; the watermark's commit closes
// that gap (docs/snapshots.md).
type snapshotter struct {
	s     *session
	state schemas.SnapshotState
	// stateful: a snapshot state was stored or asked for, so positions carry one.
	stateful bool

	reader       *snapReader
	results      chan *chunkRes
	signalsCh    chan signalMsg
	stopChildren context.CancelFunc
	children     sync.WaitGroup

	gen     uint64        // bumped to drop the chunks asked for so far
	reqSeq  uint64        // numbers the chunks asked for (chunkReq.seq)
	windows []*snapWindow // chunks asked for and not yet emitted, oldest first
	ready   []*chunkRes   // results of windows[:len(ready)]
	// changed maps the keys of the running backfill's table that the stream
	// changed while a window was open to the sequence of the last such change.
	changed             map[string]uint64
	tracking            bool
	trackDB, trackTable string

	run   *backfillRun // the running backfill, state.Tables[0]
	dirty bool         // state changed outside a chunk: commit soon
}

// snapWindow is one chunk's window.
type snapWindow struct {
	seqStart uint64
	boundary schemas.Position
	dirty    bool // a DDL naming the table was seen while it was open
	req      *chunkReq
}

// backfillRun is the runtime of the running backfill.
type backfillRun struct {
	shape     []byte     // the table's shape when the backfill began
	ti        *tableInfo // the encoder and topic of its reads
	next      [][]byte   // raw key after which the next chunk starts (nil: the first row)
	keysNext  int        // keyed backfill: index of the next key to ask for
	exhausted bool       // the last chunk asked for is the last one
	asked     int        // chunks asked for in this run
	started   time.Time
	rows0     uint64 // rows done when the run started
	lastLog   time.Time
}

// defaultChunkSize is source.snapshot_chunk_size's default; maxChunkSize bounds
// it and a request's chunk size (a chunk is held in memory until it is emitted).
const (
	defaultChunkSize = 8192
	maxChunkSize     = 1 << 20
)

// keyedChunkSize bounds the keys of one chunk of a keyed backfill (its WHERE
// lists them).
const keyedChunkSize = 500

// Chunks in flight: at most maxReading asked for and not yet read (one being
// read, the next queued behind it, so that the reader goes from one to the next
// without a round trip through the session), at most maxWindows asked for and
// not yet emitted (those and one read, waiting for the stream or being emitted).
// Each is held in memory until it is emitted.
const (
	maxReading = 2
	maxWindows = 3
)

func newSnapshotter(ctx context.Context, s *session, stored *schemas.SnapshotState) (*snapshotter, error) {
	sn := &snapshotter{s: s, changed: map[string]uint64{}, state: schemas.SnapshotState{SignalsOffset: -1}}
	if stored != nil {
		sn.state = *stored.Clone()
		sn.stateful = true
	}
	if err := s.w.ensureTopic(ctx, schemas.SignalsTopic(s.cfg.Kafka.TopicPrefix), 1, signalsTopicConfig()); err != nil {
		return nil, err
	}
	r, err := newSnapReader(&s.cfg.Source, s.text, s.log.With("component", "snapshot"))
	if err != nil {
		return nil, err
	}
	r.hook = s.p.snapReadHook
	sr := newSignalReader(&s.cfg.Kafka, s.cfg.Source.Name, sn.state.SignalsOffset, s.log)
	cctx, cancel := context.WithCancel(ctx)
	sn.reader, sn.results, sn.signalsCh, sn.stopChildren = r, r.results, sr.out, cancel
	sn.children.Go(func() { r.run(cctx) })
	sn.children.Go(func() { sr.run(cctx) })
	sn.publish()
	return sn, nil
}

// close stops the reader and the signal reader and waits for them.
func (sn *snapshotter) close() {
	sn.stopChildren()
	sn.children.Wait()
}

// queueInitial queues a backfill of every table in tables (source.start: snapshot).
func (sn *snapshotter) queueInitial(tables []string) {
	now := time.Now().UnixMilli()
	for _, t := range tables {
		sn.state.Tables = append(sn.state.Tables, schemas.Backfill{ID: "initial", Table: t, ChunkSize: sn.chunkSize(0),
			State: schemas.BackfillQueued, Total: -1, RequestedMs: now})
	}
	sn.stateful, sn.dirty = true, true
	sn.publish()
}

func (sn *snapshotter) chunkSize(asked int) int {
	if asked > 0 {
		return asked
	}
	if n := sn.s.cfg.Source.SnapshotChunkSize; n > 0 {
		return n
	}
	return defaultChunkSize
}

// position returns the state to commit with the next position (nil when no
// backfill was ever asked for, so that such positions look as they always did).
func (sn *snapshotter) position() *schemas.SnapshotState {
	if sn == nil || !sn.stateful {
		return nil
	}
	return sn.state.Clone()
}

// track remembers a key of the running backfill's table that the stream changed
// (called for every change the session writes).
func (sn *snapshotter) track(ti *tableInfo, key []byte, seq uint64) {
	if sn.tracking && ti.table == sn.trackTable && ti.db == sn.trackDB {
		sn.changed[string(key)] = seq
	}
}

// onDDL marks the open windows of a table the statement may change: their chunks
// are read again (and a changed shape restarts the backfill).
func (sn *snapshotter) onDDL(schema, query string) {
	if sn == nil || len(sn.windows) == 0 {
		return
	}
	q := strings.ToLower(query)
	if !strings.Contains(q, strings.ToLower(sn.trackTable)) {
		return
	}
	for _, w := range sn.windows {
		w.dirty = true
	}
	sn.s.log.Info("backfill: DDL while a chunk was read; reading the chunk again", "table", sn.trackDB+"."+sn.trackTable, "schema", schema, "query", truncate(query, 200))
}

// received takes a chunk from the reader.
func (sn *snapshotter) received(res *chunkRes) {
	if res.req.gen != sn.gen || sn.run == nil {
		return // asked for before a restart, cancel or reset
	}
	sn.ready = append(sn.ready, res)
	if res.err != nil || res.jobErr != nil || res.none {
		return
	}
	if res.rows > 0 && len(res.req.keys) == 0 {
		// A copy: the chunk's memory goes back to the reader once emitted.
		sn.run.next = cloneRawKey(res.lastRaw())
	}
	if !res.more && len(res.req.keys) == 0 {
		sn.run.exhausted = true
	}
}

// busy reports whether advance has something to do.
func (sn *snapshotter) busy() bool {
	if sn == nil {
		return false
	}
	return sn.dirty || len(sn.ready) > 0 ||
		(sn.run == nil && len(sn.state.Tables) > 0) ||
		sn.canAsk()
}

// fill asks for chunks while the running backfill may.
func (sn *snapshotter) fill() {
	for sn.canAsk() && sn.ask() {
	}
}

// canAsk reports whether the running backfill may ask for another chunk.
func (sn *snapshotter) canAsk() bool {
	return sn.run != nil && !sn.run.exhausted && len(sn.windows)-len(sn.ready) < maxReading && len(sn.windows) < maxWindows
}

// reached reports whether the stream has handled everything before at.
func (sn *snapshotter) reached(at schemas.Position) bool {
	s := sn.s
	return !s.inTxn && comparePos(schemas.Position{File: s.file, Pos: s.lastEnd}, at) >= 0
}

// advance emits the chunks whose snapshot the stream has reached, asks for the
// next one and starts the next backfill. The session calls it between binlog
// transactions only.
func (sn *snapshotter) advance(ctx context.Context, idle func() bool) error {
	s := sn.s
	if s.inTxn {
		return nil
	}
	emitted := false
	for {
		if sn.run == nil && !sn.startNext() {
			break
		}
		if len(sn.ready) > 0 {
			res, win := sn.ready[0], sn.windows[0]
			job := &sn.state.Tables[0]
			switch {
			case res.err != nil:
				return res.err
			case res.jobErr != nil:
				sn.finish(schemas.BackfillFailed, res.jobErr.Error())
				continue
			case win.dirty:
				sn.reset()
				continue
			case res.none:
				// Asked for after the table's end: nothing to emit.
				sn.ready, sn.windows = sn.ready[1:], sn.windows[1:]
				sn.prune()
				if sn.run.exhausted && len(sn.windows) == 0 {
					sn.finish(schemas.BackfillDone, "")
				}
				continue
			case sn.run.shape != nil && !bytes.Equal(res.table.ti.fingerprint, sn.run.shape):
				sn.restart(fmt.Sprintf("the table's definition changed (seen at %s:%d); restarted from the first row", s.file, s.lastEnd))
				continue
			}
			if sn.run.shape == nil {
				if err := sn.prepare(ctx, res); err != nil {
					return err
				}
				if job.Total < 0 {
					job.Total = res.total
				}
			}
			// The reader reads the next chunks while this one waits for the
			// stream or is emitted.
			sn.fill()
			if !sn.reached(res.at) {
				break // the stream has not handled everything the snapshot saw yet
			}
			if err := sn.emitChunk(ctx, res, win); err != nil {
				return err
			}
			emitted = true
			sn.reader.recycle(res)
			sn.ready, sn.windows = sn.ready[1:], sn.windows[1:]
			sn.prune()
			if sn.run.exhausted && len(sn.windows) == 0 {
				sn.finish(schemas.BackfillDone, "")
			}
			continue
		}
		sn.fill()
		break
	}
	if emitted {
		sn.publish()
		sn.logProgress(false)
	}
	if sn.dirty {
		sn.dirty = false
		sn.publish()
		return s.commit(ctx)
	}
	if emitted && s.w.inTxn {
		k := &s.cfg.Kafka
		if s.w.records >= k.FlushRecords || s.w.bytes >= k.FlushBytes || time.Since(s.w.began) >= k.FlushInterval || idle() {
			return s.commit(ctx)
		}
	}
	return nil
}

// startNext makes the first queued backfill the running one.
func (sn *snapshotter) startNext() bool {
	if len(sn.state.Tables) == 0 {
		return false
	}
	job := &sn.state.Tables[0]
	db, table, _ := strings.Cut(job.Table, ".")
	run := &backfillRun{started: time.Now(), rows0: job.Rows, keysNext: job.KeysDone}
	if job.State == schemas.BackfillRunning {
		next, err := decodeRawKey(job.LastKeyRaw)
		if err != nil {
			sn.finish(schemas.BackfillFailed, fmt.Sprintf("stored progress unreadable: %v", err))
			return sn.startNext()
		}
		run.next = next
		sn.s.log.Info("backfill resumed", "table", job.Table, "id", job.ID, "rows", job.Rows, "after", job.LastKey)
	} else {
		job.State = schemas.BackfillRunning
		job.StartedMs = time.Now().UnixMilli()
		sn.dirty = true
		sn.s.log.Info("backfill started", "table", job.Table, "id", job.ID, "where", job.Where, "keys", len(job.Keys), "chunk_size", job.ChunkSize)
	}
	sn.run = run
	sn.trackDB, sn.trackTable = db, table
	sn.publish()
	return true
}

// ask opens the next chunk's window and asks the reader for it; false when the
// reader cannot take the request now.
func (sn *snapshotter) ask() bool {
	s, job, run := sn.s, &sn.state.Tables[0], sn.run
	db, table, _ := strings.Cut(job.Table, ".")
	req := &chunkReq{gen: sn.gen, id: job.ID, db: db, table: table, where: job.Where, limit: job.ChunkSize,
		boundary: schemas.Position{File: s.boundary.File, Pos: s.boundary.Pos}, estimate: run.asked == 0, seq: sn.reqSeq + 1}
	end := run.keysNext
	switch {
	case len(job.Keys) > 0:
		end = min(run.keysNext+keyedChunkSize, len(job.Keys))
		req.keys = job.Keys[run.keysNext:end]
	case len(sn.windows) > len(sn.ready):
		// The chunk before is still being read: continue after its last row,
		// which only the reader knows yet.
		req.chainTo = sn.windows[len(sn.windows)-1].req.seq
	default:
		req.after = run.next
	}
	select {
	case sn.reader.reqs <- req:
	default:
		return false // the reader is still busy with chunks dropped by a reset: ask again later
	}
	sn.reqSeq++
	if len(job.Keys) > 0 {
		run.keysNext = end
		// A keyed chunk's result cannot tell whether more follow.
		run.exhausted = end == len(job.Keys)
	}
	run.asked++
	sn.windows = append(sn.windows, &snapWindow{seqStart: s.seq, boundary: req.boundary, req: req})
	sn.tracking = true
	return true
}

// prepare sets up the run's table from its first chunk.
func (sn *snapshotter) prepare(ctx context.Context, res *chunkRes) error {
	s, ti := sn.s, res.table.ti
	ti.topic = schemas.TopicName(s.cfg.Kafka.TopicPrefix, ti.db, ti.table)
	tv := &schemas.TableVersion{DB: ti.db, Table: ti.table, Topic: ti.topic, Columns: ti.columns, Nullable: ti.nullable, KeyFallback: ti.keyFallback}
	enc, err := s.enc.Table(tv)
	if err != nil {
		return fmt.Errorf("encoder for %s.%s: %w", ti.db, ti.table, err)
	}
	ti.enc = enc
	ti.prep, _ = enc.(schemas.TablePreparer)
	if err := s.w.ensureTableTopic(ctx, ti.topic); err != nil {
		return err
	}
	ti.maxRecord = s.w.recordLimit(ti.topic)
	sn.run.ti, sn.run.shape = ti, ti.fingerprint
	return nil
}

// emitChunk writes a chunk's rows as reads, except the keys the stream changed
// since its window opened, then records the progress. A chunk goes into one
// Kafka transaction, so the committed progress is always a chunk boundary.
func (sn *snapshotter) emitChunk(ctx context.Context, res *chunkRes, win *snapWindow) error {
	s, job, ti := sn.s, &sn.state.Tables[0], sn.run.ti
	k := &s.cfg.Kafka
	// A read is one record; its record bytes are about twice the row's bytes as
	// read. Two chunks of the default size fit one transaction: when the reader
	// is ahead they are written back to back and committed once.
	if s.w.inTxn && (s.w.records+res.rows+len(res.missing) > k.FlushRecords || s.w.bytes+2*res.bytes > k.FlushBytes) {
		if err := s.commit(ctx); err != nil {
			return err
		}
	}
	src := schemas.Source{Name: s.cfg.Source.Name, ServerID: s.info.serverID, File: s.file, Pos: s.lastEnd,
		TsMs: res.readAt.UnixMilli(), DB: ti.db, Table: ti.table}
	s.posText = strconv.AppendUint(append(append(s.posText[:0], src.File...), ':'), uint64(src.Pos), 10)
	s.posHdr = nil
	s.eventTime = time.Now()
	s.event++
	fresh := func(key string) bool {
		seq, ok := sn.changed[key]
		return !ok || seq <= win.seqStart
	}
	n := res.ncols
	for i := 0; i < res.rows; i++ {
		if i > 0 && res.keys[i] == res.keys[i-1] {
			continue // identical rows of a table keyed by all columns: one key, one read
		}
		if !fresh(res.keys[i]) {
			job.Skipped++
			continue
		}
		s.seq++
		src.Row = int(job.Rows)
		job.Rows++
		s.nextChange()
		key := s.arena.copy([]byte(res.keys[i]))
		if err := s.write(ctx, ti, &src, schemas.OpRead, key, nil, res.vals[i*n:(i+1)*n:(i+1)*n]); err != nil {
			return err
		}
		s.p.stats.SnapshotRows.Add(1)
	}
	for _, mk := range res.missing {
		if !fresh(mk) {
			job.Skipped++
			continue
		}
		// A key asked for that has no row: a tombstone removes it wherever a
		// sink still has it.
		s.seq++
		s.nextChange()
		if err := s.writeTombstone(ctx, ti, s.arena.copy([]byte(mk))); err != nil {
			return err
		}
	}
	job.Chunks++
	job.UpdatedMs = time.Now().UnixMilli()
	if len(res.req.keys) > 0 {
		job.KeysDone += len(res.req.keys)
	} else if res.rows > 0 {
		job.LastKeyRaw = encodeRawKey(res.lastRaw())
		job.LastKey = strings.Clone(res.keys[res.rows-1]) // the chunk's memory is reused
	}
	return nil
}

// prune forgets changed keys no open window needs.
func (sn *snapshotter) prune() {
	if len(sn.windows) == 0 {
		clear(sn.changed)
		sn.tracking = false
		return
	}
	if len(sn.changed) < 4096 {
		return
	}
	oldest := sn.windows[0].seqStart
	for k, seq := range sn.changed {
		if seq <= oldest {
			delete(sn.changed, k)
		}
	}
}

// reset drops the chunks asked for and continues after the last chunk emitted.
func (sn *snapshotter) reset() {
	sn.gen++
	sn.windows, sn.ready = nil, nil
	sn.prune()
	if sn.run == nil {
		return
	}
	job := &sn.state.Tables[0]
	next, _ := decodeRawKey(job.LastKeyRaw)
	sn.run.next, sn.run.keysNext, sn.run.exhausted = next, job.KeysDone, false
}

// restart begins the running backfill again from its first row.
func (sn *snapshotter) restart(why string) {
	job := &sn.state.Tables[0]
	sn.s.log.Warn("backfill restarted", "table", job.Table, "id", job.ID, "why", why, "rows_before", job.Rows)
	job.Restarts++
	job.Note = why
	job.Rows, job.Skipped, job.Chunks, job.KeysDone, job.Total = 0, 0, 0, 0, -1
	job.LastKey, job.LastKeyRaw = "", nil
	job.StartedMs = time.Now().UnixMilli()
	sn.gen++
	sn.windows, sn.ready = nil, nil
	sn.prune()
	sn.run = &backfillRun{started: time.Now()}
	sn.dirty = true
}

// finish ends the running backfill.
func (sn *snapshotter) finish(state, errText string) {
	job := sn.state.Tables[0]
	job.State, job.Error = state, errText
	job.FinishedMs = time.Now().UnixMilli()
	job.Keys = nil // done; the count stays in KeysDone
	sn.state.Tables = sn.state.Tables[1:]
	sn.addFinished(job)
	sn.gen++
	sn.windows, sn.ready, sn.run = nil, nil, nil
	sn.prune()
	sn.reader.dropSpare()
	sn.dirty = true
	if state == schemas.BackfillDone {
		sn.s.log.Info("backfill done", "table", job.Table, "id", job.ID, "rows", job.Rows, "skipped", job.Skipped, "chunks", job.Chunks,
			"seconds", float64(job.FinishedMs-job.StartedMs)/1000)
	} else {
		sn.s.log.Error("backfill "+state, "table", job.Table, "id", job.ID, "err", errText)
	}
}

func (sn *snapshotter) addFinished(b schemas.Backfill) {
	sn.state.Finished = append(sn.state.Finished, b)
	if n := len(sn.state.Finished) - schemas.MaxFinishedBackfills; n > 0 {
		sn.state.Finished = append([]schemas.Backfill(nil), sn.state.Finished[n:]...)
	}
}

// cloneRawKey copies a raw key (NULL columns stay nil).
func cloneRawKey(raw [][]byte) [][]byte {
	out := make([][]byte, len(raw))
	for i, b := range raw {
		if b != nil {
			out[i] = append([]byte{}, b...)
		}
	}
	return out
}

// encodeRawKey stores a raw key in a position: hex per column, null for NULL.
func encodeRawKey(raw [][]byte) []*string {
	out := make([]*string, len(raw))
	for i, b := range raw {
		if b != nil {
			h := hex.EncodeToString(b)
			out[i] = &h
		}
	}
	return out
}

func decodeRawKey(stored []*string) ([][]byte, error) {
	if stored == nil {
		return nil, nil
	}
	out := make([][]byte, len(stored))
	for i, h := range stored {
		if h == nil {
			continue
		}
		b, err := hex.DecodeString(*h)
		if err != nil {
			return nil, err
		}
		if b == nil {
			b = emptyBytes
		}
		out[i] = b
	}
	return out, nil
}
