package sinkconf

import (
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	names := []string{"key", "db", "table", "pk"}
	for _, tc := range []struct {
		in      string
		wantErr string // a part of the error; "" for none
		static  bool
		lits    string
	}{
		{in: "{key}", lits: ""},
		{in: "kc:{db}.{table}:{pk}", lits: "kc:.:"},
		{in: "", static: true},
		{in: "plain", static: true, lits: "plain"},
		{in: "{{x}}", static: true, lits: "{x}"},
		{in: "{{{pk}}}", lits: "{}"},
		{in: "a}}b{{c", static: true, lits: "a}b{c"},
		{in: "kc:{id}", wantErr: `"kc:{id}": unknown placeholder {id} (want {key}, {db}, {table} or {pk})`},
		{in: "{DB}", wantErr: `"{DB}": unknown placeholder {DB}`},
		{in: "{}", wantErr: `"{}": unknown placeholder {}`},
		{in: "{pk", wantErr: `"{pk": unclosed '{'`},
		{in: "x{", wantErr: `"x{": unclosed '{'`},
		{in: "x}", wantErr: `"x}": unmatched '}' (write '}}' for a literal brace)`},
		{in: "{pk}}", wantErr: `"{pk}}": unmatched '}'`},
		{in: "{{pk}", wantErr: `"{{pk}": unmatched '}'`},
	} {
		tmpl, err := ParseTemplate(tc.in, names...)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTemplate(%q) = %v, want an error with %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.in, err)
			continue
		}
		if tmpl.Static() != tc.static {
			t.Errorf("ParseTemplate(%q).Static() = %v, want %v", tc.in, tmpl.Static(), tc.static)
		}
		if got := tmpl.Literals(); got != tc.lits {
			t.Errorf("ParseTemplate(%q).Literals() = %q, want %q", tc.in, got, tc.lits)
		}
	}
}

func TestPlaceholderList(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "no placeholder"},
		{[]string{"db"}, "{db}"},
		{[]string{"db", "table"}, "{db} or {table}"},
		{[]string{"db", "table", "op", "key", "pk"}, "{db}, {table}, {op}, {key} or {pk}"},
	} {
		if got := placeholderList(tc.names); got != tc.want {
			t.Errorf("placeholderList(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
	if _, err := ParseTemplate("{x}"); err == nil || !strings.Contains(err.Error(), "(want no placeholder)") {
		t.Errorf("a template of a caller without placeholders: %v", err)
	}
}

func TestTemplateRender(t *testing.T) {
	// The values of "db.table" = "shop.orders", record key "shop.orders:7".
	names := []string{"db", "table", "op", "key", "pk"}
	values := []string{"shop", "orders", "u", "shop.orders:7", "7"}
	for _, tc := range []struct{ in, want string }{
		{"{db}.{table}", "shop.orders"},
		{"cdc.{op}.{db}.{table}", "cdc.u.shop.orders"},
		{"{key}", "shop.orders:7"},
		{"row:{pk}:{pk}", "row:7:7"},
		{"{{{db}}}", "{shop}"},
		{"fixed", "fixed"},
		{"", ""},
	} {
		tmpl, err := ParseTemplate(tc.in, names...)
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tc.in, err)
		}
		if got := tmpl.Render(values...); got != tc.want {
			t.Errorf("%q: Render = %q, want %q", tc.in, got, tc.want)
		}
		if got := string(tmpl.Append([]byte(">"), nil, values...)); got != ">"+tc.want {
			t.Errorf("%q: Append = %q, want %q", tc.in, got, ">"+tc.want)
		}
	}
	// Missing values render empty rather than failing.
	tmpl, _ := ParseTemplate("{db}/{pk}", names...)
	if got := tmpl.Render("shop"); got != "shop/" {
		t.Errorf("Render with missing values = %q, want %q", got, "shop/")
	}
	// The zero Template renders nothing.
	var zero Template
	if got := zero.Render(values...); got != "" {
		t.Errorf("zero Template renders %q", got)
	}
}

func TestTemplateAppendEscapes(t *testing.T) {
	tmpl, err := ParseTemplate("a b:{pk}", "pk")
	if err != nil {
		t.Fatal(err)
	}
	// add sees literals and values alike, so both get escaped.
	upper := func(dst []byte, s string) []byte { return append(dst, strings.ReplaceAll(s, " ", "_")...) }
	if got := string(tmpl.Append(nil, upper, "x y")); got != "a_b:x_y" {
		t.Errorf("Append with an escaping add = %q, want %q", got, "a_b:x_y")
	}
}

func TestTemplateUses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		uses []string
		want bool
	}{
		{"{db}.{table}:{pk}", []string{"key", "pk"}, true},
		{"kc:{db}", []string{"key", "pk"}, false},
		{"{key}", []string{"key", "pk"}, true},
		{"{{pk}}", []string{"pk"}, false}, // a literal, not a placeholder
		{"{db}", nil, false},
	} {
		tmpl, err := ParseTemplate(tc.in, "key", "db", "table", "pk")
		if err != nil {
			t.Fatalf("ParseTemplate(%q): %v", tc.in, err)
		}
		if got := tmpl.Uses(tc.uses...); got != tc.want {
			t.Errorf("%q.Uses(%q) = %v, want %v", tc.in, tc.uses, got, tc.want)
		}
	}
}
