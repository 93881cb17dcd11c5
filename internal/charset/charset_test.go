package charset

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

func decode(t *testing.T, name string, src []byte) (string, int) {
	t.Helper()
	cs, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	out, n := cs.AppendUTF8(nil, src)
	return string(out), n
}

func TestLookup(t *testing.T) {
	for _, name := range Supported() {
		if _, err := Lookup(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if cs, err := Lookup("utf8"); err != nil || cs.Name() != "utf8mb3" {
		t.Errorf("utf8 is %v, %v", cs, err)
	}
	for _, name := range []string{"swe7", "dec8", "nonesuch"} {
		_, err := Lookup(name)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCollations(t *testing.T) {
	c := NewCollations()
	for id, want := range map[uint64]string{8: "latin1", 45: "utf8mb4", 63: "binary", 28: "gbk", 33: "utf8mb3", 255: "utf8mb4",
		248: "gb18030", 309: "utf8mb4", 2048: "utf8mb3", 1032: "latin1"} {
		if got, ok := c.Name(id); !ok || got != want {
			t.Errorf("collation %d: %q, want %s", id, got, want)
		}
	}
	if _, err := c.Charset(10); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "swe7") || !strings.Contains(err.Error(), "10") {
		t.Errorf("swe7_swedish_ci: %v", err)
	}
	if _, err := c.Charset(9999); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("unknown id: %v", err)
	}
	c.Add(9999, "latin1")
	if cs, err := c.Charset(9999); err != nil || cs.Name() != "latin1" {
		t.Errorf("added id: %v %v", cs, err)
	}
}

func TestAsIs(t *testing.T) {
	for _, tc := range []struct {
		cs   string
		src  string
		want bool
	}{
		{"utf8mb4", "héllo 🎉", true},
		{"utf8mb4", "a\xffb", false},
		{"utf8mb3", "plain", true},
		{"latin1", "plain ascii text", true},
		{"latin1", "caf\xe9", false},
		{"gbk", "0123456789abcdef", true},
		{"ascii", "abc", true},
		{"utf16", "ab", false},
		{"binary", "ab", false},
	} {
		cs, _ := Lookup(tc.cs)
		if got := cs.AsIs([]byte(tc.src)); got != tc.want {
			t.Errorf("%s %q: AsIs %v", tc.cs, tc.src, got)
		}
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		cs, src, want string
		bad           int
	}{
		{"utf8mb4", "a\xffb\xc3", "a\uFFFDb\uFFFD", 2},
		{"ascii", "a\x80", "a\uFFFD", 1},
		{"latin1", "\x80\x81", "€\u0081", 0},
		{"gbk", "\xc4\xe3\x80", "你\uFFFD", 1},
		{"sjis", "\x82\xa0\x81", "あ\uFFFD", 1},
		{"utf16", "\xd8\x3d\xde\x00\xd8\x3d\x00\x41", "😀\uFFFDA", 1},
		{"utf16le", "\x3d\xd8\x00\xde\x41", "😀\uFFFD", 1},
		{"ucs2", "\x00\xe9\xd8\x3d", "é\uFFFD", 1},
		{"utf32", "\x00\x01\xf6\x00\x00\x11\x00\x00\x00", "😀\uFFFD\uFFFD", 2},
	} {
		got, n := decode(t, tc.cs, []byte(tc.src))
		if got != tc.want || n != tc.bad {
			t.Errorf("%s %q: %q (%d invalid), want %q (%d)", tc.cs, tc.src, got, n, tc.want, tc.bad)
		}
	}
}

// TestGB18030 checks the decoding of one-, two- and four-byte sequences
// against x/text's encoder (MariaDB has no gb18030, and MySQL 8 cannot run
// here), for every character x/text itself encodes and decodes back the same
// (its encoder puts some private-use characters elsewhere than its decoder).
func TestGB18030(t *testing.T) {
	enc, dec := simplifiedchinese.GB18030.NewEncoder(), simplifiedchinese.GB18030.NewDecoder()
	var text []rune
	var src []byte
	for r := rune(0x80); r <= 0x10FFFF; r++ {
		if r >= 0xD800 && r <= 0xDFFF || r > 0xFFFF && r%97 != 0 {
			continue
		}
		b, err := enc.Bytes([]byte(string(r)))
		if err != nil {
			continue
		}
		if back, err := dec.Bytes(b); err != nil || string(back) != string(r) {
			continue
		}
		text = append(text, r)
		src = append(src, b...)
	}
	if len(text) < 60000 {
		t.Fatalf("only %d characters", len(text))
	}
	got, n := decode(t, "gb18030", src)
	if got != string(text) || n != 0 {
		g := []rune(got)
		for i := range text {
			if i >= len(g) || g[i] != text[i] {
				t.Fatalf("gb18030: %d invalid; rune %d: %U, want %U", n, i, g[i:min(i+3, len(g))], text[i])
			}
		}
	}
	got, n = decode(t, "gb18030", []byte("\x81\x30\x81\x30\x80\xff\x84\x31\xa5\x30a"))
	if got != "\u0080\uFFFD\uFFFD\uFFFDa" || n != 3 {
		t.Errorf("gb18030 invalid: %q %d", got, n)
	}
}

// TestUnicodeAgainstServer compares the UTF-16, UCS-2 and UTF-32 decoders with
// the server's CONVERT.
func TestUnicodeAgainstServer(t *testing.T) {
	conn := oracleConn(t)
	text := "é ß € 漢字 ひらがな 한글 Ωλ Ж 🎉 \u0000 \uFFFD"
	u16 := utf16.Encode([]rune(text))
	be16, le16 := make([]byte, 0, 2*len(u16)), make([]byte, 0, 2*len(u16))
	for _, u := range u16 {
		be16 = append(be16, byte(u>>8), byte(u))
		le16 = append(le16, byte(u), byte(u>>8))
	}
	var be32 []byte
	for _, r := range text {
		be32 = append(be32, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	bmp := strings.ReplaceAll(text, "🎉", "")
	var ucs2 []byte
	for _, r := range bmp {
		ucs2 = append(ucs2, byte(r>>8), byte(r))
	}
	for _, tc := range []struct {
		cs  string
		src []byte
	}{
		{"utf16", be16}, {"utf16le", le16}, {"utf32", be32}, {"ucs2", ucs2},
	} {
		var out string
		if err := conn.QueryRowContext(context.Background(), "SELECT HEX(CONVERT(CONVERT(UNHEX(?) USING "+tc.cs+") USING utf8mb4))",
			hex.EncodeToString(tc.src)).Scan(&out); err != nil {
			t.Fatal(err)
		}
		want, _ := hex.DecodeString(out)
		got, n := decode(t, tc.cs, tc.src)
		if c := strings.Count(got, "\uFFFD") - bytes.Count(want, []byte("\uFFFD")); c != n {
			t.Errorf("%s %X: %d replacements, counted %d", tc.cs, tc.src, c, n)
		}
		if g := strings.ReplaceAll(got, "\uFFFD", "?"); g != strings.ReplaceAll(string(want), "\uFFFD", "?") {
			t.Errorf("%s %X: server %q, kanal %q", tc.cs, tc.src, want, got)
		}
		if !utf8.ValidString(got) {
			t.Errorf("%s: invalid UTF-8", tc.cs)
		}
	}
}
