package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// Batch is a run of records from one partition of one topic, in offset order. A
// handler gets one batch at a time per partition; batches of different partitions
// may be handled concurrently.
type Batch struct {
	// Group is the consumer group the batch was read by; OffsetStore handlers key
	// their stored offsets by it.
	Group     string
	Topic     string
	Partition int32
	Records   []Record
}

// NextOffset is the offset to resume from once every record of the batch is
// applied: the last record's offset plus one. OffsetStore handlers store it in the
// same transaction as the batch's writes. It is -1 for an empty batch.
func (b Batch) NextOffset() int64 {
	if len(b.Records) == 0 {
		return -1
	}
	return b.Records[len(b.Records)-1].Offset + 1
}

// Record is one row change (or tombstone) read from Kafka.
type Record struct {
	Topic     string
	Partition int32
	// Offset is the Kafka offset. Several records share one offset only when a
	// Canal message carried several rows; Row then tells them apart.
	Offset int64
	Row    int
	// Key is the Kafka record key, "<db>.<table>:<pk>" (see docs/formats.md).
	Key string
	// Table is "db.table".
	Table string
	// Op is the change's operation; OpDelete for tombstones.
	Op schemas.Op
	// Seq is the change's row version: the producer's per-source sequence
	// (Change.Seq, or the kanal.seq header when the format does not carry it, as
	// canal-json does). A record without one (written by Canal itself) gets a
	// version derived from its offset and Row (OffsetVersion), also set in
	// Change.Seq. A tombstone has the Seq of the delete it follows, from its own
	// kanal.seq header, so it stays known after compaction removed the delete; it
	// is 0 only for tombstones written without headers (by other tools).
	Seq uint64
	// Pos is the source position of the change's rows event, "file:pos" (the
	// kanal.pos header); for a tombstone, that of the delete it follows. "" when
	// the record has no such header.
	Pos string
	// Change is the decoded change; nil for tombstones.
	Change *schemas.Change
	// Tombstone marks a record with a null value that follows a delete of the same
	// key. On a compacted topic the delete itself may be gone and only the tombstone
	// is left, so a sink must treat a tombstone as "the row with this key no longer
	// exists" and delete it by key.
	Tombstone bool
	// Timestamp is the Kafka record timestamp.
	Timestamp time.Time
	// Raw is the Kafka record as read; handlers must not modify it.
	Raw *kgo.Record
}

// Header returns the value of the record's first header named key, or "".
func (r *Record) Header(key string) string { return header(r.Raw, key) }

func header(r *kgo.Record, key string) string {
	if r == nil {
		return ""
	}
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// tableOfKey returns the "db.table" part of a record key.
func tableOfKey(key string) string {
	t, _, _ := strings.Cut(key, ":")
	return t
}

// recordDecoder turns Kafka records into records for handlers, for one worker
// goroutine. Besides the value decoder it remembers the last position header,
// format header and table name it made strings of: consecutive records of a
// partition mostly share them (one rows event, one table), so most records
// reuse the previous record's strings instead of allocating their own.
type recordDecoder struct {
	dec *schemas.Decoder
	// pos and format are the last kanal.pos and kanal.format header values.
	pos, format string
	// db, table and name: name is "db.table" of the last change decoded.
	db, table, name string
	// keys is the current block record keys (and position headers) are
	// copied into (see ownKey).
	keys []byte
}

// keyBlock is the size of the blocks record keys are copied into: the keys of
// dozens of records, so that copying costs about one allocation per block instead
// of one per record, and a key a handler keeps holds on to at most this much
// (never the fetched batch, as a key aliasing kgo.Record.Key would). A key of
// more than a quarter of it gets its own.
const keyBlock = 1024

// ownKey returns a copy of b, in the current key block.
func (d *recordDecoder) ownKey(b []byte) string {
	switch {
	case len(b) == 0:
		return ""
	case len(b) > keyBlock/4:
		return string(b)
	case cap(d.keys)-len(d.keys) < len(b):
		d.keys = make([]byte, 0, keyBlock)
	}
	start := len(d.keys)
	d.keys = append(d.keys, b...)
	// Never written again: later keys are appended after it, and a full block
	// is replaced, not reused.
	return unsafe.String(&d.keys[start], len(b))
}

// intern returns s if it holds the bytes b, else a new string of them.
func intern(s *string, b []byte) string {
	if *s != string(b) { // compared without a conversion
		*s = string(b)
	}
	return *s
}

// tableName returns c.Table(), the previous string when the table is the same.
func (d *recordDecoder) tableName(c *schemas.Change) string {
	if c.Source.DB != d.db || c.Source.Table != d.table || d.name == "" {
		d.db, d.table, d.name = c.Source.DB, c.Source.Table, c.Table()
	}
	return d.name
}

// decode appends the records a Kafka record holds for handlers to dst. A
// canal-json DDL message decodes to no records (err wraps schemas.ErrDDL); a value
// that cannot be decoded returns err and dst as it was.
func (d *recordDecoder) decode(ctx context.Context, dst []Record, kr *kgo.Record) ([]Record, error) {
	base := Record{
		Topic:     kr.Topic,
		Partition: kr.Partition,
		Offset:    kr.Offset,
		Key:       d.ownKey(kr.Key),
		Timestamp: kr.Timestamp,
		Raw:       kr,
	}
	var hseq uint64
	hasSeq := false
	var format, op []byte
	formatSeen, opSeen := false, false
	for _, h := range kr.Headers {
		switch h.Key {
		case schemas.HeaderSeq:
			hseq, _ = strconv.ParseUint(string(h.Value), 10, 64)
			hasSeq = true
		case schemas.HeaderPos:
			if d.pos != string(h.Value) { // compared without a conversion
				d.pos = d.ownKey(h.Value) // a new rows event: copied into the key block
			}
			base.Pos = d.pos
		case schemas.HeaderFormat:
			if !formatSeen { // the first one counts, as in Record.Header
				format, formatSeen = h.Value, true
			}
		case schemas.HeaderOp:
			if !opSeen {
				op, opSeen = h.Value, true
			}
		}
	}
	if kr.Value == nil {
		base.Tombstone = true
		base.Op = schemas.OpDelete
		base.Table = tableOfKey(base.Key)
		base.Seq = hseq
		return append(dst, base), nil
	}
	changes, err := d.dec.DecodeContext(ctx, intern(&d.format, format), kr.Value)
	if err != nil {
		return dst, err
	}
	// canal-json writes a snapshot read as an INSERT; the header keeps it.
	read := string(op) == string(schemas.OpRead)
	n := len(dst)
	for i, c := range changes {
		if c.Seq == 0 && len(changes) == 1 {
			c.Seq = hseq
		}
		if c.Seq == 0 && !hasSeq { // kanal's producer wrote none: Canal's record
			if c.Seq, err = OffsetVersion(kr.Offset, i); err != nil {
				return dst[:n], fmt.Errorf("%s/%d@%d: %w", kr.Topic, kr.Partition, kr.Offset, err)
			}
		}
		if read && c.Op == schemas.OpCreate {
			c.Op = schemas.OpRead
		}
		r := base
		r.Row = i
		r.Change = c
		r.Op = c.Op
		r.Seq = c.Seq
		r.Table = d.tableName(c)
		if r.Key == "" {
			r.Key = c.Key()
		}
		dst = append(dst, r)
	}
	return dst, nil
}

// Versions of records that carry no sequence. Canal writes no kanal.seq, so
// version-guarded sinks get one derived from where the record sits in Kafka.
// That is a valid row version because all changes of a row are in one partition,
// in binlog order: Canal partitions by a hash of the primary key
// (canal.mq.partitionHash) or writes a topic to one partition (its default).
// The rule, documented in docs/formats.md, is:
//
//	version = OffsetVersionBase + offset<<20 + row
//
// where row is the index of the change in its message (Record.Row; a Canal
// message may carry several rows under one offset). Derived versions lie above
// every producer sequence (which would need 2^62 changes to reach them), and below
// 2^63, so that SQL sinks store them in a BIGINT.
const (
	// OffsetVersionBase is the smallest version derived from an offset.
	OffsetVersionBase      uint64 = 1 << 62
	offsetVersionRowBits          = 20
	maxOffsetVersionOffset        = 1<<(62-offsetVersionRowBits) - 1
)

// ErrNoVersion is wrapped when a record without a sequence lies beyond the range
// OffsetVersion can number (offset ≥ 2^42, or a message of more than 2^20 rows).
var ErrNoVersion = errors.New("record has no kanal.seq and no version can be derived from its offset")

// ErrMixedVersions is wrapped when a partition carries records with a producer
// sequence after records without one (Canal's): their versions are not
// comparable, so such records are dead-lettered rather than silently ignored by
// version-guarded sinks. Give the new producer topics of its own.
var ErrMixedVersions = errors.New("topic mixes records with and without kanal.seq")

// OffsetVersion returns the version of the row-th change of the record at offset,
// for records without a producer sequence (see OffsetVersionBase).
func OffsetVersion(offset int64, row int) (uint64, error) {
	if offset < 0 || offset > maxOffsetVersionOffset || row < 0 || row >= 1<<offsetVersionRowBits {
		return 0, fmt.Errorf("%w: offset %d, row %d", ErrNoVersion, offset, row)
	}
	return OffsetVersionBase + uint64(offset)<<offsetVersionRowBits + uint64(row), nil
}
