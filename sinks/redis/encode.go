package redissink

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/kanal-cdc/kanal/schemas"
)

// errValue is wrapped by errors about a row the sink cannot store (a value of an
// unknown Go type, a column named like a reserved field, a column a set template needs
// missing from the row); they are permanent: retrying cannot help.
var errValue = errors.New("cannot store row")

// template is a parsed set key or member template: literal parts and column names,
// alternating, starting with a literal.
type template struct {
	lits []string // len(cols)+1
	cols []string
}

// parseTemplate parses "user:{user_id}:orders"; "{{" and "}}" are literal braces.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i+1:], '}')
			if j < 0 {
				return t, fmt.Errorf("%q: unclosed '{'", s)
			}
			name := s[i+1 : i+1+j]
			if name == "" || strings.ContainsAny(name, "{") {
				return t, fmt.Errorf("%q: bad column reference {%s}", s, name)
			}
			t.lits = append(t.lits, lit.String())
			lit.Reset()
			t.cols = append(t.cols, name)
			i += j + 1
		case c == '}':
			return t, fmt.Errorf("%q: unmatched '}' (write '}}' for a literal brace)", s)
		default:
			lit.WriteByte(c)
		}
	}
	if s == "" {
		return t, errors.New("empty template")
	}
	t.lits = append(t.lits, lit.String())
	return t, nil
}

// render fills the template from row; ok is false when a referenced column is NULL.
// A column missing from the row is an error: the template names a column the table
// does not have (any more).
func (t *template) render(row map[string]any) (s string, ok bool, err error) {
	if len(t.cols) == 0 {
		return t.lits[0], true, nil
	}
	var b []byte
	for i, col := range t.cols {
		b = append(b, t.lits[i]...)
		v, present := row[col]
		if !present {
			return "", false, fmt.Errorf("%w: set template refers to column %q, which the row does not have", errValue, col)
		}
		if v == nil {
			return "", false, nil
		}
		if b, err = appendText(b, v); err != nil {
			return "", false, err
		}
	}
	b = append(b, t.lits[len(t.cols)]...)
	return string(b), true, nil
}

// appendText appends a column value as stored in a hash field: integers in decimal,
// DECIMAL as its exact text, floats in shortest form, strings as they are and bytes
// raw (in set templates bytes are hex, see appendTemplateText).
func appendText(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return append(dst, x...), nil
	case []byte:
		// Set keys and members are names: bytes become lowercase hex with 0x, as in
		// record keys, so a set name is always printable.
		dst = append(dst, "0x"...)
		return hex.AppendEncode(dst, x), nil
	default:
		return appendScalar(dst, v)
	}
}

// appendScalar appends a non-string, non-bytes value.
func appendScalar(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case schemas.Decimal:
		return append(dst, x...), nil
	case float32:
		return appendFloat(dst, float64(x), 32), nil
	case float64:
		return appendFloat(dst, x, 64), nil
	case string:
		return append(dst, x...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case bool:
		// Not produced by kanal's decoders; Canal-compatible writers may send it.
		if x {
			return append(dst, '1'), nil
		}
		return append(dst, '0'), nil
	}
	return dst, fmt.Errorf("%w: value of Go type %T", errValue, v)
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-Inf"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// hashValue returns a column value as a hash field value: bytes stay raw. Other
// values rendered as text are appended to *scratch and returned as a slice of it, so that a
// row's values share one allocation (a slice stays valid when a later append moves
// *scratch).
func hashValue(v any, scratch *[]byte) (any, error) {
	switch v.(type) {
	case string, []byte, int64, uint64:
		// Passed on as they are (no boxing again): go-redis writes them as the
		// field stores them, the bytes and integers in decimal.
		return v, nil
	case schemas.Decimal:
		return decimalText(v), nil
	}
	start := len(*scratch)
	b, err := appendScalar(*scratch, v)
	if err != nil {
		return nil, err
	}
	*scratch = b
	return b[start:len(b):len(b)], nil
}

// appendJSONValue appends a column value as a JSON value: NULL as null, integers and
// floats as numbers (exact: the digits are written, never a float64 round trip),
// DECIMAL as a string holding its exact text, strings as strings, bytes as standard
// base64 strings (JSON strings cannot hold arbitrary bytes), non-finite floats as the
// strings "NaN", "+Inf", "-Inf".
func appendJSONValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return schemas.AppendJSONString(dst, x), nil
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), nil
	case schemas.Decimal:
		return schemas.AppendJSONString(dst, string(x)), nil
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return schemas.AppendJSONString(dst, string(appendFloat(nil, float64(x), 32))), nil
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return schemas.AppendJSONString(dst, string(appendFloat(nil, x, 64))), nil
		}
	case bool:
		return strconv.AppendBool(dst, x), nil
	}
	return appendScalar(dst, v)
}

// appendNetstring appends "<len>:<s>": the encoding of "__sets", chosen because it
// needs no escaping and the Lua script decodes it with two string functions.
func appendNetstring(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// parseNetstrings decodes a sequence of netstrings.
func parseNetstrings(s string) ([]string, error) {
	var out []string
	for len(s) > 0 {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return nil, errors.New("netstring: missing ':'")
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || i+1+n > len(s) {
			return nil, errors.New("netstring: bad length")
		}
		out = append(out, s[i+1:i+1+n])
		s = s[i+1+n:]
	}
	return out, nil
}

// EncodeNulls encodes the names of a row's NULL columns as the "__nulls" field holds
// them: joined with ",", with "\" written "\\" and "," written "\,".
func EncodeNulls(names []string) string {
	var b []byte
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = schemas.AppendKeyValue(b, n)
	}
	return string(b)
}

// DecodeNulls splits a "__nulls" field value into column names.
func DecodeNulls(s string) []string {
	if s == "" {
		return nil
	}
	return schemas.SplitKey(s)
}

// eface is the layout of an interface value: its dynamic type and a pointer to its
// data (for string-shaped types, to the string header).
type eface struct {
	typ, data unsafe.Pointer
}

// stringType is the type word of string.
var stringType = func() unsafe.Pointer { var v any = ""; return (*eface)(unsafe.Pointer(&v)).typ }()

// decimalText returns v, a schemas.Decimal, as a string in an interface value
// without boxing its header again (string(x) in an any allocates once per row;
// go-redis takes strings, not named string types): the same data word under
// string's type. A boxed value is never written, so sharing it is safe; Decimal's
// underlying type is string, so the data is the same header. TestDecimalText.
func decimalText(v any) any {
	e := (*eface)(unsafe.Pointer(&v))
	return *(*any)(unsafe.Pointer(&eface{typ: stringType, data: e.data}))
}
