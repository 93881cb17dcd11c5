package producer

import (
	"encoding/binary"
	"math"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/schemas"
)

// rowDecoder decodes the rows events of captured tables straight from the event's
// bytes into schemas.Value images. It runs in go-mysql's parsing goroutine as the
// syncer's RowsEventDecodeFunc, in place of go-mysql's own row decoding: that boxed
// every value into an `any` (and a DECIMAL through a copy and a strings.Builder, a
// DATETIME through a time.Time), about 14 allocations per row, which the producer
// then converted once more into its own representation (docs/bench.md).
//
// It handles the common column types and produces exactly what convert makes of
// go-mysql's values. Anything else — other column types, zero or pre-1970 dates,
// partial row images, MySQL's partial JSON updates, MariaDB's compressed events, or
// bytes it cannot make sense of — is left to go-mysql's decoder for the whole event,
// so unusual input takes the proven path. Rows of tables the filter excludes are not
// decoded at all.
type rowDecoder struct {
	filter filter
	text   *sourceText
	// fallbacks counts rows events of captured tables left to go-mysql's decoder
	// (Stats.SlowRowsEvents): a rise after an upgrade or a schema change says the
	// fast path no longer applies.
	fallbacks *atomic.Uint64
	plans     map[uint64]*rowPlan
	fpBuf     []byte
	// pool recycles decodedRows between go-mysql's goroutine, which fills them,
	// and the session, which releases them. Not a sync.Pool: the producer runs
	// a GC cycle every few milliseconds, and each one emptied it (a tenth of the
	// bytes the producer allocated). A stack, so the few values in use at a time
	// are reused and keep buffers grown to the table's events.
	poolMu sync.Mutex
	pool   []*decodedRows
	// Indexes of RowsEvent's unexported compressed and eventType fields; nil when
	// go-mysql's struct no longer has them, which turns this decoder off.
	compressedIdx, eventTypeIdx []int
}

// rowPlan is what rowDecoder derives from one table map.
type rowPlan struct {
	tm          *replication.TableMapEvent // the table map last checked against fingerprint
	fingerprint []byte
	skip        bool // excluded by the filter: rows are not decoded
	fast        bool // every column has a type decoded here
	cols        []colDecoder
	strLen      []int // CHAR/VARCHAR: the declared byte length that sizes the length prefix
}

// decodedRows is one rows event decoded by rowDecoder: images of ncols values each,
// one after the other (an update's before image, then its after image). The values'
// text aliases the event's buffer, which go-mysql allocates per event and never
// reuses, or text, which formatted values were written to.
type decodedRows struct {
	vals   []schemas.Value
	text   []byte
	ncols  int
	images int
	// invalid counts the values of text decoded from bytes invalid in their
	// character set (schemas.Value.InvalidText): the handler looks for them
	// only when there are any.
	invalid int
	owner   *rowDecoder // nil: binlogStream's, not pooled
	// RowsEvent.Rows is set to holder: one row holding this value, which the
	// handler recognises (decodedRowsOf). Kept here so that costs no allocation.
	holder [1][]any
	one    [1]any
}

func newRowDecoder(f filter, st *sourceText, fallbacks *atomic.Uint64) *rowDecoder {
	if fallbacks == nil {
		fallbacks = new(atomic.Uint64)
	}
	d := &rowDecoder{filter: f, text: st, fallbacks: fallbacks, plans: map[uint64]*rowPlan{}}
	t := reflect.TypeFor[replication.RowsEvent]()
	c, okC := t.FieldByName("compressed")
	e, okE := t.FieldByName("eventType")
	if okC && okE && c.Type.Kind() == reflect.Bool && e.Type.Kind() == reflect.Uint8 {
		d.compressedIdx, d.eventTypeIdx = c.Index, e.Index
	}
	return d
}

// decode is the syncer's RowsEventDecodeFunc.
func (d *rowDecoder) decode(re *replication.RowsEvent, data []byte) error {
	pos, err := re.DecodeHeader(data)
	if err != nil {
		return err
	}
	plan := d.plan(re.Table)
	if plan.skip {
		return nil // no rows: the handler skips the table anyway
	}
	if !plan.fast || d.compressedIdx == nil || uint64(len(plan.cols)) != re.ColumnCount ||
		!allSet(re.ColumnBitmap1, len(plan.cols)) || (re.ColumnBitmap2 != nil && !allSet(re.ColumnBitmap2, len(plan.cols))) {
		d.fallbacks.Add(1)
		return re.DecodeData(pos, data)
	}
	v := reflect.ValueOf(re).Elem()
	if v.FieldByIndex(d.compressedIdx).Bool() || replication.EventType(v.FieldByIndex(d.eventTypeIdx).Uint()) == replication.PARTIAL_UPDATE_ROWS_EVENT {
		d.fallbacks.Add(1)
		return re.DecodeData(pos, data)
	}
	var dr *decodedRows
	d.poolMu.Lock()
	if n := len(d.pool); n > 0 {
		dr, d.pool = d.pool[n-1], d.pool[:n-1]
	}
	d.poolMu.Unlock()
	if dr == nil {
		dr = &decodedRows{owner: d}
	}
	if !dr.decode(plan, data[pos:], re.ColumnBitmap2 != nil) {
		dr.release()
		d.fallbacks.Add(1)
		return re.DecodeData(pos, data)
	}
	dr.one[0] = dr
	dr.holder[0] = dr.one[:]
	re.Rows = dr.holder[:]
	return nil
}

// plan returns the plan of tm's table, rebuilt when the table map's shape changed.
func (d *rowDecoder) plan(tm *replication.TableMapEvent) *rowPlan {
	p := d.plans[tm.TableID]
	if p != nil && p.tm == tm {
		return p
	}
	d.fpBuf = appendTableFingerprint(d.fpBuf[:0], tm)
	if p != nil && string(p.fingerprint) == string(d.fpBuf) {
		p.tm = tm
		return p
	}
	p = &rowPlan{tm: tm, fingerprint: append([]byte(nil), d.fpBuf...)}
	if len(d.plans) >= maxCachedTables {
		// Table ids change with every ALTER, FLUSH TABLES and table-cache
		// eviction; plans are rebuilt from the rows event's own table map.
		clear(d.plans)
	}
	d.plans[tm.TableID] = p
	if !d.filter.match(string(tm.Schema), string(tm.Table)) {
		p.skip = true
		return p
	}
	ti, err := newTableInfo(tableMapCopy(tm), d.text)
	if err != nil {
		return p // not fast: go-mysql decodes, and the handler reports the error
	}
	p.cols = ti.decoders
	p.strLen = make([]int, len(p.cols))
	p.fast = true
	for i := range p.cols {
		c := &p.cols[i]
		switch c.realType {
		case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG,
			mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_NEWDECIMAL,
			mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP2, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_YEAR:
		case mysql.MYSQL_TYPE_ENUM:
			p.fast = p.fast && (c.meta&0xff == 1 || c.meta&0xff == 2)
		case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
			p.strLen[i] = int(c.meta)
		case mysql.MYSQL_TYPE_STRING:
			p.strLen[i] = fixedStringLength(c.meta)
		case mysql.MYSQL_TYPE_BLOB:
			p.fast = p.fast && c.meta >= 1 && c.meta <= 4
		default:
			p.fast = false
		}
	}
	return p
}

// tableMapCopy copies the exported fields of tm. go-mysql's TableMapEvent caches
// derived slices in unexported fields on first use (EnumStrValueString, …), and the
// handler goroutine calls those on the same event: working on a copy keeps this
// goroutine from racing with it. The copy has no flavor, which go-mysql consults
// only for GEOMETRY columns (a type left to go-mysql's decoder) and for the
// columns a collation applies to (sourceText knows the flavor instead).
func tableMapCopy(tm *replication.TableMapEvent) *replication.TableMapEvent {
	return &replication.TableMapEvent{
		TableID: tm.TableID, Flags: tm.Flags, Schema: tm.Schema, Table: tm.Table,
		ColumnCount: tm.ColumnCount, ColumnType: tm.ColumnType, ColumnMeta: tm.ColumnMeta, NullBitmap: tm.NullBitmap,
		SignednessBitmap: tm.SignednessBitmap, DefaultCharset: tm.DefaultCharset, ColumnCharset: tm.ColumnCharset,
		SetStrValue: tm.SetStrValue, EnumStrValue: tm.EnumStrValue, ColumnName: tm.ColumnName, GeometryType: tm.GeometryType,
		PrimaryKey: tm.PrimaryKey, PrimaryKeyPrefix: tm.PrimaryKeyPrefix,
		EnumSetDefaultCharset: tm.EnumSetDefaultCharset, EnumSetColumnCharset: tm.EnumSetColumnCharset,
		VisibilityBitmap: tm.VisibilityBitmap,
	}
}

func allSet(bitmap []byte, n int) bool {
	for i := range n {
		if i>>3 >= len(bitmap) || bitmap[i>>3]&(1<<(uint(i)&7)) == 0 {
			return false
		}
	}
	return true
}

// decodedRowsOf returns the rows rowDecoder decoded for re, if it did.
func decodedRowsOf(re *replication.RowsEvent) (*decodedRows, bool) {
	if len(re.Rows) != 1 || len(re.Rows[0]) != 1 {
		return nil, false
	}
	dr, ok := re.Rows[0][0].(*decodedRows)
	return dr, ok
}

// image returns the i-th row image.
func (dr *decodedRows) image(i int) []schemas.Value {
	return dr.vals[i*dr.ncols : (i+1)*dr.ncols : (i+1)*dr.ncols]
}

// release returns dr for reuse once nothing refers to its values any more (they are
// encoded into record bytes while the event is handled).
func (dr *decodedRows) release() {
	if dr.owner == nil {
		// binlogStream's: its values live in the batch, which is reused whole.
		dr.vals, dr.text, dr.one[0], dr.holder[0] = nil, nil, nil, nil
		return
	}
	clear(dr.vals) // drop the references into the event's buffer
	dr.vals, dr.text = dr.vals[:0], dr.text[:0]
	if cap(dr.vals) > maxPooledValues || cap(dr.text) > 64*maxPooledValues {
		// An unusually large event: the pool would keep its buffers for good.
		dr.vals, dr.text = nil, nil
	}
	dr.images, dr.ncols, dr.invalid = 0, 0, 0
	dr.one[0], dr.holder[0] = nil, nil
	d := dr.owner
	d.poolMu.Lock()
	if len(d.pool) < maxPooledRows {
		d.pool = append(d.pool, dr)
	}
	d.poolMu.Unlock()
}

// maxPooledValues bounds the value buffer a pooled decodedRows keeps (98 KiB): a
// rows event holds at most binlog_row_event_max_size (8 KiB by default) of rows,
// rarely more than a thousand values.
const maxPooledValues = 4096

// maxPooledRows bounds the decodedRows kept for reuse: as many as can be in
// flight (one per queued event), so that none is allocated again once each has
// grown to its events.
const maxPooledRows = eventQueueSize + 16

// decode decodes every image of the rows event body data, reporting false for
// anything it does not handle exactly as go-mysql and convert would.
func (dr *decodedRows) decode(p *rowPlan, data []byte, update bool) (ok bool) {
	defer func() {
		// Malformed bytes must not stop the producer here: go-mysql's decoder gets
		// the event instead and reports what is wrong with it.
		if recover() != nil {
			ok = false
		}
	}()
	n := len(p.cols)
	dr.ncols = n
	nullLen := (n + 7) / 8
	pos := 0
	for pos < len(data) {
		for range 1 + btoi(update) {
			if pos+nullLen > len(data) {
				return false
			}
			nulls := data[pos : pos+nullLen]
			pos += nullLen
			for c := range n {
				if nulls[c>>3]&(1<<(uint(c)&7)) != 0 {
					dr.vals = append(dr.vals, schemas.NullValue())
					continue
				}
				v, size, ok := dr.value(p, c, data[pos:])
				if !ok {
					return false
				}
				dr.vals = append(dr.vals, v)
				pos += size
			}
			dr.images++
		}
	}
	return pos == len(data)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// value decodes column c from the start of data. Each case mirrors go-mysql's
// RowsEvent.decodeValue for the type and then colDecoder.decode.
func (dr *decodedRows) value(p *rowPlan, c int, data []byte) (schemas.Value, int, bool) {
	d := &p.cols[c]
	switch d.realType {
	case mysql.MYSQL_TYPE_TINY:
		if d.unsigned {
			return schemas.UintValue(uint64(data[0])), 1, true
		}
		return schemas.IntValue(int64(int8(data[0]))), 1, true
	case mysql.MYSQL_TYPE_SHORT:
		u := binary.LittleEndian.Uint16(data)
		if d.unsigned {
			return schemas.UintValue(uint64(u)), 2, true
		}
		return schemas.IntValue(int64(int16(u))), 2, true
	case mysql.MYSQL_TYPE_INT24:
		u := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16
		if d.unsigned {
			return schemas.UintValue(uint64(u)), 3, true
		}
		if u&0x00800000 != 0 {
			u |= 0xff000000
		}
		return schemas.IntValue(int64(int32(u))), 3, true
	case mysql.MYSQL_TYPE_LONG:
		u := binary.LittleEndian.Uint32(data)
		if d.unsigned {
			return schemas.UintValue(uint64(u)), 4, true
		}
		return schemas.IntValue(int64(int32(u))), 4, true
	case mysql.MYSQL_TYPE_LONGLONG:
		u := binary.LittleEndian.Uint64(data)
		if d.unsigned {
			return schemas.UintValue(u), 8, true
		}
		return schemas.IntValue(int64(u)), 8, true
	case mysql.MYSQL_TYPE_FLOAT:
		return schemas.Float32Value(math.Float32frombits(binary.LittleEndian.Uint32(data))), 4, true
	case mysql.MYSQL_TYPE_DOUBLE:
		return schemas.Float64Value(math.Float64frombits(binary.LittleEndian.Uint64(data))), 8, true
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		start := len(dr.text)
		var size int
		var ok bool
		dr.text, size, ok = appendDecimal(dr.text, data, int(d.meta>>8), int(d.meta&0xff))
		if !ok {
			return schemas.Value{}, 0, false
		}
		return schemas.DecimalValue(dr.textString(start)), size, true
	case mysql.MYSQL_TYPE_DATETIME2:
		return dr.datetime2(d, data)
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		dec := d.meta
		n := int(4 + (dec+1)/2)
		sec := int64(binary.BigEndian.Uint32(data[0:4]))
		var usec int64
		switch dec {
		case 1, 2:
			usec = int64(data[4]) * 10000
		case 3, 4:
			usec = int64(binary.BigEndian.Uint16(data[4:])) * 100
		case 5, 6:
			usec = int64(mysql.BFixedLengthInt(data[4:7]))
		}
		if sec == 0 {
			return schemas.Value{}, 0, false // the zero timestamp: go-mysql's text
		}
		start := len(dr.text)
		dr.text = appendTime(dr.text, time.Unix(sec, usec*1000).UTC(), int(d.fsp()), true)
		return schemas.StringValue(dr.textString(start)), n, true
	case mysql.MYSQL_TYPE_DATE:
		v := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16
		start := len(dr.text)
		if v == 0 {
			dr.text = append(dr.text, "0000-00-00"...)
		} else {
			dr.text = appendInt(dr.text, int(v/(16*32)), 4)
			dr.text = append(dr.text, '-')
			dr.text = appendInt(dr.text, int(v/32%16), 2)
			dr.text = append(dr.text, '-')
			dr.text = appendInt(dr.text, int(v%32), 2)
		}
		return schemas.StringValue(dr.textString(start)), 3, true
	case mysql.MYSQL_TYPE_YEAR:
		if data[0] == 0 {
			return schemas.IntValue(0), 1, true
		}
		return schemas.IntValue(int64(data[0]) + 1900), 1, true
	case mysql.MYSQL_TYPE_ENUM:
		var idx int64
		n := int(d.meta & 0xff)
		if n == 1 {
			idx = int64(data[0])
		} else {
			idx = int64(binary.LittleEndian.Uint16(data))
		}
		v, err := d.enumLabel(idx)
		if err != nil {
			return schemas.Value{}, 0, false
		}
		return v, n, true
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING:
		var b []byte
		var n int
		if p.strLen[c] < 256 {
			l := int(data[0])
			b, n = data[1:1+l], 1+l
		} else {
			l := int(binary.LittleEndian.Uint16(data))
			b, n = data[2:2+l], 2+l
		}
		if d.binary {
			return schemas.BytesValue(d.pad(b)), n, true
		}
		return dr.textValue(d, b), n, true
	case mysql.MYSQL_TYPE_BLOB:
		var l, h int
		switch d.meta {
		case 1:
			l, h = int(data[0]), 1
		case 2:
			l, h = int(binary.LittleEndian.Uint16(data)), 2
		case 3:
			l, h = int(uint32(data[0])|uint32(data[1])<<8|uint32(data[2])<<16), 3
		case 4:
			l, h = int(binary.LittleEndian.Uint32(data)), 4
		}
		b := data[h : h+l]
		if d.binary {
			return schemas.BytesValue(d.pad(b)), h + l, true
		}
		return dr.textValue(d, b), h + l, true
	}
	return schemas.Value{}, 0, false
}

// textValue is colDecoder.text into dr.text, counting invalid text.
func (dr *decodedRows) textValue(d *colDecoder, b []byte) schemas.Value {
	v := d.text(b, &dr.text)
	if v.InvalidText() {
		dr.invalid++
	}
	return v
}

// textString views dr.text[start:] as a string. Should dr.text grow later, the
// string keeps the old array alive and unchanged: text is only ever appended to
// until release.
func (dr *decodedRows) textString(start int) string {
	b := dr.text[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// datetime2 mirrors go-mysql's decodeDatetime2 with ParseTime on, for the dates it
// turns into a time.Time (anything else goes to go-mysql).
func (dr *decodedRows) datetime2(d *colDecoder, data []byte) (schemas.Value, int, bool) {
	dec := d.meta
	n := int(5 + (dec+1)/2)
	intPart := int64(mysql.BFixedLengthInt(data[0:5])) - 0x8000000000
	var frac int64
	switch dec {
	case 1, 2:
		frac = int64(data[5]) * 10000
	case 3, 4:
		frac = int64(binary.BigEndian.Uint16(data[5:7])) * 100
	case 5, 6:
		frac = int64(mysql.BFixedLengthInt(data[5:8]))
	}
	// 107420450816 is 1970-01-01 00:00:00: go-mysql returns text below it.
	if intPart < 107420450816 {
		return schemas.Value{}, 0, false
	}
	ymdhms := (intPart<<24 + frac) >> 24
	ymd := ymdhms >> 17
	ym := ymd >> 5
	hms := ymdhms % (1 << 17)
	day := int(ymd % (1 << 5))
	month := int(ym % 13)
	year := int(ym / 13)
	second := int(hms % (1 << 6))
	minute := int((hms >> 6) % (1 << 6))
	hour := int(hms >> 12)
	if month == 0 || day == 0 {
		return schemas.Value{}, 0, false
	}
	start := len(dr.text)
	if year <= 9999 && day <= daysIn(month, year) && hour < 24 && minute < 60 && second < 60 && frac < 1000000 {
		// What time.Date and appendTime would write, without the calendar
		// arithmetic of going through a time.Time (a tenth of the producer's
		// CPU on a table with a DATETIME column).
		dr.text = appendDateTime(dr.text, year, month, day, hour, minute, second, int(frac), int(d.fsp()))
	} else {
		// time.Date normalises out-of-range parts (2024-02-30 is March 1st,
		// a fraction of a million microseconds or more carries into the
		// seconds), as go-mysql's decoder does.
		t := time.Date(year, time.Month(month), day, hour, minute, second, int(frac*1000), time.UTC)
		dr.text = appendTime(dr.text, t, int(d.fsp()), false)
	}
	return schemas.StringValue(dr.textString(start)), n, true
}

// daysIn is the number of days of a month (1–12) of the proleptic Gregorian
// calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// twoDigits holds "00" to "99".
const twoDigits = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// appendDateTime appends "YYYY-MM-DD hh:mm:ss" and fsp digits of usec, as
// appendTime does for the same fields (year 0–9999, valid date and time).
func appendDateTime(dst []byte, year, month, day, hour, minute, second, usec, fsp int) []byte {
	dst = append(dst, twoDigits[2*(year/100)], twoDigits[2*(year/100)+1], twoDigits[2*(year%100)], twoDigits[2*(year%100)+1],
		'-', twoDigits[2*month], twoDigits[2*month+1], '-', twoDigits[2*day], twoDigits[2*day+1],
		' ', twoDigits[2*hour], twoDigits[2*hour+1], ':', twoDigits[2*minute], twoDigits[2*minute+1],
		':', twoDigits[2*second], twoDigits[2*second+1])
	if fsp > 0 {
		var digits [6]byte
		for i := 5; i >= 0; i-- {
			digits[i] = byte('0' + usec%10)
			usec /= 10
		}
		dst = append(dst, '.')
		dst = append(dst, digits[:fsp]...)
	}
	return dst
}

// decimalBytes is the size of a group of 0–9 leftover digits (go-mysql's
// compressedBytes).
var decimalBytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// appendDecimal appends the text of a binary DECIMAL(precision, scale) as go-mysql's
// decodeDecimal writes it, returning the bytes it used.
func appendDecimal(dst, data []byte, precision, scale int) ([]byte, int, bool) {
	const digitsPerInteger = 9
	integral := precision - scale
	uncompIntegral := integral / digitsPerInteger
	uncompFractional := scale / digitsPerInteger
	compIntegral := integral - uncompIntegral*digitsPerInteger
	compFractional := scale - uncompFractional*digitsPerInteger
	if precision < 1 || scale < 0 || integral < 0 || compIntegral > 9 || compFractional > 9 {
		return dst, 0, false
	}
	size := uncompIntegral*4 + decimalBytes[compIntegral] + uncompFractional*4 + decimalBytes[compFractional]
	if size > len(data) || size > 64 {
		return dst, 0, false
	}
	// The sign is the top bit of the first byte; negative numbers have every
	// bit inverted. Work on a copy with the sign bit cleared.
	var buf [64]byte
	b := buf[:size]
	copy(b, data[:size])
	var mask uint32
	if b[0]&0x80 == 0 {
		mask = math.MaxUint32
		dst = append(dst, '-')
	}
	b[0] ^= 0x80
	group := func(pos, nbytes int) uint32 {
		var v uint32
		for i := range nbytes {
			v = v<<8 | uint32(b[pos+i]^uint8(mask))
		}
		return v
	}
	pos := decimalBytes[compIntegral]
	value := group(0, pos)
	leading := true
	if value != 0 {
		leading = false
		dst = strconv.AppendUint(dst, uint64(value), 10)
	}
	for range uncompIntegral {
		value = binary.BigEndian.Uint32(b[pos:]) ^ mask
		pos += 4
		if leading {
			if value != 0 {
				leading = false
				dst = strconv.AppendUint(dst, uint64(value), 10)
			}
		} else {
			dst = appendPadded(dst, value, digitsPerInteger)
		}
	}
	if leading {
		dst = append(dst, '0')
	}
	if pos < len(b) {
		dst = append(dst, '.')
		for range uncompFractional {
			value = binary.BigEndian.Uint32(b[pos:]) ^ mask
			pos += 4
			dst = appendPadded(dst, value, digitsPerInteger)
		}
		if n := decimalBytes[compFractional]; n > 0 {
			dst = appendPadded(dst, group(pos, n), compFractional)
			pos += n
		}
	}
	return dst, pos, true
}

// appendPadded appends v in decimal, left-padded with zeros to width digits (longer
// values are written in full, as go-mysql does).
func appendPadded(dst []byte, v uint32, width int) []byte {
	var buf [10]byte
	s := strconv.AppendUint(buf[:0], uint64(v), 10)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
