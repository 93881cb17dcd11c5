package sqlmirror

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/sqloffsets"
	"github.com/kanal-cdc/kanal/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// everyType is a source table with a column of every value kind and the
// identifier cases Phoenix is picky about: mixed case, a reserved word, a
// quote in a name, a renamed column.
var everyType = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "Region", Type: "varchar", PK: true},
	{Name: "tiny", Type: "tinyint"},
	{Name: "u32", Type: "int unsigned"},
	{Name: "u64", Type: "bigint unsigned"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "f", Type: "float"},
	{Name: "d", Type: "double"},
	{Name: "flags", Type: "bit(10)"},
	{Name: "yr", Type: "year"},
	{Name: "day", Type: "date"},
	{Name: "at", Type: "datetime(6)"},
	{Name: "ts", Type: "timestamp(3)"},
	{Name: "tod", Type: "time"},
	{Name: "code", Type: "char"},
	{Name: "select", Type: "varchar"},
	{Name: "note", Type: "longtext"},
	{Name: "doc", Type: "json"},
	{Name: "state", Type: "enum"},
	{Name: "tags", Type: "set"},
	{Name: `we"ird`, Type: "varchar"},
	{Name: "bin", Type: "binary"},
	{Name: "blob", Type: "blob"},
	{Name: "v", Type: "int"},
	{Name: "gone", Type: "varchar"},
	{Name: "nothing", Type: "varchar"},
	{Name: "_kanal_version", Type: "bigint"},
}

var everyRow = map[string]any{
	"id": int64(-42), "Region": "eu,west", "tiny": int64(-128), "u32": uint64(4294967295),
	"u64": uint64(9223372036854775807), "amount": schemas.Decimal("-1234567890.12"),
	"f": float32(1.1), "d": 2.5e-300, "flags": uint64(0x2a5), "yr": int64(2024),
	"day": "2024-02-29", "at": "2024-02-29 23:59:59.123000", "ts": "2024-02-29T12:00:00.5Z",
	"tod": "13:14:15", "code": "O'Brien", "select": `a "quoted" word`, "note": "line1\nline2 — ünïcode",
	"doc": `{"a": [1, 2.5, "x"]}`, "state": "shipped", "tags": "a,b", `we"ird`: "",
	"bin": []byte{0, 1, 0xfe}, "blob": []byte{}, "v": int64(7), "gone": "excluded", "nothing": nil,
	"_kanal_version": int64(3),
}

// cannotHold are values a dialect refuses, per dialect.
var cannotHold = []struct {
	col schemas.Column
	v   any
}{
	{schemas.Column{Name: "u64", Type: "bigint unsigned"}, uint64(18446744073709551615)},
	{schemas.Column{Name: "big", Type: "decimal(65,30)"}, schemas.Decimal("12345678901234567890.123456789012345678901")},
	{schemas.Column{Name: "day", Type: "date"}, "0000-00-00"},
	{schemas.Column{Name: "at", Type: "datetime(6)"}, "2024-01-00 00:00:00.000000"},
	{schemas.Column{Name: "at", Type: "datetime(6)"}, "2024-02-29 23:59:59.123456"},
	{schemas.Column{Name: "tod", Type: "time(1)"}, "838:59:59.0"},
	{schemas.Column{Name: "tod", Type: "time"}, "-00:00:01"},
	{schemas.Column{Name: "note", Type: "text"}, "nul\x00byte"},
	{schemas.Column{Name: "note", Type: "text"}, "bad \xff utf-8"},
}

// avaticaRep is the Avatica representation calcite-avatica-go v5 binds a Go
// value with (statement.go parametersToTypedValues), given the parameter type
// the server declares; the wire test checks it against the real driver.
func avaticaRep(v any, declared string) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return "LONG " + fmt.Sprint(x)
	case float64:
		return "DOUBLE " + fmt.Sprint(x)
	case []byte:
		return fmt.Sprintf("BYTE_STRING 0x%x", x)
	case string:
		if declared == "DECIMAL" {
			return "BIG_DECIMAL " + x
		}
		return fmt.Sprintf("STRING %q", x)
	case time.Time:
		switch declared {
		case "DATE":
			return "JAVA_SQL_DATE " + x.Format(time.DateOnly)
		case "TIME":
			return "JAVA_SQL_TIME " + x.Format("15:04:05.000")
		}
		return "JAVA_SQL_TIMESTAMP " + x.Format("2006-01-02 15:04:05.000")
	}
	return fmt.Sprintf("unsupported %T", v)
}

// phoenixDeclared is the Phoenix type the mapping table in docs/sqlmirror.md
// gives each source type.
func phoenixDeclared(typ string) string {
	switch schemas.BaseType(typ) {
	case "decimal":
		return "DECIMAL"
	case "date":
		return "DATE"
	case "time":
		return "TIME"
	case "datetime", "timestamp":
		return "TIMESTAMP"
	}
	return ""
}

func goldenHandler(t *testing.T, cfg Config) *Handler {
	t.Helper()
	cfg.Name = "golden"
	if cfg.DSN == "" {
		cfg.DSN = map[string]string{Postgres: "postgres://u@127.0.0.1:1/db", MySQL: "u@tcp(127.0.0.1:1)/db", Phoenix: "http://127.0.0.1:1"}[cfg.Dialect]
	}
	h, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestGoldenSQL pins the SQL every dialect generates and, for Phoenix, how
// every value type is bound.
func TestGoldenSQL(t *testing.T) {
	var out strings.Builder
	mapping := []TableConfig{{Source: "shop.Order Items", Target: "Sales.OrderItems",
		Exclude: []string{"gone"}, Rename: map[string]string{"v": "Value"}}}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"postgres", Config{Dialect: Postgres}},
		{"mysql", Config{Dialect: MySQL}},
		{"phoenix", Config{Dialect: Phoenix}},
		{"phoenix, case_sensitive", Config{Dialect: Phoenix, CaseSensitive: true}},
		{"phoenix, truncate_to_millis", Config{Dialect: Phoenix, TruncateToMillis: true}},
	} {
		cfg := DefaultConfig()
		cfg.Dialect, cfg.CaseSensitive, cfg.TruncateToMillis = tc.cfg.Dialect, tc.cfg.CaseSensitive, tc.cfg.TruncateToMillis
		cfg.Tables = mapping
		h := goldenHandler(t, cfg)
		fmt.Fprintf(&out, "==== %s\n", tc.name)
		for _, table := range []string{"shop.Order Items", "wl.items"} {
			p, err := h.planFor(table, everyType)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "-- %s: upsert\n%s\n-- delete\n%s\n-- delete (tombstone of unknown version)\n%s\n",
				table, p.upsertSQL, p.delSQL, p.delAnySQL)
		}
		switch off := h.off.(type) {
		case *sqloffsets.Table:
			store, _ := off.Store("g", "t", 0, 1)
			fmt.Fprintf(&out, "-- offsets (internal/sqloffsets)\n%s\n%s\n%s\n%s\n", off.CreateSQL(), off.ClaimSQL(), off.LockSQL(), store)
		case *phoenixOffsets:
			fmt.Fprintf(&out, "-- offsets\n%s\n%s\n%s\n%s\n", off.d.createOffsets(off.table), off.d.selectOffset(off.table),
				off.d.loadOffsets(off.table), off.d.storeOffset(off.table))
		}
		if cfg.Dialect == Phoenix {
			out.WriteString("-- parameters\n")
			p, _ := h.planFor("wl.items", everyType)
			for i, c := range p.cols {
				v, err := h.value("wl.items", c, everyRow[c.Name])
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				fmt.Fprintf(&out, "%-2d %-14s %-16s %-40s -> %s\n", i+1, p.names[i], c.Type, showValue(everyRow[c.Name]), avaticaRep(v, phoenixDeclared(c.Type)))
			}
			fmt.Fprintf(&out, "%-2d %s (version) -> %s\n", len(p.cols)+1, p.names[len(p.cols)], avaticaRep(int64(3), ""))
		}
		out.WriteString("-- values the target cannot hold\n")
		for _, x := range cannotHold {
			v, err := h.value("wl.items", x.col, x.v)
			if err != nil {
				fmt.Fprintf(&out, "%v\n", err)
			} else if cfg.Dialect == Phoenix {
				fmt.Fprintf(&out, "ok: %s %s -> %s\n", x.col.Name, showValue(x.v), avaticaRep(v, phoenixDeclared(x.col.Type)))
			} else {
				fmt.Fprintf(&out, "ok: %s %s -> %s\n", x.col.Name, showValue(x.v), showValue(v))
			}
		}
	}
	const file = "testdata/sql.golden"
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenSQL -update to create it)", err)
	}
	if string(want) != out.String() {
		t.Errorf("generated SQL differs from %s (go test -run TestGoldenSQL -update rewrites it after review):\n%s", file, out.String())
	}
}
