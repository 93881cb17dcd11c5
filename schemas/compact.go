package schemas

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/hamba/avro/v2/pkg/crc64"
)

// FormatJSONCompact is the kanal JSON envelope without what repeats from record
// to record. What every record of a table version shares (source name, db,
// table, columns, key_fallback, nullability) is a descriptor, published once per
// table version to SchemasTopic under its fingerprint, in the same Kafka
// transaction as the first record that uses it (as the avro format publishes
// its schemas). A record value is a JSON array of the per-change fields and the
// row images as arrays in column order:
//
//	["<fingerprint>","u",1042,1,"binlog.000003",8812,"0-1-977",1717243200000,0,[7,"Ann","10.00"],[7,"Ann","12.50"]]
//
// fingerprint, op, seq, source.server_id, source.file, source.pos, source.gtid
// ("" when none), source.ts_ms, source.row, before, after, and a twelfth
// element, source.name, only when it differs from the descriptor's. Values are
// written exactly as in the JSON envelope, so both decode to the same Change
// (docs/formats.md).
const FormatJSONCompact = "json-compact"

// compactEncoder writes json-compact values. The per-event part of the source
// (server id to ts_ms) is encoded once per rows event, like jsonEncoder's.
type compactEncoder struct {
	prefix string
	source string
	// announced: fingerprints already written to the schemas topic by this
	// encoder (one producer session: any failure ends it, so nothing announced
	// here can have been rolled back).
	announced map[uint64]bool
	event     uint64
	src       []byte // `,server_id,"file",pos,"gtid",ts_ms,` of event
}

func newCompactEncoder(cfg EncoderConfig) (Encoder, error) {
	return &compactEncoder{prefix: cfg.TopicPrefix, source: cfg.Source, announced: map[uint64]bool{}}, nil
}

func (e *compactEncoder) Format() string { return FormatJSONCompact }

func (e *compactEncoder) Table(t *TableVersion) (TableEncoder, error) {
	desc := appendCompactDescriptor(nil, e.source, t)
	fp := compactFingerprint(desc)
	head := append([]byte(`["`), FingerprintKey(fp)...)
	return &compactTable{enc: e, desc: desc, fp: fp, head: append(head, `","`...),
		db: t.DB, table: t.Table, cols: len(t.Columns)}, nil
}

// appendCompactDescriptor appends the descriptor of a table version:
//
//	{"format":"json-compact","name":"main","db":"shop","table":"users","columns":[…],"nullable":[false,true],"key_fallback":false}
//
// columns as in the JSON envelope. The bytes are what the fingerprint covers,
// so the same version always gets the same one.
func appendCompactDescriptor(dst []byte, source string, t *TableVersion) []byte {
	dst = append(dst, `{"format":"`+FormatJSONCompact+`","name":`...)
	dst = appendJSONString(dst, source)
	dst = append(dst, `,"db":`...)
	dst = appendJSONString(dst, t.DB)
	dst = append(dst, `,"table":`...)
	dst = appendJSONString(dst, t.Table)
	dst = append(dst, `,"columns":`...)
	dst = AppendColumnsJSON(dst, t.Columns)
	dst = append(dst, `,"nullable":[`...)
	for i := range t.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendBool(dst, t.nullable(i))
	}
	dst = append(dst, `],"key_fallback":`...)
	dst = strconv.AppendBool(dst, t.KeyFallback)
	return append(dst, '}')
}

// compactFingerprint is the CRC-64-AVRO of a descriptor, the hash the avro
// format's keys in the same topic use.
func compactFingerprint(desc []byte) uint64 {
	h := crc64.New()
	_, _ = h.Write(desc)
	return h.Sum64()
}

// compactTable encodes one table version.
type compactTable struct {
	enc       *compactEncoder
	desc      []byte
	fp        uint64
	head      []byte // `["<fingerprint>","`
	db, table string
	cols      int
}

// Prepare publishes the descriptor (TablePreparer) unless this encoder already
// did.
func (t *compactTable) Prepare(context.Context) ([]OutRecord, error) {
	e := t.enc
	if e.announced[t.fp] {
		return nil, nil
	}
	e.announced[t.fp] = true
	return []OutRecord{{Topic: SchemasTopic(e.prefix), Key: []byte(FingerprintKey(t.fp)), Value: t.desc}}, nil
}

func (t *compactTable) AppendValue(dst []byte, c *RowChange) ([]byte, error) {
	if c.Source.DB != t.db || c.Source.Table != t.table {
		// The descriptor names the table: a change of another one would decode
		// as a change of this one.
		return dst, fmt.Errorf("%s.%s: change of %s.%s given to its encoder", t.db, t.table, c.Source.DB, c.Source.Table)
	}
	dst = append(dst, t.head...)
	dst = append(dst, c.Op...)
	dst = append(dst, '"', ',')
	dst = strconv.AppendUint(dst, c.Seq, 10)
	e := t.enc
	if e.src == nil || c.Event != e.event {
		e.src = appendCompactSource(e.src[:0], c.Source)
		e.event = c.Event
	}
	dst = append(dst, e.src...)
	dst = strconv.AppendInt(dst, int64(c.Source.Row), 10)
	dst = append(dst, ',')
	dst = t.appendRow(dst, c.Before)
	dst = append(dst, ',')
	dst = t.appendRow(dst, c.After)
	if c.Source.Name != e.source {
		dst = append(dst, ',')
		dst = appendJSONString(dst, c.Source.Name)
	}
	return append(dst, ']'), nil
}

// appendCompactSource appends the part of s that the changes of one rows event
// share, between seq and row: `,server_id,"file",pos,"gtid",ts_ms,`.
func appendCompactSource(dst []byte, s *Source) []byte {
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(s.ServerID), 10)
	dst = append(dst, ',')
	dst = appendJSONString(dst, s.File)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(s.Pos), 10)
	dst = append(dst, ',')
	dst = appendJSONString(dst, s.GTID)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, s.TsMs, 10)
	return append(dst, ',')
}

// appendRow writes a row image as an array of the table's columns, padded with
// null or cut as the JSON envelope's object would be.
func (t *compactTable) appendRow(dst []byte, row []Value) []byte {
	if row == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range t.cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		var v Value
		if i < len(row) {
			v = row[i]
		}
		dst = AppendValueJSON(dst, v)
	}
	return append(dst, ']')
}

// compactKeyFingerprint parses a FingerprintKey back into the fingerprint.
func compactKeyFingerprint(key string) (uint64, bool) {
	var b [8]byte
	if len(key) != 2*len(b) {
		return 0, false
	}
	if _, err := hex.Decode(b[:], []byte(key)); err != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}
