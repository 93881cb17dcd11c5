package producer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/schemas"
)

// binlogStream reads the events of one replication connection and hands them to
// the session in batches, in a goroutine of its own (the session encodes and
// produces meanwhile).
//
// It allocates nothing per event in steady state, where go-mysql's BinlogSyncer
// allocated four to six objects per event (its packet copy, header, event struct,
// BinlogEvent, table map slices): with single-row transactions that was six
// allocations per row, most of the producer's (docs/bench.md). Packets are read
// into large reused chunks and events point into them; the events the producer
// handles all the time — MariaDB GTIDs, XIDs, table maps, rows events of the
// column types rowDecoder decodes — are parsed here into structs that belong to
// the batch and are reused with it; table maps are decoded once per distinct
// byte string (every transaction repeats them). Every other event, and any rows
// event the fast path does not take, goes through go-mysql's BinlogParser as
// before, from a copy of its bytes, so unusual input keeps the proven path.
//
// A chunk is reused once the session has released every batch that may point
// into it; batches are released in order, so one counter tells which.
type binlogStream struct {
	conn   *replicaConn
	log    *slog.Logger
	parser *replication.BinlogParser
	rows   *rowDecoder
	meta   *tableMetaCache

	// fde is the last format description: checksums and post-header sizes.
	fde *replication.FormatDescriptionEvent
	// tableMaps caches table maps by their body (after the header, without the
	// checksum); tables is the last one seen of each table id.
	tableMaps map[string]*cachedTableMap
	tables    map[uint64]*cachedTableMap

	// The read buffer: packets are parsed from buf[r:w].
	buf     []byte
	r, w    int
	seq     uint8 // sequence number of the next packet
	retired []retiredChunk
	spare   [][]byte

	cur      *eventBatch
	batchSeq uint64
	out      chan *eventBatch
	free     chan *eventBatch
	released atomic.Uint64 // the last batch the session released
	done     <-chan struct{}
}

// cachedTableMap is a table map decoded from raw, a copy of its event.
type cachedTableMap struct {
	tm  *replication.TableMapEvent
	raw []byte
}

type retiredChunk struct {
	buf       []byte
	lastBatch uint64 // the last batch that may point into buf
}

const (
	// streamChunk is the size of the read buffer's chunks.
	streamChunk = 256 << 10
	// spareChunks bounds the chunks kept for reuse.
	spareChunks = 4
	// batchEvents and batchValues bound a batch: it is handed over when full, and
	// whenever the stream is about to wait for the socket.
	batchEvents = 64
	batchValues = 4096
	// streamBatches is how many batches may wait for the session: with
	// batchEvents, the event queue of the session (what eventQueueSize was).
	streamBatches = eventQueueSize / batchEvents
	// maxCachedTableMaps bounds tableMaps (table ids change with every ALTER,
	// FLUSH TABLES and table cache eviction).
	maxCachedTableMaps = 4 * maxCachedTables
)

// eventBatch is consecutive events of the stream, then possibly the error that
// ended it.
type eventBatch struct {
	seq    uint64
	events []streamEvent
	n      int
	err    error
	// vals and text hold the decoded rows of the batch's fast rows events.
	vals []schemas.Value
	text []byte
	full bool // vals or text outgrew their arrays: hand the batch over now
}

// streamEvent is one event and the structs the fast path parses it into.
type streamEvent struct {
	ev     *replication.BinlogEvent // what the session handles: own or go-mysql's
	own    replication.BinlogEvent
	header replication.EventHeader
	rows   replication.RowsEvent
	gtid   replication.MariadbGTIDEvent
	xid    replication.XIDEvent
	dr     decodedRows
}

func newBinlogStream(conn *replicaConn, log *slog.Logger, rows *rowDecoder, meta *tableMetaCache, flavor string, done <-chan struct{}) *binlogStream {
	p := replication.NewBinlogParser()
	p.SetFlavor(flavor)
	p.SetParseTime(true)
	p.SetRowsEventDecodeFunc(rows.decode)
	p.SetTableMapOptionalMetaDecodeFunc(meta.decode)
	return &binlogStream{
		conn: conn, log: log, parser: p, rows: rows, meta: meta,
		tableMaps: map[string]*cachedTableMap{}, tables: map[uint64]*cachedTableMap{},
		buf:  make([]byte, streamChunk),
		seq:  1, // the dump command was packet 0
		out:  make(chan *eventBatch, streamBatches),
		free: make(chan *eventBatch, streamBatches+4),
		done: done,
	}
}

// run reads until the connection fails or the session stops; the last batch
// carries the error.
func (s *binlogStream) run() {
	err := s.read()
	if s.cur == nil {
		s.cur = s.newBatch()
	}
	s.cur.err = err
	select {
	case s.out <- s.cur:
	case <-s.done:
	}
	s.cur = nil
}

// release gives a batch back once the session has handled all of it.
func (s *binlogStream) release(b *eventBatch) {
	s.released.Store(b.seq)
	for i := range b.events[:b.n] {
		e := &b.events[i]
		e.ev, e.own.Event, e.own.RawData = nil, nil, nil
		e.rows.Rows, e.rows.ColumnBitmap1, e.rows.ColumnBitmap2, e.rows.Table = nil, nil, nil, nil
	}
	clear(b.vals) // drop the references into chunks
	b.n, b.vals, b.text, b.err, b.full = 0, b.vals[:0], b.text[:0], nil, false
	select {
	case s.free <- b:
	default:
	}
}

func (s *binlogStream) newBatch() *eventBatch {
	var b *eventBatch
	select {
	case b = <-s.free:
	default:
		b = &eventBatch{events: make([]streamEvent, batchEvents), vals: make([]schemas.Value, 0, batchValues), text: make([]byte, 0, 16*batchValues)}
	}
	s.batchSeq++
	b.seq = s.batchSeq
	return b
}

// flush hands the current batch to the session, if it has events.
func (s *binlogStream) flush() error {
	if s.cur == nil || s.cur.n == 0 {
		return nil
	}
	select {
	case s.out <- s.cur:
		s.cur = nil
		return nil
	case <-s.done:
		return errStreamStopped
	}
}

// errStreamStopped ends the stream when the session stopped reading.
var errStreamStopped = errors.New("binlog stream stopped")

func (s *binlogStream) read() error {
	for {
		p, err := s.packet()
		if err != nil {
			return err
		}
		switch p[0] {
		case mysql.OK_HEADER:
			if err := s.event(p[1:]); err != nil {
				return err
			}
		case mysql.ERR_HEADER:
			return s.conn.c.HandleErrorPacket(bytes.Clone(p))
		case mysql.EOF_HEADER:
			// Only with BINLOG_DUMP_NON_BLOCK, which kanal does not ask for.
		default:
			return fmt.Errorf("binlog stream: packet with header 0x%02x", p[0])
		}
	}
}

// packet returns the payload of the next packet: in place in the chunk when it
// fits in one packet (all but events of 16 MiB and more).
func (s *binlogStream) packet() ([]byte, error) {
	p, err := s.onePacket()
	if err != nil || len(p) < mysql.MaxPayloadLen {
		return p, err
	}
	joined := bytes.Clone(p)
	for len(p) == mysql.MaxPayloadLen {
		if p, err = s.onePacket(); err != nil {
			return nil, err
		}
		joined = append(joined, p...)
	}
	return joined, nil
}

func (s *binlogStream) onePacket() ([]byte, error) {
	for {
		need := 4
		if s.w-s.r >= 4 {
			b := s.buf[s.r:]
			length := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
			if need = 4 + length; s.w-s.r >= need {
				if b[3] != s.seq {
					return nil, fmt.Errorf("binlog stream: packet sequence %d, want %d", b[3], s.seq)
				}
				s.seq++
				p := b[4:need:need]
				s.r += need
				return p, nil
			}
		}
		if s.r+need > len(s.buf) {
			s.moveTo(need)
		}
		// About to wait for the server: hand over what is parsed.
		if err := s.flush(); err != nil {
			return nil, err
		}
		n, err := s.conn.raw.Read(s.buf[s.w:])
		s.w += n
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// moveTo continues in a chunk with room for need bytes from the start of the
// packet being read, which it copies there; the old chunk is retired until the
// batches that may point into it are released.
func (s *binlogStream) moveTo(need int) {
	size := max(streamChunk, need)
	var next []byte
	released := s.released.Load()
	for len(s.retired) > 0 && s.retired[0].lastBatch <= released {
		if c := s.retired[0].buf; len(s.spare) < spareChunks && cap(c) == streamChunk {
			s.spare = append(s.spare, c)
		}
		s.retired[0] = retiredChunk{}
		s.retired = s.retired[1:]
	}
	if size == streamChunk && len(s.spare) > 0 {
		next, s.spare = s.spare[len(s.spare)-1], s.spare[:len(s.spare)-1]
	} else {
		next = make([]byte, size)
	}
	n := copy(next, s.buf[s.r:s.w])
	// Events parsed from now on point into the new chunk: the old one is
	// referred to by the batches up to the one being filled (or the last one
	// handed over).
	s.retired = append(s.retired, retiredChunk{buf: s.buf, lastBatch: s.batchSeq})
	s.buf, s.r, s.w = next, 0, n
}

// event parses one event (header and body, the checksum included) into the
// current batch.
func (s *binlogStream) event(data []byte) error {
	if len(data) < replication.EventHeaderSize {
		return fmt.Errorf("binlog stream: event of %d bytes", len(data))
	}
	if s.cur == nil {
		s.cur = s.newBatch()
	}
	b := s.cur
	e := &b.events[b.n]
	h := &e.header
	h.Timestamp = binary.LittleEndian.Uint32(data[0:])
	h.EventType = replication.EventType(data[4])
	h.ServerID = binary.LittleEndian.Uint32(data[5:])
	h.EventSize = binary.LittleEndian.Uint32(data[9:])
	h.LogPos = binary.LittleEndian.Uint32(data[13:])
	h.Flags = binary.LittleEndian.Uint16(data[17:])
	if int(h.EventSize) != len(data) {
		return fmt.Errorf("binlog stream: %s event of %d bytes says it has %d", h.EventType, len(data), h.EventSize)
	}
	body := data[replication.EventHeaderSize:]
	if s.fde != nil && s.fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32 && h.EventType != replication.FORMAT_DESCRIPTION_EVENT {
		if len(body) < replication.BinlogChecksumLength {
			return fmt.Errorf("binlog stream: %s event of %d bytes", h.EventType, len(data))
		}
		body = body[:len(body)-replication.BinlogChecksumLength]
	}
	e.own = replication.BinlogEvent{Header: h, RawData: data}
	fast := false
	switch h.EventType {
	case replication.MARIADB_GTID_EVENT:
		if len(body) >= 13 {
			e.gtid = replication.MariadbGTIDEvent{Flags: body[12]}
			e.gtid.GTID = mysql.MariadbGTID{DomainID: binary.LittleEndian.Uint32(body[8:]), ServerID: h.ServerID, SequenceNumber: binary.LittleEndian.Uint64(body)}
			if e.gtid.Flags&replication.BINLOG_MARIADB_FL_GROUP_COMMIT_ID != 0 && len(body) >= 21 {
				e.gtid.CommitID = binary.LittleEndian.Uint64(body[13:])
			}
			e.own.Event, fast = &e.gtid, true
		}
	case replication.XID_EVENT:
		if len(body) >= 8 {
			e.xid = replication.XIDEvent{XID: binary.LittleEndian.Uint64(body)}
			e.own.Event, fast = &e.xid, true
		}
	case replication.TABLE_MAP_EVENT:
		t, err := s.tableMap(data, body)
		if err != nil {
			return err
		}
		s.tables[t.tm.TableID] = t
		e.own.Event, fast = t.tm, true
	case replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2:
		fast = s.fastRows(e, body)
	}
	if fast {
		e.ev = &e.own
	} else {
		ev, err := s.slow(data)
		if err != nil {
			return err
		}
		e.ev = ev
	}
	b.n++
	if b.n == len(b.events) || b.full {
		return s.flush()
	}
	return nil
}

// tableMap returns the decoded table map of body, decoding it (with go-mysql)
// when it was not seen before.
func (s *binlogStream) tableMap(data, body []byte) (*cachedTableMap, error) {
	if t := s.tableMaps[string(body)]; t != nil {
		return t, nil
	}
	raw := bytes.Clone(data)
	ev, err := s.parser.Parse(raw)
	if err != nil {
		return nil, err
	}
	tm, ok := ev.Event.(*replication.TableMapEvent)
	if !ok {
		return nil, fmt.Errorf("binlog stream: table map parsed as %T", ev.Event)
	}
	if err := s.meta.fill(tm); err != nil {
		return nil, err
	}
	if len(s.tableMaps) >= maxCachedTableMaps {
		clear(s.tableMaps)
	}
	t := &cachedTableMap{tm: tm, raw: raw}
	s.tableMaps[string(body)] = t
	return t, nil
}

// slow parses an event with go-mysql, from a copy (its events point into their
// bytes, and the session may keep what they hold).
func (s *binlogStream) slow(data []byte) (*replication.BinlogEvent, error) {
	h := replication.EventType(data[4])
	if isRowsEvent(h) && len(data) > replication.EventHeaderSize+6 {
		// go-mysql decodes rows with the table map its parser last parsed for
		// the id, and the fast path parses none: give it the map again.
		if t := s.tables[s.rowsTableID(h, data[replication.EventHeaderSize:])]; t != nil {
			ev, err := s.parser.Parse(bytes.Clone(t.raw))
			if err != nil {
				return nil, err
			}
			if err := s.meta.fill(ev.Event.(*replication.TableMapEvent)); err != nil {
				return nil, err
			}
		}
	}
	ev, err := s.parser.Parse(bytes.Clone(data))
	if err != nil {
		return nil, err
	}
	switch e := ev.Event.(type) {
	case *replication.FormatDescriptionEvent:
		s.fde = e
	case *replication.TransactionPayloadEvent:
		// Its rows were parsed with the table maps still unfilled, so they took
		// go-mysql's decoder (which needs none of the metadata); the session
		// needs it to name and decode the columns.
		for _, inner := range e.Events {
			if tm, ok := inner.Event.(*replication.TableMapEvent); ok {
				if err := s.meta.fill(tm); err != nil {
					return nil, err
				}
			}
		}
	}
	return ev, nil
}

func isRowsEvent(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv0,
		replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		return true
	}
	return false
}

// tableIDSize is the size of the table id in the post-header of events of type
// t, as go-mysql's parser reads it from the format description.
func (s *binlogStream) tableIDSize(t replication.EventType) int {
	if s.fde != nil && int(t) <= len(s.fde.EventTypeHeaderLengths) && s.fde.EventTypeHeaderLengths[t-1] == 6 {
		return 4
	}
	return 6
}

func (s *binlogStream) rowsTableID(t replication.EventType, body []byte) uint64 {
	return mysql.FixedLengthInt(body[:s.tableIDSize(t)])
}

// fastRows parses a rows event of a table the row decoder handles (or that the
// filter excludes) into e, as RowsEvent.DecodeHeader and rowDecoder.decode
// would; false leaves the event to go-mysql.
func (s *binlogStream) fastRows(e *streamEvent, body []byte) (ok bool) {
	defer func() {
		if recover() != nil { // malformed: go-mysql reports what is wrong
			ok = false
		}
	}()
	t := e.header.EventType
	update := t == replication.UPDATE_ROWS_EVENTv1 || t == replication.UPDATE_ROWS_EVENTv2
	idSize := s.tableIDSize(t)
	re := &e.rows
	*re = replication.RowsEvent{Version: 1, TableID: mysql.FixedLengthInt(body[:idSize])}
	pos := idSize
	re.Flags = binary.LittleEndian.Uint16(body[pos:])
	pos += 2
	if t >= replication.WRITE_ROWS_EVENTv2 {
		re.Version = 2
		if extra := binary.LittleEndian.Uint16(body[pos:]); extra != 2 {
			return false // NDB or partition info: go-mysql reads it
		}
		pos += 2
	}
	cols, _, n := mysql.LengthEncodedInt(body[pos:])
	pos += n
	bm := (int(cols) + 7) / 8
	re.ColumnCount = cols
	re.ColumnBitmap1 = body[pos : pos+bm : pos+bm]
	pos += bm
	if update {
		re.ColumnBitmap2 = body[pos : pos+bm : pos+bm]
		pos += bm
	}
	tab := s.tables[re.TableID]
	if tab == nil {
		return false
	}
	re.Table = tab.tm
	plan := s.rows.plan(tab.tm)
	if plan.skip {
		e.own.Event = re // no rows: the session skips the table anyway
		return true
	}
	if !plan.fast || uint64(len(plan.cols)) != cols || !allSet(re.ColumnBitmap1, len(plan.cols)) ||
		(update && !allSet(re.ColumnBitmap2, len(plan.cols))) {
		return false
	}
	b := s.cur
	dr := &e.dr
	dr.owner = nil
	dr.vals, dr.text = b.vals[len(b.vals):len(b.vals)], b.text[len(b.text):len(b.text)]
	dr.images, dr.ncols, dr.invalid = 0, 0, 0
	if !dr.decode(plan, body[pos:], update) {
		return false
	}
	// The values were appended in place unless they outgrew the batch's arrays
	// (then the batch goes now, and the next one starts empty).
	if nv := len(b.vals) + len(dr.vals); nv <= cap(b.vals) {
		b.vals = b.vals[:nv]
	} else {
		b.full = true
	}
	if nt := len(b.text) + len(dr.text); nt <= cap(b.text) {
		b.text = b.text[:nt]
	} else {
		b.full = true
	}
	dr.one[0] = dr
	dr.holder[0] = dr.one[:]
	re.Rows = dr.holder[:]
	e.own.Event = re
	return true
}
