package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Format names, as carried in the kanal.format record header.
const (
	FormatJSON      = "json"
	FormatCanalJSON = "canal-json"
)

// ErrDecode is wrapped by every decoding error, so callers can classify a record
// that can't be decoded with errors.Is.
var ErrDecode = errors.New("kanal: cannot decode change")

// AppendColumnsJSON appends the JSON array describing cols. The producer caches it
// per table map so that each record costs a copy, not a re-encoding.
func AppendColumnsJSON(dst []byte, cols []Column) []byte {
	dst = append(dst, '[')
	for i, c := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, c.Name)
		dst = append(dst, `,"type":`...)
		dst = appendJSONString(dst, c.Type)
		if c.PK {
			dst = append(dst, `,"pk":true`...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// Envelope is a change in the positional form the producer builds: row images as
// value slices aligned with the columns. It encodes without building maps.
type Envelope struct {
	Op          Op
	Seq         uint64
	Source      *Source
	Columns     []Column
	ColumnsJSON []byte // AppendColumnsJSON(nil, Columns); computed when nil
	// ColumnKeys optionally holds ColumnKeysJSON(Columns), cached per table, so
	// each row costs copies of the keys instead of encoding every column name.
	ColumnKeys  [][]byte
	Before      []any // nil for creates
	After       []any // nil for deletes
	KeyFallback bool
}

// AppendJSON appends the kanal JSON envelope of e to dst:
//
//	{"op":"u","seq":42,"source":{…},"columns":[…],"before":{…},"after":{…}}
//
// Values are encoded as described in the package documentation: integers as JSON
// numbers (exact, also above 2^53), DECIMAL as strings, bytes as base64 strings.
func (e *Envelope) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, e.Op...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"source":`...)
	dst = appendSourceJSON(dst, e.Source)
	dst = append(dst, `,"columns":`...)
	if e.ColumnsJSON != nil {
		dst = append(dst, e.ColumnsJSON...)
	} else {
		dst = AppendColumnsJSON(dst, e.Columns)
	}
	dst = append(dst, `,"before":`...)
	keys := e.ColumnKeys
	if len(keys) != len(e.Columns) {
		keys = nil
	}
	dst = appendRowJSON(dst, e.Columns, keys, e.Before)
	dst = append(dst, `,"after":`...)
	dst = appendRowJSON(dst, e.Columns, keys, e.After)
	if e.KeyFallback {
		dst = append(dst, `,"key_fallback":true`...)
	}
	return append(dst, '}')
}

func appendSourceJSON(dst []byte, s *Source) []byte {
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
	dst = append(dst, `,"row":`...)
	dst = strconv.AppendInt(dst, int64(s.Row), 10)
	return append(dst, '}')
}

// ColumnKeysJSON returns each column's name encoded as a JSON object key: `"name":`.
func ColumnKeysJSON(cols []Column) [][]byte {
	keys := make([][]byte, len(cols))
	for i, c := range cols {
		keys[i] = append(appendJSONString(nil, c.Name), ':')
	}
	return keys
}

func appendRowJSON(dst []byte, cols []Column, keys [][]byte, row []any) []byte {
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
		var v any
		if i < len(row) {
			v = row[i]
		}
		dst = AppendJSONValue(dst, v)
	}
	return append(dst, '}')
}

// AppendJSONValue appends one column value in the envelope's encoding.
func AppendJSONValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case float32:
		return appendFloat(dst, float64(x), 32)
	case float64:
		return appendFloat(dst, x, 64)
	case Decimal:
		return appendJSONString(dst, string(x))
	case string:
		return appendJSONString(dst, x)
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"')
	case bool:
		return strconv.AppendBool(dst, x)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return appendJSONString(dst, fmt.Sprint(x))
		}
		return append(dst, b...)
	}
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	// MySQL cannot store NaN or ±Inf; encode them as strings rather than emit
	// invalid JSON should a value ever arrive from elsewhere.
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendJSONString(dst, strconv.FormatFloat(f, 'g', -1, bits))
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string the way the envelope encodes text:
// invalid UTF-8 becomes U+FFFD, and U+2028/U+2029 are escaped so the output is also
// valid JavaScript. Sinks that write JSON of their own use it to encode text alike.
func AppendJSONString(dst []byte, s string) []byte { return appendJSONString(dst, s) }

// appendJSONString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Fast path: skip eight plain ASCII bytes at a time (nothing below 0x20, no
		// '"', no '\\', no byte >= 0x80). Most column values are plain ASCII, and
		// this loop was the JSON encoder's hot spot (docs/bench.md).
		if i+8 <= len(s) && plainASCII8(load8(s, i)) {
			i += 8
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscapedASCII appends the JSON escape of c, a control character, '"' or
// '\\' (the only ASCII bytes JSON strings escape). Both string encoders share it.
func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	default:
		return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	}
}

// appendJSONStringUTF8 is appendJSONString for s known to be valid UTF-8: bytes
// of multi-byte characters need no decoding, only U+2028 and U+2029 (E2 80 A8,
// E2 80 A9) are escaped. Text with accents, CJK or emoji then takes the
// eight-bytes-at-a-time path too.
func appendJSONStringUTF8(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plainText8(load8(s, i)) {
			i += 8
			continue
		}
		c := s[i]
		switch {
		case c == 0xE2:
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9) {
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xf])
				i += 3
				start = i
				continue
			}
			i++
		case c >= 0x20 && c != '"' && c != '\\':
			i++
		default:
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, c)
			i++
			start = i
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// plainText8 reports whether none of the eight bytes in x needs attention in a
// JSON string of valid UTF-8: none is below 0x20, '"', '\\' or 0xE2 (the lead
// byte of U+2028 and U+2029). False positives are fine (the caller looks at each
// byte then), false negatives are not: the checks are exact for that.
func plainText8(x uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - swarOnes) & ^v & swarHigh }
	return ((x-swarOnes*0x20)&^x&swarHigh)|
		hasZero(x^(swarOnes*'"'))|
		hasZero(x^(swarOnes*'\\'))|
		hasZero(x^(swarOnes*0xE2)) == 0
}

const (
	swarOnes = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// load8 reads s[i:i+8] as a little-endian word (the compiler turns this into one load).
func load8(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// plainASCII8 reports whether none of the eight bytes in x needs attention in a
// JSON string: each is in 0x20..0x7f and is neither '"' nor '\\'.
func plainASCII8(x uint64) bool {
	hasZero := func(v uint64) uint64 { return (v - swarOnes) & ^v & swarHigh }
	return (x&swarHigh)|
		((x-swarOnes*0x20)&^x&swarHigh)|
		hasZero(x^(swarOnes*'"'))|
		hasZero(x^(swarOnes*'\\')) == 0
}

// MarshalJSON encodes the change as the kanal JSON envelope.
func (c *Change) MarshalJSON() ([]byte, error) {
	e := Envelope{Op: c.Op, Seq: c.Seq, Source: &c.Source, Columns: c.Columns, KeyFallback: c.KeyFallback}
	e.Before = rowSlice(c.Columns, c.Before)
	e.After = rowSlice(c.Columns, c.After)
	return e.AppendJSON(nil), nil
}

func rowSlice(cols []Column, m map[string]any) []any {
	if m == nil {
		return nil
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = m[c.Name]
	}
	return out
}

type wireChange struct {
	Op          Op                         `json:"op"`
	Seq         uint64                     `json:"seq"`
	Source      Source                     `json:"source"`
	Columns     []Column                   `json:"columns"`
	Before      map[string]json.RawMessage `json:"before"`
	After       map[string]json.RawMessage `json:"after"`
	KeyFallback bool                       `json:"key_fallback"`
}

// DecodeJSON decodes a kanal JSON envelope, restoring every value to its Go type
// from the column types. Errors wrap ErrDecode. Decoding many records is cheaper
// with one Decoder per goroutine (see Decoder, also for Columns being shared).
func DecodeJSON(data []byte) (*Change, error) {
	d := decoders.Get().(*Decoder)
	defer decoders.Put(d)
	return d.DecodeJSON(data)
}

// decodeJSONStd decodes with encoding/json: the reference the fast path must
// agree with, and the path for anything it does not handle.
func decodeJSONStd(data []byte) (*Change, error) {
	var w wireChange
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: kanal json: %v", ErrDecode, err)
	}
	if !w.Op.Valid() {
		return nil, fmt.Errorf("%w: kanal json: %s.%s: unknown op %q", ErrDecode, w.Source.DB, w.Source.Table, w.Op)
	}
	c := &Change{Op: w.Op, Seq: w.Seq, Source: w.Source, Columns: w.Columns, KeyFallback: w.KeyFallback}
	var err error
	if c.Before, err = decodeRow(w.Columns, w.Before); err != nil {
		return nil, fmt.Errorf("%w: %s.%s before: %v", ErrDecode, w.Source.DB, w.Source.Table, err)
	}
	if c.After, err = decodeRow(w.Columns, w.After); err != nil {
		return nil, fmt.Errorf("%w: %s.%s after: %v", ErrDecode, w.Source.DB, w.Source.Table, err)
	}
	if err := checkImages(c); err != nil {
		return nil, fmt.Errorf("%w: %s.%s: %v", ErrDecode, w.Source.DB, w.Source.Table, err)
	}
	return c, nil
}

func decodeRow(cols []Column, raw map[string]json.RawMessage) (map[string]any, error) {
	if raw == nil {
		return nil, nil
	}
	row := make(map[string]any, len(cols))
	for _, c := range cols {
		r, ok := raw[c.Name]
		if !ok {
			return nil, fmt.Errorf("column %q missing", c.Name)
		}
		v, err := decodeJSONValue(c, r)
		if err != nil {
			return nil, fmt.Errorf("column %q: %v", c.Name, err)
		}
		row[c.Name] = v
	}
	return row, nil
}

func decodeJSONValue(c Column, r json.RawMessage) (any, error) {
	if bytes.Equal(r, []byte("null")) {
		return nil, nil
	}
	switch c.Kind() {
	case KindInt, KindYear:
		return strconv.ParseInt(string(r), 10, 64)
	case KindUint, KindBit:
		return strconv.ParseUint(string(r), 10, 64)
	case KindFloat, KindDouble:
		num := string(r)
		if len(r) > 0 && r[0] == '"' {
			// NaN and ±Inf are written as strings (see appendFloat).
			if err := json.Unmarshal(r, &num); err != nil {
				return nil, err
			}
		}
		if c.Kind() == KindFloat {
			f, err := strconv.ParseFloat(num, 32)
			return float32(f), err
		}
		return strconv.ParseFloat(num, 64)
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return nil, err
	}
	switch c.Kind() {
	case KindDecimal:
		return Decimal(s), nil
	case KindBytes:
		return base64.StdEncoding.DecodeString(s)
	}
	return s, nil
}
