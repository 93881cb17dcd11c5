package consumer

import (
	"context"
	"strconv"
	"strings"
	"time"

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
	// Seq is the change's per-source sequence (a row version): Change.Seq, or the
	// kanal.seq header when the format does not carry it (canal-json). A
	// tombstone has the Seq of the delete it follows, from its own kanal.seq
	// header, so it stays known after compaction removed the delete; it is 0 only
	// for tombstones written without headers (by other tools).
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

// decode turns a Kafka record into records for handlers. A canal-json DDL message
// decodes to no records (skip is true); a value that cannot be decoded returns err.
func decode(ctx context.Context, d *schemas.Decoder, kr *kgo.Record) (recs []Record, err error) {
	base := Record{
		Topic:     kr.Topic,
		Partition: kr.Partition,
		Offset:    kr.Offset,
		Key:       string(kr.Key),
		Timestamp: kr.Timestamp,
		Raw:       kr,
	}
	var hseq uint64
	for _, h := range kr.Headers {
		switch h.Key {
		case schemas.HeaderSeq:
			hseq, _ = strconv.ParseUint(string(h.Value), 10, 64)
		case schemas.HeaderPos:
			base.Pos = string(h.Value)
		}
	}
	if kr.Value == nil {
		base.Tombstone = true
		base.Op = schemas.OpDelete
		base.Table = tableOfKey(base.Key)
		base.Seq = hseq
		return []Record{base}, nil
	}
	changes, err := d.DecodeContext(ctx, header(kr, schemas.HeaderFormat), kr.Value)
	if err != nil {
		return nil, err
	}
	recs = make([]Record, 0, len(changes))
	for i, c := range changes {
		if c.Seq == 0 && len(changes) == 1 {
			c.Seq = hseq
		}
		r := base
		r.Row = i
		r.Change = c
		r.Op = c.Op
		r.Seq = c.Seq
		r.Table = c.Table()
		if r.Key == "" {
			r.Key = c.Key()
		}
		recs = append(recs, r)
	}
	return recs, nil
}
