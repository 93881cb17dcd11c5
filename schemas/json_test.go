package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestJSONRoundTrip(t *testing.T) {
	for _, op := range []Op{OpCreate, OpRead, OpUpdate, OpDelete} {
		t.Run(string(op), func(t *testing.T) {
			e := allTypesEnvelope(op)
			e.KeyFallback = op == OpDelete
			e.Source.GTID = "0-1-42"
			out := e.AppendJSON(nil)
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			c, err := DecodeJSON(out)
			if err != nil {
				t.Fatalf("DecodeJSON: %v\n%s", err, out)
			}
			want := &Change{Op: op, Seq: e.Seq, Source: *e.Source, Columns: e.Columns, KeyFallback: e.KeyFallback,
				Before: rowMap(e.Columns, e.Before), After: rowMap(e.Columns, e.After)}
			if !reflect.DeepEqual(c, want) {
				for _, col := range e.Columns {
					if g, w := c.Row()[col.Name], want.Row()[col.Name]; !reflect.DeepEqual(g, w) {
						t.Errorf("%s: got %#v (%T), want %#v (%T)", col.Name, g, g, w, w)
					}
				}
				t.Fatalf("got %+v\nwant %+v", c, want)
			}
			// MarshalJSON of the decoded change gives the same bytes back.
			again, err := c.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Errorf("MarshalJSON differs from the envelope:\n%s\n%s", again, out)
			}
		})
	}
}

func TestJSONValueEncoding(t *testing.T) {
	tests := []struct {
		col  Column
		v    any
		want string
	}{
		{Column{Type: "bigint"}, int64(math.MinInt64), `-9223372036854775808`},
		{Column{Type: "bigint"}, int64(math.MaxInt64), `9223372036854775807`},
		{Column{Type: "bigint unsigned"}, uint64(math.MaxUint64), `18446744073709551615`},
		{Column{Type: "decimal(6,5)"}, Decimal("-0.00001"), `"-0.00001"`},
		{Column{Type: "float"}, float32(1.1), `1.1`},
		{Column{Type: "double"}, 1e300, `1e+300`},
		{Column{Type: "double"}, math.NaN(), `"NaN"`},
		{Column{Type: "double"}, math.Inf(-1), `"-Inf"`},
		{Column{Type: "float"}, float32(math.Inf(1)), `"+Inf"`},
		{Column{Type: "blob"}, []byte{0, 0xff, 'a'}, `"AP9h"`},
		{Column{Type: "varchar"}, "a\"b\\c\n\x00\u2028\u2029🎉", `"a\"b\\c\n\u0000\u2028\u2029🎉"`},
		{Column{Type: "varchar"}, "bad \xff utf8", `"bad \ufffd utf8"`},
		{Column{Type: "json"}, `{"a":1}`, `"{\"a\":1}"`},
		{Column{Type: "bit(8)"}, uint64(255), `255`},
		{Column{Type: "year"}, int64(1901), `1901`},
		{Column{Type: "varchar"}, nil, `null`},
	}
	for _, tt := range tests {
		got := string(AppendJSONValue(nil, tt.v))
		if got != tt.want {
			t.Errorf("AppendJSONValue(%#v) = %s, want %s", tt.v, got, tt.want)
			continue
		}
		back, err := decodeJSONValue(tt.col, json.RawMessage(got))
		if err != nil {
			t.Errorf("decode %s as %s: %v", got, tt.col.Type, err)
			continue
		}
		want := tt.v
		if s, ok := want.(string); ok && !utf8.ValidString(s) {
			want = string([]rune(s))
		}
		if f, ok := want.(float64); ok && math.IsNaN(f) {
			if g, ok := back.(float64); !ok || !math.IsNaN(g) {
				t.Errorf("NaN came back as %#v", back)
			}
			continue
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("%s decodes to %#v (%T), want %#v (%T)", got, back, back, want, want)
		}
	}
}

func TestJSONValidForRandomStrings(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.Intn(20))
		for j := range b {
			switch r.Intn(4) {
			case 0:
				b[j] = byte(r.Intn(0x20)) // control
			case 1:
				b[j] = byte(0x80 + r.Intn(0x80)) // high bytes, often invalid UTF-8
			default:
				b[j] = byte(r.Intn(0x80))
			}
		}
		checkJSONString(t, string(b))
	}
}

func checkJSONString(t *testing.T, s string) {
	t.Helper()
	out := appendJSONString(nil, s)
	if !json.Valid(out) {
		t.Fatalf("%q encodes to invalid JSON %s", s, out)
	}
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	// Valid UTF-8 comes back as it was; each invalid byte becomes U+FFFD.
	if want := string([]rune(s)); back != want {
		t.Fatalf("%q came back as %q, want %q", s, back, want)
	}
	if bytes.Contains(out, []byte("\u2028")) || bytes.Contains(out, []byte("\u2029")) {
		t.Fatalf("raw U+2028/U+2029 in %s", out)
	}
}

// FuzzAppendJSONString: any string gives valid JSON, and valid UTF-8 comes back
// unchanged.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x1f\"\\", "\u2028\u2029", "🎉", "\xff\xfe", "\xc3\x28", "\xed\xa0\x80", "a\u007fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkJSONString(t, s)
	})
}

// TestJSONStringUTF8MatchesChecked: for valid UTF-8, the path that trusts the
// text writes exactly what the checking path does (random text of ASCII, control
// characters, quotes, 2–4 byte characters and U+2028/U+2029 next to other E2
// sequences).
func TestJSONStringUTF8MatchesChecked(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	pieces := []string{"a", "Z", " ", "\x00", "\x1f", "\"", "\\", "\n", "\t", "\x7f", "é", "価", "🎉", "\u2028", "\u2029",
		"\u2027", "\u202a", "—", "€", "\u2000", "\xe2\x80\xa8x"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for range r.Intn(24) {
			b.WriteString(pieces[r.Intn(len(pieces))])
		}
		checkJSONStringUTF8(t, b.String())
	}
}

func checkJSONStringUTF8(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		return
	}
	if got, want := appendJSONStringUTF8(nil, s), appendJSONString(nil, s); !bytes.Equal(got, want) {
		t.Fatalf("%q: UTF-8 path %s, checking path %s", s, got, want)
	}
	if got, want := AppendValueJSON(nil, UTF8BytesValue([]byte(s))), AppendValueJSON(nil, StringValue(s)); !bytes.Equal(got, want) {
		t.Fatalf("%q: UTF8BytesValue encodes to %s, StringValue to %s", s, got, want)
	}
}

// FuzzJSONStringUTF8: the trusting path agrees with the checking one on any
// valid UTF-8.
func FuzzJSONStringUTF8(f *testing.F) {
	for _, s := range []string{"", "plain text longer than eight", "\u2028\u2029", "—\u2028—", "🎉🎉\"\\\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkJSONStringUTF8(t, s)
	})
}

func TestMarshalJSONMatchesEnvelope(t *testing.T) {
	e := allTypesEnvelope(OpUpdate)
	c := &Change{Op: e.Op, Seq: e.Seq, Source: *e.Source, Columns: e.Columns,
		Before: rowMap(e.Columns, e.Before), After: rowMap(e.Columns, e.After)}
	got, err := json.Marshal(c) // goes through MarshalJSON
	if err != nil {
		t.Fatal(err)
	}
	if want := e.AppendJSON(nil); !bytes.Equal(got, want) {
		t.Errorf("json.Marshal(change) =\n%s\nenvelope =\n%s", got, want)
	}
	// Cached column JSON gives the same bytes.
	e.ColumnsJSON = AppendColumnsJSON(nil, e.Columns)
	if !bytes.Equal(e.AppendJSON(nil), got) {
		t.Error("ColumnsJSON cache changes the encoding")
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not json", `{"op":`, "kanal json"},
		{"unknown op", `{"op":"x","source":{"db":"d","table":"t"}}`, `d.t: unknown op "x"`},
		{"no rows", `{"op":"c","source":{"db":"d","table":"t"},"columns":[],"before":null,"after":null}`, "d.t: neither before nor after"},
		{"bad int", `{"op":"c","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"int"}],"after":{"a":"x"}}`, `d.t after: column "a"`},
		{"int overflow", `{"op":"c","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"bigint"}],"after":{"a":9223372036854775808}}`, `d.t after: column "a"`},
		{"negative unsigned", `{"op":"c","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"int unsigned"}],"after":{"a":-1}}`, `column "a"`},
		{"missing column", `{"op":"d","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"int"}],"before":{}}`, `d.t before: column "a" missing`},
		{"bad base64", `{"op":"c","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"blob"}],"after":{"a":"!!"}}`, `d.t after: column "a"`},
		{"string for decimal is required", `{"op":"c","source":{"db":"d","table":"t"},"columns":[{"name":"a","type":"decimal(5,2)"}],"after":{"a":1.5}}`, `column "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrDecode) {
				t.Errorf("does not wrap ErrDecode: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestAppendColumnsJSON(t *testing.T) {
	got := string(AppendColumnsJSON(nil, []Column{{Name: "id", Type: "bigint", PK: true}, {Name: `we"ird`, Type: "varchar"}}))
	want := `[{"name":"id","type":"bigint","pk":true},{"name":"we\"ird","type":"varchar"}]`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var cols []Column
	if err := json.Unmarshal([]byte(got), &cols); err != nil || !cols[0].PK || cols[1].Name != `we"ird` {
		t.Errorf("does not decode back: %v %+v", err, cols)
	}
}

func TestPosition(t *testing.T) {
	p := Position{Source: "main", Flavor: "mariadb", ServerID: 1, File: "binlog.000003", Pos: 1234, Seq: 99, GTIDSet: "0-1-42"}
	if got := p.String(); got != "binlog.000003:1234 (gtid 0-1-42)" {
		t.Errorf("String = %q", got)
	}
	p.RowsDone, p.GTID = 500, "0-1-43"
	if got := p.String(); got != "binlog.000003:1234+500rows (gtid 0-1-42)" {
		t.Errorf("String = %q", got)
	}
	back, err := DecodePosition(p.Marshal())
	if err != nil || back != p {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if _, err := DecodePosition([]byte("{")); !errors.Is(err, ErrDecode) {
		t.Errorf("err = %v", err)
	}
}

func TestPlainASCII8(t *testing.T) {
	plain := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	rng := rand.New(rand.NewSource(12))
	special := []byte{0, 0x1f, 0x20, 0x21, '"', '\\', 0x7f, 0x80, 0xff, 'a', 'Z', '~'}
	b := make([]byte, 8)
	for n := 0; n < 200000; n++ {
		for i := range b {
			if rng.Intn(2) == 0 {
				b[i] = special[rng.Intn(len(special))]
			} else {
				b[i] = byte(rng.Intn(256))
			}
		}
		if got, want := plainASCII8(load8(string(b), 0)), plain(b); got != want {
			t.Fatalf("plainASCII8(%q) = %v, want %v", b, got, want)
		}
	}
}

func TestColumnKeysSameEncoding(t *testing.T) {
	cols := []Column{{Name: "id", Type: "bigint", PK: true}, {Name: "naïve \"name\"", Type: "varchar"}, {Name: "d", Type: "decimal(5,2)"}}
	e := Envelope{Op: OpUpdate, Seq: 7, Source: &Source{Name: "s", File: "binlog.000001", Pos: 4, DB: "db", Table: "t"},
		Columns: cols, Before: []any{int64(1), "a", Decimal("1.50")}, After: []any{int64(1), "b\n", nil}}
	want := e.AppendJSON(nil)
	e.ColumnKeys = ColumnKeysJSON(cols)
	if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
		t.Fatalf("with ColumnKeys:\n%s\nwithout:\n%s", got, want)
	}
	if !json.Valid(want) {
		t.Fatalf("invalid JSON: %s", want)
	}
}
