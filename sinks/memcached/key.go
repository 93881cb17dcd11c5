package memcachedsink

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// keyTemplate is a parsed key template: literal parts and placeholders,
// alternating, starting with a literal.
type keyTemplate struct {
	lits  []string // len(parts)+1
	parts []string // "key", "db", "table" or "pk"
}

// parseKeyTemplate parses "kc:{db}.{table}:{pk}"; "{{" and "}}" are literal
// braces.
func parseKeyTemplate(s string) (keyTemplate, error) {
	var t keyTemplate
	if s == "" {
		return t, errors.New("empty template")
	}
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
			switch name {
			case "key", "db", "table", "pk":
			default:
				return t, fmt.Errorf("%q: unknown placeholder {%s} (want {key}, {db}, {table} or {pk})", s, name)
			}
			t.lits = append(t.lits, lit.String())
			lit.Reset()
			t.parts = append(t.parts, name)
			i += j + 1
		case c == '}':
			return t, fmt.Errorf("%q: unmatched '}' (write '}}' for a literal brace)", s)
		default:
			lit.WriteByte(c)
		}
	}
	t.lits = append(t.lits, lit.String())
	if len(t.parts) == 0 {
		return t, fmt.Errorf("%q names no placeholder: every row would share one key", s)
	}
	hasPK := false
	for _, p := range t.parts {
		hasPK = hasPK || p == "key" || p == "pk"
	}
	if !hasPK {
		return t, fmt.Errorf("%q has neither {key} nor {pk}: rows of a table would share one key", s)
	}
	return t, nil
}

// maxKey is memcached's key length limit.
const maxKey = 250

// render builds the item key of a record: the template filled in from the
// record key ("<db>.<table>:<pk>") and table ("db.table"), escaped for
// memcached, and shortened with a hash when too long (see ItemKey).
func (t *keyTemplate) render(table, recKey string) string {
	db, tbl, _ := strings.Cut(table, ".")
	pk := strings.TrimPrefix(recKey, table+":")
	b := make([]byte, 0, len(recKey)+16)
	for i, p := range t.parts {
		b = appendEscaped(b, t.lits[i])
		var v string
		switch p {
		case "key":
			v = recKey
		case "db":
			v = db
		case "table":
			v = tbl
		case "pk":
			v = pk
		}
		b = appendEscaped(b, v)
	}
	b = appendEscaped(b, t.lits[len(t.parts)])
	if len(b) <= maxKey {
		return string(b)
	}
	sum := sha256.Sum256(b)
	return string(b[:200]) + "#" + hex.EncodeToString(sum[:16])
}

// appendEscaped appends s with the bytes memcached does not allow in keys
// (controls, space, DEL) and '%' written as %XX.
func appendEscaped(dst []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '%' {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
