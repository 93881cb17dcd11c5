package memcachedsink

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
)

// keyTemplate is a parsed item key template.
type keyTemplate struct{ sinkconf.Template }

// keyPlaceholders are the placeholders of item key templates, in the order
// render gives their values.
var keyPlaceholders = []string{"key", "db", "table", "pk"}

// parseKeyTemplate parses "kc:{db}.{table}:{pk}"; "{{" and "}}" are literal
// braces. A template must tell a table's rows apart: it needs {key} or {pk}.
func parseKeyTemplate(s string) (keyTemplate, error) {
	if s == "" {
		return keyTemplate{}, errors.New("empty template")
	}
	t, err := sinkconf.ParseTemplate(s, keyPlaceholders...)
	switch {
	case err != nil:
		return keyTemplate{}, err
	case t.Static():
		return keyTemplate{}, fmt.Errorf("%q names no placeholder: every row would share one key", s)
	case !t.Uses("key", "pk"):
		return keyTemplate{}, fmt.Errorf("%q has neither {key} nor {pk}: rows of a table would share one key", s)
	}
	return keyTemplate{t}, nil
}

// maxKey is memcached's key length limit.
const maxKey = 250

// render builds the item key of a record: the template filled in from the
// record key ("<db>.<table>:<pk>") and table ("db.table"), escaped for
// memcached, and shortened with a hash when too long (see ItemKey).
func (t *keyTemplate) render(table, recKey string) string {
	db, tbl, pk := sinkconf.KeyParts(table, recKey)
	b := t.Append(make([]byte, 0, len(recKey)+16), appendEscaped, recKey, db, tbl, pk)
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
