// Package charset turns text stored in a MySQL or MariaDB character set into
// UTF-8, as the server's own CONVERT(value USING utf8mb4) does.
//
// A binlog carries column values as the bytes of the column's character set; the
// table map says which collation (and so which character set) each text column
// has. Text that is UTF-8 already (utf8mb3, utf8mb4, and ASCII-only values of
// the ASCII-compatible character sets) is only checked and used as it is; other
// text is decoded through lookup tables built, once per process and character
// set, from golang.org/x/text's encodings, with MySQL's own differences to them
// applied (see tables.go). The tables are checked, code by code, against a real
// server's CONVERT by this package's tests.
//
// Bytes that are not a character of their character set are replaced with
// U+FFFD, one per byte MySQL itself would replace with '?', and counted: the
// caller decides how to report them (the producer marks the record).
package charset

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
)

// ErrUnsupported is returned for character sets kanal cannot decode.
var ErrUnsupported = errors.New("character set not supported")

// kind is how a character set's bytes are decoded.
type kind uint8

const (
	kindUTF8    kind = iota // utf8mb3, utf8mb4: validated, used as is
	kindASCII               // ascii: 7-bit
	kindTable               // ASCII-compatible, 1 to 3 bytes a character: lookup tables
	kindGB18030             // 1, 2 or 4 bytes a character
	kindUTF16               // big-endian UTF-16
	kindUTF16LE             // little-endian UTF-16
	kindUCS2                // big-endian UCS-2 (no surrogate pairs)
	kindUTF32               // big-endian UTF-32
	kindBinary              // bytes, not text
)

// Charset is one character set. Its methods are safe for concurrent use.
type Charset struct {
	name string
	kind kind
	// build makes the lookup tables of kindTable and kindGB18030 on first use:
	// most producers see two or three character sets, and each table costs a
	// few hundred KiB and a few milliseconds to build.
	build func() *table
	spec  *spec // of kindTable: how build makes the table
	once  sync.Once
	t     *table
}

// Name is MySQL's name of the character set ("latin1", "utf8mb4", …).
func (c *Charset) Name() string { return c.name }

// Binary reports whether the character set is "binary": values are bytes, not text.
func (c *Charset) Binary() bool { return c.kind == kindBinary }

// AsIs reports whether src is already the UTF-8 text of its value, so the
// caller can use the bytes without a copy: valid UTF-8 in utf8mb3/utf8mb4, and
// pure ASCII in the character sets that share ASCII's bytes. It is the fast
// path: for most values of most tables it is all the work there is.
func (c *Charset) AsIs(src []byte) bool {
	switch c.kind {
	case kindUTF8:
		return utf8.Valid(src)
	case kindASCII, kindTable, kindGB18030:
		return isASCII(src)
	}
	return false
}

// isASCII reports whether every byte of b is below 0x80, eight at a time.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		if v&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x >= 0x80 {
			return false
		}
	}
	return true
}

// AppendUTF8 appends the UTF-8 text of src, which holds a value in this
// character set, to dst. Bytes that are no character of the set are replaced
// with U+FFFD; invalid counts the replacements. For "binary" the bytes are
// appended unchanged.
func (c *Charset) AppendUTF8(dst, src []byte) (out []byte, invalid int) {
	switch c.kind {
	case kindUTF8:
		return appendUTF8(dst, src)
	case kindASCII:
		for _, b := range src {
			if b < 0x80 {
				dst = append(dst, b)
			} else {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				invalid++
			}
		}
		return dst, invalid
	case kindTable:
		return c.tables().appendTable(dst, src)
	case kindGB18030:
		return c.tables().appendGB18030(dst, src)
	case kindUTF16, kindUTF16LE:
		return appendUTF16(dst, src, c.kind == kindUTF16LE)
	case kindUCS2:
		return appendUCS2(dst, src)
	case kindUTF32:
		return appendUTF32(dst, src)
	}
	return append(dst, src...), 0
}

func (c *Charset) tables() *table {
	c.once.Do(func() { c.t = c.build() })
	return c.t
}

// appendUTF8 copies valid UTF-8 and replaces each byte that starts no valid
// sequence with U+FFFD (as Go's range loop over a string reads it).
func appendUTF8(dst, src []byte) ([]byte, int) {
	invalid := 0
	for len(src) > 0 {
		r, n := utf8.DecodeRune(src)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
			invalid++
		} else {
			dst = append(dst, src[:n]...)
		}
		src = src[n:]
	}
	return dst, invalid
}

// charsets lists the character sets kanal decodes, by MySQL's name. Those of
// MySQL and MariaDB that are missing (dec8, hp8, swe7, keybcs2, armscii8,
// geostd8, macce) have no table in golang.org/x/text; Lookup names them.
var charsets = map[string]*Charset{
	"utf8mb4": {name: "utf8mb4", kind: kindUTF8},
	"utf8mb3": {name: "utf8mb3", kind: kindUTF8},
	"ascii":   {name: "ascii", kind: kindASCII},
	"binary":  {name: "binary", kind: kindBinary},
	"ucs2":    {name: "ucs2", kind: kindUCS2},
	"utf16":   {name: "utf16", kind: kindUTF16},
	"utf16le": {name: "utf16le", kind: kindUTF16LE},
	"utf32":   {name: "utf32", kind: kindUTF32},
	"gb18030": {name: "gb18030", kind: kindGB18030, build: buildGB18030},
}

// Lookup returns the character set MySQL calls name. MySQL 5.7's "utf8" is
// utf8mb3.
func Lookup(name string) (*Charset, error) {
	if name == "utf8" {
		name = "utf8mb3"
	}
	if c := charsets[name]; c != nil {
		return c, nil
	}
	if c := tableCharsets[name]; c != nil {
		return c, nil
	}
	if unsupported[name] {
		return nil, fmt.Errorf("%w: %s (golang.org/x/text has no table for it)", ErrUnsupported, name)
	}
	return nil, fmt.Errorf("%w: unknown character set %q", ErrUnsupported, name)
}

// unsupported are character sets of MySQL or MariaDB that kanal cannot decode.
var unsupported = map[string]bool{
	"dec8": true, "hp8": true, "swe7": true, "keybcs2": true, "armscii8": true, "geostd8": true, "macce": true,
	"filename": true,
}

// Supported lists the names of the character sets Lookup finds.
func Supported() []string {
	var names []string
	for n := range charsets {
		names = append(names, n)
	}
	for n := range tableCharsets {
		names = append(names, n)
	}
	return names
}
