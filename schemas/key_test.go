package schemas

import (
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

func TestAppendKey(t *testing.T) {
	tests := []struct {
		name string
		vals []any
		want string
	}{
		{"int", []any{int64(42)}, "shop.users:42"},
		{"negative", []any{int64(math.MinInt64)}, "shop.users:-9223372036854775808"},
		{"uint64 max", []any{uint64(math.MaxUint64)}, "shop.users:18446744073709551615"},
		{"string", []any{"alice"}, "shop.users:alice"},
		{"comma escaped", []any{"a,b"}, `shop.users:a\,b`},
		{"backslash escaped", []any{`a\b`}, `shop.users:a\\b`},
		{"trailing backslash", []any{`a\`, "b"}, `shop.users:a\\,b`},
		{"composite", []any{int64(1), "x,y", `z\`}, `shop.users:1,x\,y,z\\`},
		{"null", []any{nil}, `shop.users:\N`},
		{"string spelling null", []any{`\N`}, `shop.users:\\N`},
		{"composite with null", []any{int64(7), nil, "n"}, `shop.users:7,\N,n`},
		{"bytes with NUL", []any{[]byte{0, 'a', 0xff}}, "shop.users:0x0061ff"},
		{"empty bytes", []any{[]byte{}}, "shop.users:0x"},
		{"decimal", []any{Decimal("-12.50")}, "shop.users:-12.50"},
		{"float32", []any{float32(1.1)}, "shop.users:1.1"},
		{"float64", []any{0.1}, "shop.users:0.1"},
		{"string with NUL", []any{"a\x00b"}, "shop.users:a\x00b"},
		{"empty string", []any{""}, "shop.users:"},
		{"no components", nil, "shop.users:"},
		{"other types", []any{int(3), int32(-4), uint32(5), true}, "shop.users:3,-4,5,true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendKey([]byte(nil), "shop", "users", tt.vals))
			if got != tt.want {
				t.Errorf("AppendKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendKeyAppends(t *testing.T) {
	got := string(AppendKey([]byte("pre|"), "d", "t", []any{int64(1)}))
	if got != "pre|d.t:1" {
		t.Errorf("got %q", got)
	}
}

func TestSplitKey(t *testing.T) {
	tests := []struct {
		pk      string
		want    []string
		wantRaw []string
		nulls   []bool
	}{
		{"42", []string{"42"}, []string{"42"}, []bool{false}},
		{`a\,b,c`, []string{"a,b", "c"}, []string{`a\,b`, "c"}, []bool{false, false}},
		{`a\\,b`, []string{`a\`, "b"}, []string{`a\\`, "b"}, []bool{false, false}},
		{`\N,\\N`, []string{`\N`, `\N`}, []string{`\N`, `\\N`}, []bool{true, false}},
		{"", []string{""}, []string{""}, []bool{false}},
		{",", []string{"", ""}, []string{"", ""}, []bool{false, false}},
		{`x\`, []string{`x\`}, []string{`x\`}, []bool{false}},
	}
	for _, tt := range tests {
		if got := SplitKey(tt.pk); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitKey(%q) = %q, want %q", tt.pk, got, tt.want)
		}
		raw := SplitKeyRaw(tt.pk)
		if !reflect.DeepEqual(raw, tt.wantRaw) {
			t.Errorf("SplitKeyRaw(%q) = %q, want %q", tt.pk, raw, tt.wantRaw)
		}
		for i, r := range raw {
			if IsNullComponent(r) != tt.nulls[i] {
				t.Errorf("IsNullComponent(%q) = %v", r, !tt.nulls[i])
			}
		}
	}
}

// keyComponent is a random key value and the text SplitKey must give back.
func randomKeyComponent(r *rand.Rand) (any, string, bool) {
	alphabet := []string{"a", "b", ",", `\`, "N", "\x00", "é", "🎉", ":", ".", " "}
	switch r.Intn(7) {
	case 0:
		return nil, `\N`, true
	case 1:
		v := r.Int63() - r.Int63()
		return v, strings.TrimSpace(string(AppendKeyValue(nil, v))), false
	case 2:
		v := r.Uint64()
		return v, string(AppendKeyValue(nil, v)), false
	case 3:
		b := make([]byte, r.Intn(6))
		r.Read(b)
		return b, string(AppendKeyValue(nil, b)), false
	default:
		var sb strings.Builder
		for n := r.Intn(8); n > 0; n-- {
			sb.WriteString(alphabet[r.Intn(len(alphabet))])
		}
		return sb.String(), sb.String(), false
	}
}

func TestKeyRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		n := 1 + r.Intn(5)
		vals := make([]any, n)
		want := make([]string, n)
		nulls := make([]bool, n)
		for j := range vals {
			vals[j], want[j], nulls[j] = randomKeyComponent(r)
		}
		key := string(AppendKey(nil, "db", "tbl", vals))
		pk, ok := strings.CutPrefix(key, "db.tbl:")
		if !ok {
			t.Fatalf("key %q lacks prefix", key)
		}
		if got := SplitKey(pk); !reflect.DeepEqual(got, want) {
			t.Fatalf("vals %#v: key %q splits to %q, want %q", vals, key, got, want)
		}
		raw := SplitKeyRaw(pk)
		for j := range raw {
			if IsNullComponent(raw[j]) != nulls[j] {
				t.Fatalf("vals %#v: component %d null = %v", vals, j, !nulls[j])
			}
		}
		// Different values must give different keys (injectivity, per column types).
		vals2 := append([]any(nil), vals...)
		if s, ok := vals2[0].(string); ok {
			vals2[0] = s + ","
			if string(AppendKey(nil, "db", "tbl", vals2)) == key {
				t.Fatalf("%#v and %#v share key %q", vals, vals2, key)
			}
		}
	}
}

// FuzzKeyRoundTrip: any two strings survive AppendKey → SplitKey.
func FuzzKeyRoundTrip(f *testing.F) {
	f.Add("a,b", `c\`)
	f.Add(`\N`, "")
	f.Add(`\\,`, `,\,`)
	f.Fuzz(func(t *testing.T, a, b string) {
		key := string(AppendKey(nil, "d", "t", []any{a, b}))
		got := SplitKey(strings.TrimPrefix(key, "d.t:"))
		if len(got) != 2 || got[0] != a || got[1] != b {
			t.Fatalf("(%q, %q) -> %q -> %q", a, b, key, got)
		}
		raw := SplitKeyRaw(strings.TrimPrefix(key, "d.t:"))
		if IsNullComponent(raw[0]) || IsNullComponent(raw[1]) {
			t.Fatalf("string component taken for NULL in %q", key)
		}
	})
}

func TestChangeKey(t *testing.T) {
	cols := []Column{{Name: "tenant", Type: "varchar", PK: true}, {Name: "name", Type: "varchar"}, {Name: "id", Type: "bigint unsigned", PK: true}}
	tests := []struct {
		name string
		c    Change
		want string
	}{
		{"create uses after", Change{Op: OpCreate, Source: Source{DB: "app", Table: "items"}, Columns: cols,
			After: map[string]any{"tenant": "acme,inc", "name": "x", "id": uint64(9)}}, `app.items:acme\,inc,9`},
		{"delete uses before", Change{Op: OpDelete, Source: Source{DB: "app", Table: "items"}, Columns: cols,
			Before: map[string]any{"tenant": "t", "name": "x", "id": uint64(math.MaxUint64)}}, `app.items:t,18446744073709551615`},
		{"null key column", Change{Op: OpCreate, Source: Source{DB: "app", Table: "items"}, Columns: cols,
			After: map[string]any{"tenant": nil, "id": uint64(1)}}, `app.items:\N,1`},
		{"key fallback: every column", Change{Op: OpCreate, Source: Source{DB: "app", Table: "log"}, KeyFallback: true,
			Columns: []Column{{Name: "at", Type: "datetime", PK: true}, {Name: "msg", Type: "text", PK: true}},
			After:   map[string]any{"at": "2024-01-01 00:00:00", "msg": `a\b`}}, `app.log:2024-01-01 00:00:00,a\\b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Key(); got != tt.want {
				t.Errorf("Key() = %q, want %q", got, tt.want)
			}
		})
	}
	c := tests[0].c
	if got := c.KeyColumns(); !reflect.DeepEqual(got, []string{"tenant", "id"}) {
		t.Errorf("KeyColumns = %v", got)
	}
	if c.Table() != "app.items" {
		t.Errorf("Table = %q", c.Table())
	}
}
