package charset

import (
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// Entries of a table that are not a character.
const (
	// invalid: the byte starts no character. U+FFFD replaces that one byte and
	// decoding goes on at the next (MySQL's CONVERT does the same with '?').
	invalid rune = -1
	// unmapped: a well-formed multi-byte sequence that has no Unicode
	// character. U+FFFD replaces the whole sequence, as '?' does in MySQL.
	unmapped rune = -2
)

// table decodes an ASCII-compatible character set of one to three bytes a
// character.
type table struct {
	one [256]rune // a single byte
	// two[lead][trail]: a two-byte sequence; nil when lead starts none.
	two [256]*[256]rune
	// three[second][third]: EUC-JP's three-byte sequences 0x8F second third.
	three [256]*[256]rune
	// gb4 is GB18030's four-byte sequences in the BMP, by linear index.
	gb4 []rune
}

func (t *table) appendTable(dst, src []byte) ([]byte, int) {
	bad := 0
	for i := 0; i < len(src); {
		b := src[i]
		if b < 0x80 {
			dst = append(dst, b)
			i++
			continue
		}
		if b == 0x8F && t.three[0xA1] != nil {
			if i+2 < len(src) {
				if l := t.three[src[i+1]]; l != nil {
					if r := l[src[i+2]]; r != invalid {
						dst, bad = appendEntry(dst, r, bad)
						i += 3
						continue
					}
				}
			}
			dst, bad = appendEntry(dst, invalid, bad)
			i++
			continue
		}
		if l := t.two[b]; l != nil {
			if i+1 < len(src) {
				if r := l[src[i+1]]; r != invalid {
					dst, bad = appendEntry(dst, r, bad)
					i += 2
					continue
				}
			}
			dst, bad = appendEntry(dst, invalid, bad)
			i++
			continue
		}
		dst, bad = appendEntry(dst, t.one[b], bad)
		i++
	}
	return dst, bad
}

func appendEntry(dst []byte, r rune, bad int) ([]byte, int) {
	if r < 0 {
		return utf8.AppendRune(dst, utf8.RuneError), bad + 1
	}
	return utf8.AppendRune(dst, r), bad
}

// spec describes how to build a table from one of golang.org/x/text's
// encodings, and where MySQL differs from it.
type spec struct {
	enc encoding.Encoding
	// single: the bytes from 0x80 up that are characters of their own
	// (ASCII always is); leads and trails: the bytes of two-byte sequences,
	// as MySQL defines them (a well-formed sequence x/text has no character
	// for is unmapped, anything else invalid).
	single, leads, trails []byteRange
	// euc3: EUC-JP's 0x8F a1..fe a1..fe sequences exist.
	euc3 bool
	// name keys the generated fixes (fixes.go): where MySQL decodes
	// differently from x/text.
	name string
}

// fix is a run of codes that MySQL decodes differently from x/text: code+i
// (a sequence's bytes, big-endian) is the character r+i, or r for all of them
// when r is unmapped or invalid.
type fix struct {
	code uint32
	n    uint32
	r    rune
}

type byteRange struct{ lo, hi byte }

func in(rs []byteRange, b byte) bool {
	for _, r := range rs {
		if b >= r.lo && b <= r.hi {
			return true
		}
	}
	return false
}

func tableCharset(name string, s spec) *Charset {
	s.name = name
	return &Charset{name: name, kind: kindTable, build: s.build, spec: &s}
}

// build makes the table from x/text's and then applies MySQL's differences.
func (s spec) build() *table {
	t := s.base()
	t.apply(fixes[s.name])
	return t
}

func (t *table) apply(fs []fix) {
	for _, f := range fs {
		for i := range f.n {
			code, r := f.code+i, f.r
			if r >= 0 {
				r += rune(i)
			}
			t.set(code, r)
		}
	}
}

// entry returns the entry of one code (invalid where the table has none).
func (t *table) entry(code uint32) rune {
	switch {
	case code < 0x100:
		if t.two[code] != nil || (code == 0x8F && t.three[0xA1] != nil) {
			return invalid // a lead byte alone
		}
		return t.one[code]
	case code < 0x10000:
		if l := t.two[code>>8]; l != nil {
			return l[code&0xff]
		}
	default:
		if l := t.three[code>>8&0xff]; l != nil {
			return l[code&0xff]
		}
	}
	return invalid
}

// set sets the entry of one code.
func (t *table) set(code uint32, r rune) {
	switch {
	case code < 0x100:
		t.one[code] = r
	case code < 0x10000:
		if t.two[code>>8] == nil {
			l := new([256]rune)
			for i := range l {
				l[i] = invalid
			}
			t.two[code>>8] = l
		}
		t.two[code>>8][code&0xff] = r
	default:
		if t.three[code>>8&0xff] == nil {
			l := new([256]rune)
			for i := range l {
				l[i] = invalid
			}
			t.three[code>>8&0xff] = l
		}
		t.three[code>>8&0xff][code&0xff] = r
	}
}

// base decodes every one- and two-byte code (and EUC-JP's three-byte codes)
// with x/text once.
func (s spec) base() *table {
	t := &table{}
	dec := s.enc.NewDecoder()
	decode := func(code ...byte) rune {
		out, err := dec.Bytes(code)
		if err != nil {
			return unmapped
		}
		r, n := utf8.DecodeRune(out)
		if n != len(out) || r == utf8.RuneError {
			return unmapped
		}
		return r
	}
	for b := range 256 {
		switch {
		case b < 0x80:
			t.one[b] = rune(b)
		case in(s.single, byte(b)):
			t.one[b] = decode(byte(b))
			if t.one[b] == unmapped {
				t.one[b] = invalid
			}
		default:
			t.one[b] = invalid
		}
	}
	for lead := 0x80; lead < 256; lead++ {
		if !in(s.leads, byte(lead)) || (s.euc3 && lead == 0x8F) {
			continue
		}
		l := new([256]rune)
		for trail := range 256 {
			l[trail] = invalid
			if in(s.trails, byte(trail)) {
				l[trail] = decode(byte(lead), byte(trail))
			}
		}
		t.two[lead] = l
	}
	if s.euc3 {
		for second := 0xA1; second <= 0xFE; second++ {
			l := new([256]rune)
			for third := range 256 {
				l[third] = invalid
				if third >= 0xA1 && third <= 0xFE {
					l[third] = decode(0x8F, byte(second), byte(third))
				}
			}
			t.three[second] = l
		}
	}
	return t
}

// singleByte is a character set of one byte a character, from x/text's table.
func singleByte(name string, m *charmap.Charmap) *Charset {
	return tableCharset(name, spec{enc: m, single: []byteRange{{0x80, 0xFF}}})
}

var (
	lead81FE   = []byteRange{{0x81, 0xFE}}
	trailGBK   = []byteRange{{0x40, 0x7E}, {0x80, 0xFE}}
	trailBig5  = []byteRange{{0x40, 0x7E}, {0xA1, 0xFE}}
	leadSJIS   = []byteRange{{0x81, 0x9F}, {0xE0, 0xFC}}
	trailSJIS  = []byteRange{{0x40, 0x7E}, {0x80, 0xFC}}
	rangeA1FE  = []byteRange{{0xA1, 0xFE}}
	kanaSJIS   = []byteRange{{0xA1, 0xDF}}
	leadEUCJP  = []byteRange{{0x8E, 0x8E}, {0xA1, 0xFE}}
	trailEUCKR = []byteRange{{0x41, 0x5A}, {0x61, 0x7A}, {0x81, 0xFE}}
)

// tableCharsets are the character sets decoded through tables.
var tableCharsets = map[string]*Charset{
	// MySQL's latin1 is Windows-1252, with the five bytes Windows leaves
	// undefined mapped to the C1 controls of the same value (fixes.go).
	"latin1":   singleByte("latin1", charmap.Windows1252),
	"latin2":   singleByte("latin2", charmap.ISO8859_2),
	"latin5":   singleByte("latin5", charmap.ISO8859_9),
	"latin7":   singleByte("latin7", charmap.ISO8859_13),
	"cp1250":   singleByte("cp1250", charmap.Windows1250),
	"cp1251":   singleByte("cp1251", charmap.Windows1251),
	"cp1256":   singleByte("cp1256", charmap.Windows1256),
	"cp1257":   singleByte("cp1257", charmap.Windows1257),
	"cp850":    singleByte("cp850", charmap.CodePage850),
	"cp852":    singleByte("cp852", charmap.CodePage852),
	"cp866":    singleByte("cp866", charmap.CodePage866),
	"koi8r":    singleByte("koi8r", charmap.KOI8R),
	"koi8u":    singleByte("koi8u", charmap.KOI8U),
	"greek":    singleByte("greek", charmap.ISO8859_7),
	"hebrew":   singleByte("hebrew", charmap.ISO8859_8),
	"macroman": singleByte("macroman", charmap.Macintosh),
	"tis620":   singleByte("tis620", charmap.Windows874),
	"gbk":      tableCharset("gbk", spec{enc: simplifiedchinese.GBK, leads: lead81FE, trails: trailGBK}),
	"gb2312":   tableCharset("gb2312", spec{enc: simplifiedchinese.GBK, leads: rangeA1FE, trails: rangeA1FE}),
	"big5":     tableCharset("big5", spec{enc: traditionalchinese.Big5, leads: rangeA1FE, trails: trailBig5}),
	"sjis":     tableCharset("sjis", spec{enc: japanese.ShiftJIS, single: kanaSJIS, leads: leadSJIS, trails: trailSJIS}),
	"cp932":    tableCharset("cp932", spec{enc: japanese.ShiftJIS, single: kanaSJIS, leads: leadSJIS, trails: trailSJIS}),
	"ujis":     tableCharset("ujis", spec{enc: japanese.EUCJP, leads: leadEUCJP, trails: rangeA1FE, euc3: true}),
	"eucjpms":  tableCharset("eucjpms", spec{enc: japanese.EUCJP, leads: leadEUCJP, trails: rangeA1FE, euc3: true}),
	"euckr":    tableCharset("euckr", spec{enc: korean.EUCKR, leads: lead81FE, trails: trailEUCKR}),
}
