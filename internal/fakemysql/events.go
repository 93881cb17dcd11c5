package fakemysql

import (
	"encoding/binary"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/klauspost/compress/zstd"
)

// ServerVersion is the version the fake server reports and writes into its
// format description event.
const ServerVersion = "8.0.36"

// Binlog builds a binlog file's events byte for byte as MySQL 8.0 writes them
// (v4 events of a 19-byte header, row events v2, the optional table map
// metadata of binlog_row_metadata=FULL), without checksums. Add places an
// event in the file (setting its end position); the event constructors alone
// make events with position 0, as the events inside a transaction payload are.
type Binlog struct {
	File     string
	ServerID uint32
	// Events are the file's events in order, each with its header.
	Events [][]byte
	pos    uint32
}

// NewBinlog starts a file: the fake rotate event a dump begins with, and the
// format description event.
func NewBinlog(file string, serverID uint32) *Binlog {
	b := &Binlog{File: file, ServerID: serverID, pos: 4}
	rot := binary.LittleEndian.AppendUint64(nil, 4)
	rot = append(rot, file...)
	b.Events = append(b.Events, b.header(replication.ROTATE_EVENT, rot, 0, 0))
	b.Add(b.formatDescription())
	return b
}

// Pos is the end position of the last event added.
func (b *Binlog) Pos() uint32 { return b.pos }

// Add appends events to the file, each at the current position.
func (b *Binlog) Add(events ...[]byte) {
	for _, ev := range events {
		ev = append([]byte(nil), ev...)
		b.pos += uint32(len(ev))
		binary.LittleEndian.PutUint32(ev[13:], b.pos)
		b.Events = append(b.Events, ev)
	}
}

func (b *Binlog) header(t replication.EventType, body []byte, logPos uint32, flags uint16) []byte {
	ev := make([]byte, 19, 19+len(body))
	binary.LittleEndian.PutUint32(ev[0:], 1_700_000_000)
	ev[4] = byte(t)
	binary.LittleEndian.PutUint32(ev[5:], b.ServerID)
	binary.LittleEndian.PutUint32(ev[9:], uint32(19+len(body)))
	binary.LittleEndian.PutUint32(ev[13:], logPos)
	binary.LittleEndian.PutUint16(ev[17:], flags)
	return append(ev, body...)
}

func (b *Binlog) event(t replication.EventType, body []byte) []byte { return b.header(t, body, 0, 0) }

// postHeaderLengths are MySQL 8.0's post-header lengths, by event type - 1
// (as a MySQL 8.0.27 format description event lists them).
var postHeaderLengths = []byte{0x38, 0xd, 0x0, 0x8, 0x0, 0x12, 0x0, 0x4, 0x4, 0x4, 0x4, 0x12, 0x0, 0x0, 0x5c, 0x0, 0x4, 0x1a,
	0x8, 0x0, 0x0, 0x0, 0x8, 0x8, 0x8, 0x2, 0x0, 0x0, 0x0, 0xa, 0xa, 0xa, 0x19, 0x19, 0x0, 0x12, 0x34, 0x0, 0xa, 0x28, 0x0}

func (b *Binlog) formatDescription() []byte {
	body := binary.LittleEndian.AppendUint16(nil, 4)
	var v [50]byte
	copy(v[:], ServerVersion)
	body = append(body, v[:]...)
	body = binary.LittleEndian.AppendUint32(body, 1_700_000_000)
	body = append(body, 19)
	body = append(body, postHeaderLengths...)
	body = append(body, byte(replication.BINLOG_CHECKSUM_ALG_OFF), 0, 0, 0, 0)
	return b.event(replication.FORMAT_DESCRIPTION_EVENT, body)
}

// Query is a QUERY_EVENT (BEGIN, or a DDL statement).
func (b *Binlog) Query(schema, query string) []byte {
	body := make([]byte, 13)
	body[8] = byte(len(schema))
	body = append(body, schema...)
	body = append(body, 0)
	body = append(body, query...)
	return b.event(replication.QUERY_EVENT, body)
}

// XID ends a transaction.
func (b *Binlog) XID(xid uint64) []byte {
	return b.event(replication.XID_EVENT, binary.LittleEndian.AppendUint64(nil, xid))
}

// GTID starts a transaction with gtid_mode=ON: sid:gno. A zero sid makes the
// ANONYMOUS_GTID_EVENT of gtid_mode=OFF.
func (b *Binlog) GTID(sid [16]byte, gno int64) []byte {
	t := replication.GTID_EVENT
	if sid == [16]byte{} {
		t, gno = replication.ANONYMOUS_GTID_EVENT, 0
	}
	body := append([]byte{1}, sid[:]...)
	body = binary.LittleEndian.AppendUint64(body, uint64(gno))
	body = append(body, replication.LogicalTimestampTypeCode)
	body = binary.LittleEndian.AppendUint64(body, 0)           // last_committed
	body = binary.LittleEndian.AppendUint64(body, uint64(gno)) // sequence_number
	body = append(body, 0, 0, 0, 0, 0, 0, 0)                   // immediate commit timestamp
	body = append(body, mysql.PutLengthEncodedInt(0)...)       // transaction length
	body = binary.LittleEndian.AppendUint32(body, 80036)       // immediate server version
	return b.event(t, body)
}

// Column is one column of a Table.
type Column struct {
	Name string
	Type byte
	Meta []byte // the column's table map metadata bytes
	// Collation of a text, ENUM or SET column; 0 for others.
	Collation uint64
	Unsigned  bool
	Enum      []string // ENUM labels, in the column's character set
}

// Table is what a table map describes.
type Table struct {
	ID            uint64
	Schema, Table string
	Columns       []Column
	PK            []uint64
}

func isText(t byte) bool {
	switch t {
	case mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BLOB:
		return true
	}
	return false
}

// TableMap is a TABLE_MAP_EVENT with binlog_row_metadata=FULL's metadata.
// Text collations go into COLUMN_CHARSET, one per text column (MySQL writes
// DEFAULT_CHARSET instead when most columns share one).
func (b *Binlog) TableMap(t Table) []byte {
	var id [8]byte
	binary.LittleEndian.PutUint64(id[:], t.ID)
	body := append([]byte(nil), id[:6]...)
	body = append(body, 1, 0) // flags
	body = append(body, byte(len(t.Schema)))
	body = append(append(body, t.Schema...), 0)
	body = append(body, byte(len(t.Table)))
	body = append(append(body, t.Table...), 0)
	body = append(body, mysql.PutLengthEncodedInt(uint64(len(t.Columns)))...)
	var meta []byte
	for _, c := range t.Columns {
		body = append(body, c.Type)
		meta = append(meta, c.Meta...)
	}
	body = append(body, mysql.PutLengthEncodedInt(uint64(len(meta)))...)
	body = append(body, meta...)
	nulls := make([]byte, (len(t.Columns)+7)/8)
	for i := range t.Columns {
		nulls[i/8] |= 1 << (i % 8)
	}
	body = append(body, nulls...)

	field := func(typ byte, v []byte) {
		body = append(body, typ)
		body = append(body, mysql.PutLengthEncodedInt(uint64(len(v)))...)
		body = append(body, v...)
	}
	var sign []byte
	n := 0
	var charsets, enumCharsets, names, enums, pk []byte
	for _, c := range t.Columns {
		switch c.Type {
		case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG,
			mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_YEAR:
			if n%8 == 0 {
				sign = append(sign, 0)
			}
			if c.Unsigned {
				sign[n/8] |= 0x80 >> (n % 8)
			}
			n++
		}
		switch {
		case c.Type == mysql.MYSQL_TYPE_STRING && len(c.Enum) > 0:
			enumCharsets = append(enumCharsets, mysql.PutLengthEncodedInt(c.Collation)...)
			enums = append(enums, mysql.PutLengthEncodedInt(uint64(len(c.Enum)))...)
			for _, l := range c.Enum {
				enums = append(enums, mysql.PutLengthEncodedString([]byte(l))...)
			}
		case isText(c.Type):
			charsets = append(charsets, mysql.PutLengthEncodedInt(c.Collation)...)
		}
		names = append(names, byte(len(c.Name)))
		names = append(names, c.Name...)
	}
	for _, p := range t.PK {
		pk = append(pk, mysql.PutLengthEncodedInt(p)...)
	}
	if sign != nil {
		field(replication.TABLE_MAP_OPT_META_SIGNEDNESS, sign)
	}
	if charsets != nil {
		field(replication.TABLE_MAP_OPT_META_COLUMN_CHARSET, charsets)
	}
	field(replication.TABLE_MAP_OPT_META_COLUMN_NAME, names)
	if enums != nil {
		field(replication.TABLE_MAP_OPT_META_ENUM_STR_VALUE, enums)
	}
	field(replication.TABLE_MAP_OPT_META_SIMPLE_PRIMARY_KEY, pk)
	if enumCharsets != nil {
		field(replication.TABLE_MAP_OPT_META_ENUM_AND_SET_COLUMN_CHARSET, enumCharsets)
	}
	return b.event(replication.TABLE_MAP_EVENT, body)
}

// Rows is a rows event v2 (WRITE_ROWS_EVENTv2, UPDATE_ROWS_EVENTv2,
// DELETE_ROWS_EVENTv2 or PARTIAL_UPDATE_ROWS_EVENT) of every column of a table
// of ncols columns, ending its statement; each image is Image's bytes (an
// update has a before and an after image per row).
func (b *Binlog) Rows(t replication.EventType, tableID uint64, ncols int, images ...[]byte) []byte {
	var id [8]byte
	binary.LittleEndian.PutUint64(id[:], tableID)
	body := append([]byte(nil), id[:6]...)
	body = binary.LittleEndian.AppendUint16(body, 1) // STMT_END_F
	body = binary.LittleEndian.AppendUint16(body, 2) // no extra data
	body = append(body, mysql.PutLengthEncodedInt(uint64(ncols))...)
	all := make([]byte, (ncols+7)/8)
	for i := range ncols {
		all[i/8] |= 1 << (i % 8)
	}
	body = append(body, all...)
	if t == replication.UPDATE_ROWS_EVENTv2 || t == replication.PARTIAL_UPDATE_ROWS_EVENT {
		body = append(body, all...)
	}
	for _, im := range images {
		body = append(body, im...)
	}
	return b.event(t, body)
}

// Image is one row image: the NULL bitmap (nil values are NULL) and the
// encoded values of the others, in column order.
func Image(vals ...[]byte) []byte {
	out := make([]byte, (len(vals)+7)/8)
	for i, v := range vals {
		if v == nil {
			out[i/8] |= 1 << (i % 8)
		}
	}
	for _, v := range vals {
		out = append(out, v...)
	}
	return out
}

// Long encodes an INT value.
func Long(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// VarString encodes a VARCHAR value of a column of at most maxBytes bytes.
func VarString(s []byte, maxBytes int) []byte {
	if maxBytes < 256 {
		return append([]byte{byte(len(s))}, s...)
	}
	return append(binary.LittleEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// JSON encodes a JSON column value (binary JSON document doc).
func JSON(doc []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(doc))), doc...)
}

// JSONObjectInt16 is MySQL's binary JSON of {"<key>": v}.
func JSONObjectInt16(key string, v int16) []byte {
	size := 4 + 4 + 3 + len(key)
	doc := []byte{0x00} // small object
	doc = binary.LittleEndian.AppendUint16(doc, 1)
	doc = binary.LittleEndian.AppendUint16(doc, uint16(size))
	doc = binary.LittleEndian.AppendUint16(doc, uint16(4+4+3)) // key offset
	doc = binary.LittleEndian.AppendUint16(doc, uint16(len(key)))
	doc = append(doc, 0x05) // int16, inlined
	doc = binary.LittleEndian.AppendUint16(doc, uint16(v))
	return append(doc, key...)
}

// PartialJSONReplace is the after image of a PARTIAL_UPDATE_ROWS_EVENT whose
// only JSON column is replaced at path by the int16 v, the other values as
// vals (the JSON column's own slot is ignored; jsonCol is its index).
func PartialJSONReplace(jsonCol int, path string, v int16, vals ...[]byte) []byte {
	out := mysql.PutLengthEncodedInt(1) // PARTIAL_JSON_UPDATES
	out = append(out, 1)                // partial bit of the (only) JSON column
	diff := []byte{0}                   // REPLACE
	diff = append(diff, mysql.PutLengthEncodedInt(uint64(len(path)))...)
	diff = append(diff, path...)
	val := binary.LittleEndian.AppendUint16([]byte{0x05}, uint16(v))
	diff = append(diff, mysql.PutLengthEncodedInt(uint64(len(val)))...)
	diff = append(diff, val...)
	vals[jsonCol] = JSON(diff)
	return append(out, Image(vals...)...)
}

// Payload is a TRANSACTION_PAYLOAD_EVENT of binlog_transaction_compression=ON:
// the zstd-compressed events (made without a position) after the fields.
func (b *Binlog) Payload(events ...[]byte) ([]byte, error) {
	var raw []byte
	for _, ev := range events {
		raw = append(raw, ev...)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	compressed := enc.EncodeAll(raw, nil)
	var body []byte
	field := func(typ, v uint64) {
		enc := mysql.PutLengthEncodedInt(v)
		body = append(body, mysql.PutLengthEncodedInt(typ)...)
		body = append(body, mysql.PutLengthEncodedInt(uint64(len(enc)))...)
		body = append(body, enc...)
	}
	field(replication.OTW_PAYLOAD_COMPRESSION_TYPE_FIELD, replication.ZSTD)
	field(replication.OTW_PAYLOAD_UNCOMPRESSED_SIZE_FIELD, uint64(len(raw)))
	field(replication.OTW_PAYLOAD_SIZE_FIELD, uint64(len(compressed)))
	body = append(body, replication.OTW_PAYLOAD_HEADER_END_MARK)
	body = append(body, compressed...)
	return b.event(replication.TRANSACTION_PAYLOAD_EVENT, body), nil
}
