package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (s *session) tableMap(ctx context.Context, tm *replication.TableMapEvent) error {
	// Every transaction repeats its table maps: compare in a reused buffer.
	ti, ok := s.tables[tm.TableID]
	if ok && ti.tm == tm {
		return nil
	}
	s.fpBuf = appendTableFingerprint(s.fpBuf[:0], tm)
	if ok && bytes.Equal(ti.fingerprint, s.fpBuf) {
		ti.tm = tm
		return nil
	}
	db, table := string(tm.Schema), string(tm.Table)
	if !s.filter.match(db, table) {
		s.tables[tm.TableID] = &tableInfo{skip: true, fingerprint: bytes.Clone(s.fpBuf), tm: tm}
		return nil
	}
	ti, err := newTableInfo(tm, s.text)
	if err != nil {
		return err
	}
	if ti.keyFallback && s.cfg.Source.NoPrimaryKey == "refuse" {
		return fmt.Errorf("%w: %s.%s (source.no_primary_key is refuse: add a primary key, exclude the table, or set no_primary_key: all-columns)",
			ErrNoPrimaryKey, db, table)
	}
	ti.topic = schemas.TopicName(s.cfg.Kafka.TopicPrefix, db, table)
	tv := &schemas.TableVersion{DB: db, Table: table, Topic: ti.topic, Columns: ti.columns, Nullable: ti.nullable, KeyFallback: ti.keyFallback}
	if ti.enc, err = s.enc.Table(tv); err != nil {
		return fmt.Errorf("encoder for %s.%s: %w", db, table, err)
	}
	ti.prep, _ = ti.enc.(schemas.TablePreparer)
	if err := s.w.ensureTableTopic(ctx, ti.topic); err != nil {
		return err
	}
	ti.maxRecord = s.w.recordLimit(ti.topic)
	ti.tm = tm
	s.tables[tm.TableID] = ti
	s.rememberTable(tv)
	return nil
}

// prepare runs the table encoder's preparation (schema registration or
// publication) before the first record of its table version and writes the
// records it asks for into the open Kafka transaction.
func (s *session) prepare(ctx context.Context, prep schemas.TablePreparer) error {
	recs, err := prep.Prepare(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := s.w.produce(ctx, &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Timestamp: s.eventTime}); err != nil {
			return err
		}
	}
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
	if n := len(ti.decoders); !allSet(re.ColumnBitmap1, n) || (re.ColumnBitmap2 != nil && !allSet(re.ColumnBitmap2, n)) {
		// binlog_row_image is a session variable: a client may log MINIMAL or
		// NOBLOB images for itself after kanal checked the global value.
		return &RowError{Table: ti.db + "." + ti.table, Pos: s.posString(ev), Err: fmt.Errorf("%w: the rows event leaves columns out "+
			"(the writing session had binlog_row_image MINIMAL or NOBLOB); kanal needs every column: set binlog_row_image = FULL "+
			"globally and in every session that writes (SET SESSION binlog_row_image = 'FULL')", ErrServerConfig)}
	}
	if !s.inTxn {
		s.beginTxn()
	}
	// In the session, not on the heap once per event: emit hands it on by pointer.
	src := &s.src
	*src = schemas.Source{
		Name: s.cfg.Source.Name, ServerID: ev.Header.ServerID, File: s.file, Pos: ev.Header.LogPos,
		GTID: s.txnGTID, TsMs: int64(ev.Header.Timestamp) * 1000, DB: ti.db, Table: ti.table,
	}
	// The kanal.pos header is the same for every row of the event.
	s.posText = strconv.AppendUint(append(append(s.posText[:0], src.File...), ':'), uint64(src.Pos), 10)
	s.posHdr = nil
	// One timestamp for the event's records: the client would read the clock
	// for each record otherwise (4 % of the producer's CPU).
	s.eventTime = time.Now()
	s.event++
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
	s.invalidText = fast && dr.invalid > 0
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
			if err := s.emit(ctx, ti, src, schemas.OpCreate, nil, after); err != nil {
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
			if err := s.emit(ctx, ti, src, schemas.OpDelete, before, nil); err != nil {
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
				if err := s.emit(ctx, ti, src, schemas.OpUpdate, before, after); err != nil {
					return err
				}
				continue
			}
			// A key change moves the row: delete the old key (with its tombstone)
			// then create the new one, so no key-based sink keeps the old row.
			if err := s.emit(ctx, ti, src, schemas.OpDelete, before, nil); err != nil {
				return err
			}
			if err := s.emit(ctx, ti, src, schemas.OpCreate, nil, after); err != nil {
				return err
			}
		}
	}
	return nil
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
		s.invalidText = s.invalidText || x.InvalidText()
		out[c] = x
	}
	return out, nil
}

// invalidHeader returns the value of the HeaderInvalidText header of a change:
// the names of the columns whose text, in either image, was decoded from bytes
// invalid in their character set; nil when there are none. Each such value is
// counted (Stats.InvalidText), and logged once per table version and column
// (never the value).
func (s *session) invalidHeader(ti *tableInfo, src *schemas.Source, before, after []schemas.Value) []byte {
	var names []byte
	for c := range ti.columns {
		bad := 0
		for _, img := range [2][]schemas.Value{before, after} {
			if c < len(img) && img[c].InvalidText() {
				bad++
			}
		}
		if bad == 0 {
			continue
		}
		s.p.stats.InvalidText.Add(uint64(bad))
		if names != nil {
			names = append(names, ',')
		}
		names = append(names, ti.columns[c].Name...)
		if ti.warnedInvalid == nil {
			ti.warnedInvalid = make([]bool, len(ti.columns))
		}
		if !ti.warnedInvalid[c] {
			ti.warnedInvalid[c] = true
			s.log.Warn("text column holds bytes invalid in its character set; replaced with U+FFFD and named in the kanal.invalid_text header",
				"table", ti.db+"."+ti.table, "column", ti.columns[c].Name, "charset", ti.decoders[c].cs.Name(),
				"pos", src.File+":"+strconv.FormatUint(uint64(src.Pos), 10))
		}
	}
	if names == nil {
		return nil
	}
	return s.arena.copy(names)
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
	s.nextChange()
	row := after
	if row == nil {
		row = before
	}
	key := s.key(ti, row)
	if s.snap != nil {
		s.snap.track(ti, key, s.seq)
	}
	if err := s.write(ctx, ti, src, op, key, before, after); err != nil {
		return err
	}
	k := &s.cfg.Kafka
	if s.w.records >= k.FlushRecords || s.w.bytes >= k.FlushBytes {
		return s.commit(ctx)
	}
	if !s.heldSince.IsZero() && s.txnRows%heldCheckRows == 0 && time.Since(s.heldSince) >= s.p.heldAfter {
		// Complete binlog transactions share the open Kafka transaction with
		// this one, which is large: commit them now rather than after
		// flush_records of it (bench row 5e).
		return s.commit(ctx)
	}
	return nil
}

// A binlog transaction still being written makes the complete ones before it
// in the open Kafka transaction wait at most about heldCommitAfter: checked
// every heldCheckRows of its changes, after that long it is committed
// mid-transaction, as a large one is after flush_records. Under full load
// most binlog transactions take far less (the bench's 1,000-row ones ~2 ms),
// so this costs at most one commit per transaction that takes longer.
const (
	heldCommitAfter = 5 * time.Millisecond
	heldCheckRows   = 256
)

// write hands one change with sequence s.seq (and, for a delete, its tombstone)
// to the open Kafka transaction. key must be carved from the arena.
func (s *session) write(ctx context.Context, ti *tableInfo, src *schemas.Source, op schemas.Op, key []byte, before, after []schemas.Value) error {
	// Allocation per record is what dominated the producer's profile (docs/bench.md):
	// the key and value are encoded into scratch buffers and copied into the arena,
	// header values are shared or carved from the arena, and records and header
	// slices come from chunks.
	// The value is encoded straight into the arena's free space.
	if ti.prep != nil {
		if err := s.prepare(ctx, ti.prep); err != nil {
			return fmt.Errorf("%s.%s: %w", ti.db, ti.table, err)
		}
		ti.prep = nil
	}
	c := &s.change
	c.Op, c.Seq, c.Source, c.Event, c.Before, c.After = op, s.seq, src, s.event, before, after
	dst, err := ti.enc.AppendValue(s.arena.reserve(ti.lastValueLen), c)
	c.Before, c.After = nil, nil
	if err != nil {
		return &RowError{Table: ti.db + "." + ti.table, Pos: string(s.posText), Row: src.Row, Err: err}
	}
	value := s.arena.commit(dst)
	ti.lastValueLen = len(value)
	opHdr := opHeader[op]
	if opHdr == nil {
		opHdr = []byte(op)
	}
	var invalid []byte
	if s.invalidText {
		invalid = s.invalidHeader(ti, src, before, after)
	}
	headers := s.newHeaders(4 + btoi(invalid != nil))
	headers[0] = kgo.RecordHeader{Key: schemas.HeaderOp, Value: opHdr}
	headers[1] = kgo.RecordHeader{Key: schemas.HeaderPos, Value: s.posHeader()}
	headers[2] = kgo.RecordHeader{Key: schemas.HeaderSeq, Value: s.arena.copy(strconv.AppendUint(s.valBuf[:0], s.seq, 10))}
	headers[3] = kgo.RecordHeader{Key: schemas.HeaderFormat, Value: s.formatHdr}
	if invalid != nil {
		headers[4] = kgo.RecordHeader{Key: schemas.HeaderInvalidText, Value: invalid}
	}
	rec := s.newRecord()
	rec.Topic, rec.Key, rec.Value, rec.Headers, rec.Timestamp = ti.topic, key, value, headers, s.eventTime
	if size := recordBytes(rec); size > ti.maxRecord {
		// Kafka would refuse it, and retrying would hold back every later change.
		if err := s.oversize(ctx, ti, src, op, rec, size, ti.maxRecord); err != nil {
			return err
		}
	}
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
	s.counted()
	return nil
}

// writeTombstone hands a tombstone of key, with sequence s.seq and no delete
// before it, to the open Kafka transaction: a keyed backfill's answer for a key
// that has no row (sinks remove it by key).
func (s *session) writeTombstone(ctx context.Context, ti *tableInfo, key []byte) error {
	headers := s.newHeaders(3)
	headers[0] = kgo.RecordHeader{Key: schemas.HeaderOp, Value: opHeader[schemas.OpDelete]}
	headers[1] = kgo.RecordHeader{Key: schemas.HeaderPos, Value: s.posHeader()}
	headers[2] = kgo.RecordHeader{Key: schemas.HeaderSeq, Value: s.arena.copy(strconv.AppendUint(s.valBuf[:0], s.seq, 10))}
	tomb := s.newRecord()
	tomb.Topic, tomb.Key, tomb.Headers, tomb.Timestamp = ti.topic, key, headers, s.eventTime
	return s.w.produce(ctx, tomb)
}

// posHeader returns the kanal.pos header value of the records being written.
func (s *session) posHeader() []byte {
	if s.posHdr == nil { // a new rows event, or a commit released the last copy
		s.posHdr = s.arena.copy(s.posText)
	}
	return s.posHdr
}

func (s *session) counted() {
	n := s.p.stats.Changes.Add(1)
	if s.p.emitHook != nil {
		s.p.emitHook(n)
	}
}
