package schemas

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// AppendKey appends the record key "<db>.<table>:<v1>,<v2>,…" for the given key
// column values (table order) to dst.
//
// Each value is written as text: integers in decimal, DECIMAL and strings as they
// are, byte strings as lowercase hex with a "0x" prefix, floats in shortest form, NULL
// as `\N`. In strings, `\` becomes `\\` and `,` becomes `\,`, so a composite key splits
// back into its parts without ambiguity (SplitKey). Since every key of one table has
// the same columns and types, equal keys mean equal rows and vice versa.
func AppendKey(dst []byte, db, table string, vals []any) []byte {
	dst = append(dst, db...)
	dst = append(dst, '.')
	dst = append(dst, table...)
	dst = append(dst, ':')
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendKeyValue(dst, v)
	}
	return dst
}

// AppendKeyValue appends one key component (see AppendKey).
func AppendKeyValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, `\N`...)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10)
	case float32:
		return strconv.AppendFloat(dst, float64(x), 'g', -1, 32)
	case float64:
		return strconv.AppendFloat(dst, x, 'g', -1, 64)
	case Decimal:
		return appendKeyString(dst, string(x))
	case string:
		return appendKeyString(dst, x)
	case []byte:
		dst = append(dst, "0x"...)
		return hex.AppendEncode(dst, x)
	default:
		return appendKeyString(dst, fmt.Sprint(x))
	}
}

func appendKeyString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', ',':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// SplitKey splits the part of a key after "<db>.<table>:" into its unescaped
// components, the inverse of AppendKey's joining. Values stay text. A NULL component
// comes back as the two characters `\N`, the same as a string holding `\N` would:
// to tell them apart, split with SplitKeyRaw and test each part with IsNullComponent
// before unescaping it with UnescapeKeyComponent.
func SplitKey(pk string) []string {
	parts := SplitKeyRaw(pk)
	for i, p := range parts {
		parts[i] = UnescapeKeyComponent(p)
	}
	return parts
}

// SplitKeyRaw splits the part of a key after "<db>.<table>:" at its unescaped commas,
// leaving each component in its escaped form (see IsNullComponent and
// UnescapeKeyComponent).
func SplitKeyRaw(pk string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(pk); i++ {
		switch pk[i] {
		case '\\':
			i++ // the next byte is escaped (or, for `\N`, part of the NULL marker)
		case ',':
			parts = append(parts, pk[start:i])
			start = i + 1
		}
	}
	return append(parts, pk[start:])
}

// IsNullComponent reports whether a raw key component (from SplitKeyRaw) is the NULL
// marker `\N`. A string value `\N` is written `\\N` and is not NULL.
func IsNullComponent(raw string) bool { return raw == `\N` }

// UnescapeKeyComponent undoes AppendKey's escaping of one raw component: `\\`
// becomes `\` and `\,` becomes `,`; any other byte stays as it is.
func UnescapeKeyComponent(raw string) string {
	i := 0
	for i < len(raw) && raw[i] != '\\' {
		i++
	}
	if i == len(raw) {
		return raw
	}
	out := make([]byte, i, len(raw))
	copy(out, raw[:i])
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) && (raw[i+1] == '\\' || raw[i+1] == ',') {
			i++
			c = raw[i]
		}
		out = append(out, c)
	}
	return string(out)
}
