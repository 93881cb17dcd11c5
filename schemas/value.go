package schemas

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"strconv"
	"unsafe"
)

// ValueKind tells how a Value is to be read.
type ValueKind uint8

// The kinds of Value; see the package documentation for the MySQL types of each.
const (
	ValueNull    ValueKind = iota // SQL NULL
	ValueInt                      // signed integer (also YEAR)
	ValueUint                     // unsigned integer (also BIT)
	ValueFloat32                  // FLOAT
	ValueFloat64                  // DOUBLE
	ValueDecimal                  // exact decimal text
	ValueString                   // text (also temporal types, ENUM, SET, JSON)
	ValueBytes                    // binary string
)

// Value is one column value without an interface box. The producer decodes every
// row image into a reused []Value and encodes it at once: boxing each value into an
// `any` cost an allocation per column and was the largest share of the producer's
// own allocations (docs/bench.md). Any returns the boxed form of the package
// documentation.
//
// A Value's text may alias memory it does not own (a binlog event's buffer, a
// scratch buffer): it is valid only as long as that memory is left alone, so copy
// with Any before keeping it.
type Value struct {
	str  string // ValueDecimal, ValueString, ValueBytes
	bits uint64 // ValueInt (two's complement), ValueUint, ValueFloat32/64 (IEEE bits of the float64); ValueString: invalidText, validUTF8
	kind ValueKind
}

// Flags in Value.bits of ValueString.
const (
	// invalidText: text decoded from invalid bytes.
	invalidText = 1 << iota
	// validUTF8: the text is known to be valid UTF-8, so the JSON encoder need
	// not decode its runes.
	validUTF8
)

// NullValue is SQL NULL.
func NullValue() Value { return Value{} }

// IntValue holds a signed integer.
func IntValue(v int64) Value { return Value{bits: uint64(v), kind: ValueInt} }

// UintValue holds an unsigned integer.
func UintValue(v uint64) Value { return Value{bits: v, kind: ValueUint} }

// Float32Value holds a FLOAT.
func Float32Value(v float32) Value {
	return Value{bits: math.Float64bits(float64(v)), kind: ValueFloat32}
}

// Float64Value holds a DOUBLE.
func Float64Value(v float64) Value { return Value{bits: math.Float64bits(v), kind: ValueFloat64} }

// DecimalValue holds exact decimal text ("-12.50").
func DecimalValue(s string) Value { return Value{str: s, kind: ValueDecimal} }

// StringValue holds text; s is not copied.
func StringValue(s string) Value { return Value{str: s, kind: ValueString} }

// StringBytesValue holds text given as bytes, without copying them: b must not
// change while the Value is in use.
func StringBytesValue(b []byte) Value {
	return Value{str: unsafe.String(unsafe.SliceData(b), len(b)), kind: ValueString}
}

// InvalidTextValue holds text decoded from bytes that were not valid in their
// column's character set, each invalid sequence replaced with U+FFFD. It encodes
// as StringValue(s) does; the producer names such columns in the record's
// HeaderInvalidText header.
func InvalidTextValue(s string) Value {
	return Value{str: s, bits: invalidText, kind: ValueString}
}

// UTF8BytesValue is StringBytesValue for text the caller has checked to be valid
// UTF-8 (a decoder that validates anyway): encoders then skip that check.
// Invalid bytes in b would reach the JSON output unchanged.
func UTF8BytesValue(b []byte) Value {
	return Value{str: unsafe.String(unsafe.SliceData(b), len(b)), bits: validUTF8, kind: ValueString}
}

// InvalidText reports whether v was made by InvalidTextValue.
func (v Value) InvalidText() bool { return v.kind == ValueString && v.bits&invalidText != 0 }

// BytesValue holds a binary string without copying it: b must not change while the
// Value is in use.
func BytesValue(b []byte) Value {
	return Value{str: unsafe.String(unsafe.SliceData(b), len(b)), kind: ValueBytes}
}

// Kind returns the value's kind.
func (v Value) Kind() ValueKind { return v.kind }

// Any returns the value in the boxed representation of the package documentation
// (nil, int64, uint64, float32, float64, Decimal, string, []byte). Text and bytes
// are copied, so the result may be kept.
func (v Value) Any() any {
	switch v.kind {
	case ValueInt:
		return int64(v.bits)
	case ValueUint:
		return v.bits
	case ValueFloat32:
		return float32(math.Float64frombits(v.bits))
	case ValueFloat64:
		return math.Float64frombits(v.bits)
	case ValueDecimal:
		return Decimal(cloneString(v.str))
	case ValueString:
		return cloneString(v.str)
	case ValueBytes:
		return []byte(v.str)
	}
	return nil
}

func cloneString(s string) string {
	if s == "" {
		return ""
	}
	return string([]byte(s))
}

// AppendSourcePrefixJSON appends the JSON of s without the end of its object, the
// row index: `{"name":…,"row":`. The changes of one rows event share it, so the
// producer encodes it once per event (see AppendJSONValues).
func AppendSourcePrefixJSON(dst []byte, s *Source) []byte {
	dst = append(dst, `{"name":`...)
	dst = appendJSONString(dst, s.Name)
	dst = append(dst, `,"server_id":`...)
	dst = strconv.AppendUint(dst, uint64(s.ServerID), 10)
	dst = append(dst, `,"file":`...)
	dst = appendJSONString(dst, s.File)
	dst = append(dst, `,"pos":`...)
	dst = strconv.AppendUint(dst, uint64(s.Pos), 10)
	if s.GTID != "" {
		dst = append(dst, `,"gtid":`...)
		dst = appendJSONString(dst, s.GTID)
	}
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, s.TsMs, 10)
	dst = append(dst, `,"db":`...)
	dst = appendJSONString(dst, s.DB)
	dst = append(dst, `,"table":`...)
	dst = appendJSONString(dst, s.Table)
	return append(dst, `,"row":`...)
}

// AppendJSONValues appends the kanal JSON envelope of e (as AppendJSON does) with
// before and after as its row images instead of e.Before and e.After; a nil image is
// JSON null. srcPrefix, when not nil, is AppendSourcePrefixJSON of e.Source, which
// then is not encoded again. The output is byte for byte what AppendJSON writes for
// the same values boxed with Value.Any.
func (e *Envelope) AppendJSONValues(dst, srcPrefix []byte, before, after []Value) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, e.Op...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"source":`...)
	if srcPrefix != nil {
		dst = append(dst, srcPrefix...)
		dst = strconv.AppendInt(dst, int64(e.Source.Row), 10)
		dst = append(dst, '}')
	} else {
		dst = appendSourceJSON(dst, e.Source)
	}
	dst = append(dst, `,"columns":`...)
	if e.ColumnsJSON != nil {
		dst = append(dst, e.ColumnsJSON...)
	} else {
		dst = AppendColumnsJSON(dst, e.Columns)
	}
	keys := e.ColumnKeys
	if len(keys) != len(e.Columns) {
		keys = nil
	}
	dst = append(dst, `,"before":`...)
	dst = appendValuesJSON(dst, e.Columns, keys, before)
	dst = append(dst, `,"after":`...)
	dst = appendValuesJSON(dst, e.Columns, keys, after)
	if e.KeyFallback {
		dst = append(dst, `,"key_fallback":true`...)
	}
	return append(dst, '}')
}

func appendValuesJSON(dst []byte, cols []Column, keys [][]byte, row []Value) []byte {
	if row == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	for i, c := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		if keys != nil {
			dst = append(dst, keys[i]...)
		} else {
			dst = appendJSONString(dst, c.Name)
			dst = append(dst, ':')
		}
		var v Value
		if i < len(row) {
			v = row[i]
		}
		dst = AppendValueJSON(dst, v)
	}
	return append(dst, '}')
}

// AppendValueJSON appends one value in the envelope's encoding (as AppendJSONValue
// does for the boxed value).
func AppendValueJSON(dst []byte, v Value) []byte {
	switch v.kind {
	case ValueInt:
		return strconv.AppendInt(dst, int64(v.bits), 10)
	case ValueUint:
		return strconv.AppendUint(dst, v.bits, 10)
	case ValueFloat32:
		return appendFloat(dst, math.Float64frombits(v.bits), 32)
	case ValueFloat64:
		return appendFloat(dst, math.Float64frombits(v.bits), 64)
	case ValueString:
		if v.bits&validUTF8 != 0 {
			return appendJSONStringUTF8(dst, v.str)
		}
		return appendJSONString(dst, v.str)
	case ValueDecimal:
		return appendJSONString(dst, v.str)
	case ValueBytes:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, unsafe.Slice(unsafe.StringData(v.str), len(v.str)))
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

// AppendKeyValues appends the record key of a row (see AppendKey) whose key columns
// are row[cols[0]], row[cols[1]], …
func AppendKeyValues(dst []byte, db, table string, row []Value, cols []int) []byte {
	dst = append(dst, db...)
	dst = append(dst, '.')
	dst = append(dst, table...)
	dst = append(dst, ':')
	for i, c := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendKeyComponent(dst, row[c])
	}
	return dst
}

// AppendKeyComponent appends one key component (as AppendKeyValue does for the boxed
// value).
func AppendKeyComponent(dst []byte, v Value) []byte {
	switch v.kind {
	case ValueInt:
		return strconv.AppendInt(dst, int64(v.bits), 10)
	case ValueUint:
		return strconv.AppendUint(dst, v.bits, 10)
	case ValueFloat32:
		return strconv.AppendFloat(dst, math.Float64frombits(v.bits), 'g', -1, 32)
	case ValueFloat64:
		return strconv.AppendFloat(dst, math.Float64frombits(v.bits), 'g', -1, 64)
	case ValueDecimal, ValueString:
		return appendKeyString(dst, v.str)
	case ValueBytes:
		dst = append(dst, "0x"...)
		return hex.AppendEncode(dst, unsafe.Slice(unsafe.StringData(v.str), len(v.str)))
	}
	return append(dst, `\N`...)
}
