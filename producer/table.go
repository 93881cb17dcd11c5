package producer

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/schemas"
)

// binaryCollation is the collation id of the "binary" character set: columns with it
// hold bytes, not text.
const binaryCollation = 63

// colDecoder turns go-mysql's decoded value into kanal's value type for one column.
type colDecoder struct {
	realType byte
	meta     uint16
	binary   bool
	unsigned bool
	enum     []string // labels, in UTF-8
	set      []string
	// cs is the character set of a text column's bytes (nil for other columns
	// and for the "binary" character set).
	cs *charset.Charset
	// padTo is the length of a BINARY(n) column: the binlog drops the trailing
	// zero bytes MySQL pads such values with, and a faithful copy restores them.
	padTo int
}

// tableInfo is everything kanal derives from one TableMapEvent: the column list as it
// was when the rows were written, never the live schema.
type tableInfo struct {
	db, table string
	topic     string
	columns   []schemas.Column
	nullable  []bool               // per column: may hold NULL (from the table map's null bitmap)
	enc       schemas.TableEncoder // the record value encoder of this table version
	// prep, when the encoder needs it, is called before the version's first
	// record (schemas.TablePreparer); nil once done.
	prep schemas.TablePreparer
	// lastValueLen is the size of the last record value encoded for this table:
	// the estimate for the next one (see arena.reserve).
	lastValueLen int
	// maxRecord is the largest record the table's topic takes (recordLimit).
	maxRecord   int
	pk          []int // indexes of the key columns
	keyFallback bool  // no primary key: every column forms the key
	decoders    []colDecoder
	fingerprint []byte
	// tm is the table map last checked against fingerprint: binlogStream hands
	// out one decoded table map per distinct byte string, so the same pointer
	// again needs no check.
	tm   *replication.TableMapEvent
	skip bool // filtered out
	// warnedInvalid: columns whose invalid text was logged already.
	warnedInvalid []bool
}

// maxCachedTables bounds the table maps the producer keeps: ids are not reused, but
// a long-running source hands out new ones with every ALTER, FLUSH TABLES and
// table-cache eviction.
const maxCachedTables = 4096

// tableFingerprint identifies a table map's shape: a table map with the same id but
// another shape (after an ALTER) must not reuse the cached tableInfo.
func tableFingerprint(tm *replication.TableMapEvent) []byte {
	return appendTableFingerprint(nil, tm)
}

// appendTableFingerprint appends tableFingerprint(tm) to b. It covers everything
// the decoders and the envelope take from the table map — types, metadata,
// nullability, signedness, names, key, ENUM/SET labels and charsets — so a cached
// table is reused only when decoding it again would give the same result.
func appendTableFingerprint(b []byte, tm *replication.TableMapEvent) []byte {
	b = append(b, tm.Schema...)
	b = append(b, 0)
	b = append(b, tm.Table...)
	b = append(b, 0)
	b = append(b, tm.ColumnType...)
	for _, m := range tm.ColumnMeta {
		b = append(b, byte(m), byte(m>>8))
	}
	b = append(b, tm.NullBitmap...)
	b = append(b, tm.SignednessBitmap...)
	for _, n := range tm.ColumnName {
		b = append(b, n...)
		b = append(b, 0)
	}
	b = appendUint16s(append(b, 1), tm.PrimaryKey)
	b = appendUint16s(append(b, 2), tm.ColumnCharset)
	b = appendUint16s(append(b, 3), tm.EnumSetColumnCharset)
	b = appendUint16s(append(b, 4), tm.DefaultCharset)
	b = appendUint16s(append(b, 5), tm.EnumSetDefaultCharset)
	for i, labels := range [2][][][]byte{tm.EnumStrValue, tm.SetStrValue} {
		b = append(b, byte(6+i))
		for _, col := range labels {
			for _, l := range col {
				b = append(b, l...)
				b = append(b, 0)
			}
			b = append(b, 1)
		}
	}
	return b
}

// appendUint16s appends each value's low 16 bits (column indexes and collation ids
// fit) and the count, so that lists of different lengths never look alike.
func appendUint16s(b []byte, vs []uint64) []byte {
	for _, v := range vs {
		b = append(b, byte(v), byte(v>>8))
	}
	return append(b, byte(len(vs)), byte(len(vs)>>8))
}

// realType resolves the type hidden in the metadata of MYSQL_TYPE_STRING columns
// (ENUM and SET are logged as STRING with the real type in the metadata's high byte).
func realType(tp byte, meta uint16) byte {
	if tp == mysql.MYSQL_TYPE_STRING && meta >= 256 {
		b0 := byte(meta >> 8)
		if b0&0x30 != 0x30 {
			return b0 | 0x30
		}
		return b0
	}
	return tp
}

// newTableInfo builds the column list from a table map that carries FULL row
// metadata. It fails when the metadata is missing, because guessing column names from
// the live schema would mislabel rows written before an ALTER TABLE.
func newTableInfo(tm *replication.TableMapEvent, st *sourceText) (*tableInfo, error) {
	n := int(tm.ColumnCount)
	if len(tm.ColumnName) != n {
		return nil, fmt.Errorf("%w: table map of %s.%s carries no column names; set binlog_row_metadata=FULL on the server (rows written before that cannot be decoded with names)",
			ErrServerConfig, tm.Schema, tm.Table)
	}
	ti := &tableInfo{
		db:       string(tm.Schema),
		table:    string(tm.Table),
		columns:  make([]schemas.Column, n),
		nullable: make([]bool, n),
		decoders: make([]colDecoder, n),
	}
	unsigned := tm.UnsignedMap()
	collations := st.columnCollations(tm)
	enums := tm.EnumStrValueMap()
	sets := tm.SetStrValueMap()
	for i := 0; i < n; i++ {
		tp, meta := tm.ColumnType[i], tm.ColumnMeta[i]
		d := colDecoder{realType: realType(tp, meta), meta: meta, unsigned: unsigned[i], enum: enums[i], set: sets[i]}
		switch coll := collations[i]; {
		case coll == binaryCollation && d.realType != mysql.MYSQL_TYPE_ENUM && d.realType != mysql.MYSQL_TYPE_SET:
			d.binary = true
			if d.realType == mysql.MYSQL_TYPE_STRING {
				d.padTo = fixedStringLength(meta)
			}
		case coll != 0 && d.realType != mysql.MYSQL_TYPE_GEOMETRY:
			cs, err := st.charsetOf(tm, i, coll)
			if err != nil {
				return nil, err
			}
			if cs.Binary() {
				break
			}
			if d.realType == mysql.MYSQL_TYPE_ENUM || d.realType == mysql.MYSQL_TYPE_SET {
				d.enum, d.set = labels(cs, d.enum), labels(cs, d.set)
			} else {
				d.cs = cs
			}
		}
		ti.decoders[i] = d
		ti.columns[i] = schemas.Column{Name: string(tm.ColumnName[i]), Type: d.typeName()}
		known, null := tm.Nullable(i)
		ti.nullable[i] = null || !known
	}
	for _, p := range tm.PrimaryKey {
		if int(p) < n {
			ti.pk = append(ti.pk, int(p))
			ti.columns[p].PK = true
		}
	}
	if len(ti.pk) == 0 {
		ti.keyFallback = true
		for i := range ti.columns {
			ti.pk = append(ti.pk, i)
			ti.columns[i].PK = true
		}
	}
	ti.fingerprint = tableFingerprint(tm)
	return ti, nil
}

func fspSuffix(base string, fsp uint16) string {
	if fsp == 0 {
		return base
	}
	return base + "(" + strconv.Itoa(int(fsp)) + ")"
}

// typeName renders a MySQL-style type name from the binlog's type codes.
func (d colDecoder) typeName() string {
	u := ""
	if d.unsigned {
		u = " unsigned"
	}
	switch d.realType {
	case mysql.MYSQL_TYPE_TINY:
		return "tinyint" + u
	case mysql.MYSQL_TYPE_SHORT:
		return "smallint" + u
	case mysql.MYSQL_TYPE_INT24:
		return "mediumint" + u
	case mysql.MYSQL_TYPE_LONG:
		return "int" + u
	case mysql.MYSQL_TYPE_LONGLONG:
		return "bigint" + u
	case mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_DECIMAL:
		return fmt.Sprintf("decimal(%d,%d)", d.meta>>8, d.meta&0xff)
	case mysql.MYSQL_TYPE_FLOAT:
		return "float"
	case mysql.MYSQL_TYPE_DOUBLE:
		return "double"
	case mysql.MYSQL_TYPE_BIT:
		return fmt.Sprintf("bit(%d)", (d.meta>>8)*8+(d.meta&0xff))
	case mysql.MYSQL_TYPE_TIMESTAMP:
		return "timestamp"
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		return fspSuffix("timestamp", d.meta)
	case mysql.MYSQL_TYPE_DATETIME:
		return "datetime"
	case mysql.MYSQL_TYPE_DATETIME2:
		return fspSuffix("datetime", d.meta)
	case mysql.MYSQL_TYPE_TIME:
		return "time"
	case mysql.MYSQL_TYPE_TIME2:
		return fspSuffix("time", d.meta)
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		return "date"
	case mysql.MYSQL_TYPE_YEAR:
		return "year"
	case mysql.MYSQL_TYPE_ENUM:
		return "enum"
	case mysql.MYSQL_TYPE_SET:
		return "set"
	case mysql.MYSQL_TYPE_STRING:
		if d.binary {
			return "binary"
		}
		return "char"
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		if d.binary {
			return "varbinary"
		}
		return "varchar"
	case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_TINY_BLOB, mysql.MYSQL_TYPE_MEDIUM_BLOB, mysql.MYSQL_TYPE_LONG_BLOB:
		size := [...]string{"tiny", "", "medium", "long"}
		prefix := ""
		if d.meta >= 1 && d.meta <= 4 {
			prefix = size[d.meta-1]
		}
		if d.binary {
			return prefix + "blob"
		}
		return prefix + "text"
	case mysql.MYSQL_TYPE_JSON:
		return "json"
	case mysql.MYSQL_TYPE_GEOMETRY:
		return "geometry"
	}
	return "unknown(" + strconv.Itoa(int(d.realType)) + ")"
}

// decode converts one value decoded by go-mysql (with ParseTime on) into kanal's
// value representation (see the schemas package documentation), unboxed: text is
// not copied (see below) and temporal values are formatted into *scratch, so the
// result is valid until the event is released and *scratch is reset.
func (d *colDecoder) decode(v any, scratch *[]byte) (schemas.Value, error) {
	switch x := v.(type) {
	case nil:
		return schemas.NullValue(), nil
	case int8:
		return schemas.IntValue(int64(x)), nil
	case int16:
		return schemas.IntValue(int64(x)), nil
	case int32:
		return schemas.IntValue(int64(x)), nil
	case int64:
		switch d.realType {
		case mysql.MYSQL_TYPE_ENUM:
			return d.enumLabel(x)
		case mysql.MYSQL_TYPE_SET:
			return schemas.StringValue(d.setLabels(x)), nil
		case mysql.MYSQL_TYPE_BIT:
			return schemas.UintValue(uint64(x)), nil
		}
		return schemas.IntValue(x), nil
	case uint8:
		return schemas.UintValue(uint64(x)), nil
	case uint16:
		return schemas.UintValue(uint64(x)), nil
	case uint32:
		return schemas.UintValue(uint64(x)), nil
	case uint64:
		return schemas.UintValue(x), nil
	case int:
		return schemas.IntValue(int64(x)), nil
	case float32:
		return schemas.Float32Value(x), nil
	case float64:
		return schemas.Float64Value(x), nil
	case string:
		return d.decodeString(x, scratch), nil
	case []byte:
		return d.decodeBytes(x, scratch), nil
	case *replication.JsonDiff:
		return schemas.Value{}, fmt.Errorf("%w: a partial JSON update (binlog_row_value_options = PARTIAL_JSON) holds only "+
			"the changed part of the document, and kanal writes whole values: SET GLOBAL binlog_row_value_options = '' "+
			"(and in my.cnf [mysqld]: binlog_row_value_options = \"\")", ErrServerConfig)
	case time.Time:
		// Formatted into the image's scratch buffer: should it grow, the strings
		// made before keep the old array alive and intact (nothing is overwritten
		// until the buffer is reset for the next row image).
		n := len(*scratch)
		switch d.realType {
		case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
			*scratch = appendTime(*scratch, x.UTC(), int(d.fsp()), true)
		default:
			*scratch = appendTime(*scratch, x, int(d.fsp()), false)
		}
		return schemas.StringBytesValue((*scratch)[n:len(*scratch):len(*scratch)]), nil
	}
	return schemas.Value{}, fmt.Errorf("unexpected %T value for %s column", v, d.typeName())
}

// decodeString is decode of a string (without boxing it into an interface:
// backfills call it for every text value).
func (d *colDecoder) decodeString(x string, scratch *[]byte) schemas.Value {
	switch d.realType {
	case mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_DECIMAL:
		return schemas.DecimalValue(x)
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
		// Only the zero timestamp arrives as text with ParseTime on.
		return schemas.StringValue(x)
	case mysql.MYSQL_TYPE_TIME2:
		return d.timeValue(x, scratch)
	}
	if d.binary {
		return schemas.BytesValue(d.pad([]byte(x)))
	}
	// go-mysql returns strings that alias the event's packet buffer. That buffer
	// is allocated per event and never reused, and converted rows live only
	// while their event is handled (they are encoded into record bytes at once),
	// so text that is UTF-8 already is used as is: copying every string value
	// was one of the producer's largest allocation sources (docs/bench.md).
	return d.text(unsafe.Slice(unsafe.StringData(x), len(x)), scratch)
}

// decodeBytes is decode of a []byte.
func (d *colDecoder) decodeBytes(x []byte, scratch *[]byte) schemas.Value {
	if d.binary || d.realType == mysql.MYSQL_TYPE_GEOMETRY {
		return schemas.BytesValue(d.pad(x))
	}
	// TEXT: like the strings above, the bytes alias the event's own buffer,
	// which nothing writes to after go-mysql decoded it (see above).
	return d.text(x, scratch)
}

// timeValue gives a TIME(fsp) value exactly fsp fractional digits, as DATETIME
// and TIMESTAMP values have: go-mysql leaves the fraction out when it is zero
// ("-838:59:59" for TIME(2) -838:59:59.00).
func (d *colDecoder) timeValue(x string, scratch *[]byte) schemas.Value {
	fsp := int(d.fsp())
	if fsp == 0 || strings.IndexByte(x, '.') >= 0 {
		return schemas.StringValue(x)
	}
	n := len(*scratch)
	*scratch = append(append(*scratch, x...), '.')
	*scratch = append(*scratch, "000000"[:fsp]...)
	return schemas.StringBytesValue((*scratch)[n:len(*scratch):len(*scratch)])
}

// pad copies b (go-mysql's values alias the packet) and restores BINARY(n) padding.
func (d *colDecoder) pad(b []byte) []byte {
	n := max(len(b), d.padTo)
	out := make([]byte, n)
	copy(out, b)
	return out
}

// fixedStringLength decodes the byte length of a CHAR/BINARY column from its
// table-map metadata (the same packing go-mysql's row decoder reads).
func fixedStringLength(meta uint16) int {
	if meta < 256 {
		return int(meta)
	}
	b0, b1 := byte(meta>>8), byte(meta&0xff)
	if b0&0x30 != 0x30 {
		return int(uint16(b1) | uint16((b0&0x30)^0x30)<<4)
	}
	return int(b1)
}

func (d *colDecoder) fsp() uint16 {
	switch d.realType {
	case mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIME2:
		return d.meta
	}
	return 0
}

func (d *colDecoder) enumLabel(i int64) (schemas.Value, error) {
	if i == 0 {
		// MySQL's "invalid value" index: stored as the empty string.
		return schemas.StringValue(""), nil
	}
	if i < 0 || int(i) > len(d.enum) {
		return schemas.Value{}, fmt.Errorf("enum index %d out of range (%d labels)", i, len(d.enum))
	}
	return schemas.StringValue(d.enum[i-1]), nil
}

func (d *colDecoder) setLabels(mask int64) string {
	var b strings.Builder
	for i, label := range d.set {
		if mask&(1<<uint(i)) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(label)
		}
	}
	return b.String()
}

// appendTime formats t as "2006-01-02 15:04:05[.ffffff]" (DATETIME) or
// "2006-01-02T15:04:05[.ffffff]Z" (TIMESTAMP, UTC) with exactly fsp fractional digits,
// without time.Format's layout interpretation (it dominated the profile).
func appendTime(dst []byte, t time.Time, fsp int, utc bool) []byte {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = appendInt(dst, year, 4)
	dst = append(dst, '-')
	dst = appendInt(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendInt(dst, day, 2)
	if utc {
		dst = append(dst, 'T')
	} else {
		dst = append(dst, ' ')
	}
	dst = appendInt(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendInt(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendInt(dst, sec, 2)
	if fsp > 0 {
		dst = append(dst, '.')
		frac := t.Nanosecond() / 1000
		var digits [6]byte
		for i := 5; i >= 0; i-- {
			digits[i] = byte('0' + frac%10)
			frac /= 10
		}
		dst = append(dst, digits[:fsp]...)
	}
	if utc {
		dst = append(dst, 'Z')
	}
	return dst
}

func appendInt(dst []byte, v, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || i > len(buf)-width {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}
