package schemas

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// allTypesEnvelope returns a change with one column per kind of MySQL type and
// values at the edges of each, built the way the producer builds envelopes.
func allTypesEnvelope(op Op) *Envelope {
	cols := []Column{
		{Name: "id", Type: "bigint", PK: true},
		{Name: "i8", Type: "tinyint"},
		{Name: "u8", Type: "tinyint unsigned"},
		{Name: "u16", Type: "smallint unsigned"},
		{Name: "u32", Type: "int unsigned"},
		{Name: "u64", Type: "bigint unsigned"},
		{Name: "imin", Type: "bigint"},
		{Name: "dec", Type: "decimal(65,30)"},
		{Name: "dsmall", Type: "decimal(10,5)"},
		{Name: "f32", Type: "float"},
		{Name: "f64", Type: "double"},
		{Name: "fbig", Type: "double"},
		{Name: "bits", Type: "bit(64)"},
		{Name: "yr", Type: "year"},
		{Name: "yr0", Type: "year"},
		{Name: "d", Type: "date"},
		{Name: "dt", Type: "datetime(6)"},
		{Name: "t", Type: "time(3)"},
		{Name: "ts", Type: "timestamp(3)"},
		{Name: "ts0", Type: "timestamp"},
		{Name: "tszero", Type: "timestamp"},
		{Name: "s", Type: "varchar"},
		{Name: "ch", Type: "char"},
		{Name: "txt", Type: "text"},
		{Name: "e", Type: "enum"},
		{Name: "set", Type: "set"},
		{Name: "j", Type: "json"},
		{Name: "bin", Type: "binary"},
		{Name: "vb", Type: "varbinary"},
		{Name: "blob", Type: "blob"},
		{Name: "geo", Type: "geometry"},
		{Name: "nul", Type: "varchar"},
		{Name: "nulblob", Type: "blob"},
	}
	after := []any{
		int64(42), int64(-128), uint64(255), uint64(65535), uint64(4294967295),
		uint64(math.MaxUint64), int64(math.MinInt64),
		Decimal("-12345678901234567890123456789012345.123456789012345678901234567890"),
		Decimal("-0.00001"),
		float32(1.1), 0.1, 1e300,
		uint64(math.MaxUint64), int64(2155), int64(0),
		"2024-02-29", "2024-02-29 23:59:59.000001", "-838:59:59.000",
		"2038-01-19T03:14:07.999Z", "1970-01-01T00:00:01Z", "0000-00-00 00:00:00",
		"emoji 🎉 \u2028 \"q\" \\ \x01 tab\t nl\n", "", "长文本", "it's", "a,b",
		`{"k":[1,2,{"x":null}]}`,
		[]byte{0, 1, 2, 0xff}, []byte("\x00\x80\xfe invalid \xc3\x28 utf8"), []byte{}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25},
		nil, nil,
	}
	before := make([]any, len(after))
	copy(before, after)
	before[1] = int64(127)
	before[5] = uint64(0)
	before[21] = "old"
	before[31] = "was set"
	e := &Envelope{
		Op:      op,
		Seq:     7,
		Source:  &Source{Name: "src", ServerID: 1, File: "binlog.000001", Pos: 4, TsMs: 1700000000000, DB: "shop", Table: "all_types", Row: 0},
		Columns: cols,
	}
	switch op {
	case OpCreate, OpRead:
		e.After = after
	case OpUpdate:
		e.Before, e.After = before, after
	case OpDelete:
		e.Before = after
	}
	return e
}

func rowMap(cols []Column, row []any) map[string]any {
	if row == nil {
		return nil
	}
	m := make(map[string]any, len(cols))
	for i, c := range cols {
		m[c.Name] = row[i]
	}
	return m
}

func TestCanalJSONRoundTrip(t *testing.T) {
	for _, op := range []Op{OpCreate, OpRead, OpUpdate, OpDelete} {
		t.Run(string(op), func(t *testing.T) {
			e := allTypesEnvelope(op)
			out := e.AppendCanalJSON([]byte("prefix"), 99, 1700000000123)
			if !strings.HasPrefix(string(out), "prefix") {
				t.Fatal("AppendCanalJSON did not append to dst")
			}
			out = out[len("prefix"):]
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			got, err := DecodeCanalJSON(out)
			if err != nil {
				t.Fatalf("DecodeCanalJSON: %v\n%s", err, out)
			}
			if len(got) != 1 {
				t.Fatalf("got %d changes, want 1", len(got))
			}
			c := got[0]
			wantOp := op
			if op == OpRead {
				wantOp = OpCreate
			}
			if c.Op != wantOp {
				t.Errorf("op = %q, want %q", c.Op, wantOp)
			}
			if !reflect.DeepEqual(c.Columns, e.Columns) {
				t.Errorf("columns = %+v\nwant %+v", c.Columns, e.Columns)
			}
			if c.Source.DB != "shop" || c.Source.Table != "all_types" || c.Source.TsMs != 1700000000000 || c.Seq != 0 {
				t.Errorf("source = %+v seq %d", c.Source, c.Seq)
			}
			wantBefore, wantAfter := rowMap(e.Columns, e.Before), rowMap(e.Columns, e.After)
			for name, want := range wantAfter {
				if g := c.After[name]; !reflect.DeepEqual(g, want) {
					t.Errorf("after[%s] = %#v (%T), want %#v (%T)", name, g, g, want, want)
				}
			}
			for name, want := range wantBefore {
				if g := c.Before[name]; !reflect.DeepEqual(g, want) {
					t.Errorf("before[%s] = %#v (%T), want %#v (%T)", name, g, g, want, want)
				}
			}
			if (c.After == nil) != (wantAfter == nil) || (c.Before == nil) != (wantBefore == nil) {
				t.Errorf("before/after presence: got %v/%v", c.Before != nil, c.After != nil)
			}
			if c.Key() != (&Change{Source: *e.Source, Columns: e.Columns, Before: wantBefore, After: wantAfter}).Key() {
				t.Errorf("key changed: %q", c.Key())
			}
		})
	}
}

func TestCanalJSONShape(t *testing.T) {
	e := allTypesEnvelope(OpUpdate)
	out := e.AppendCanalJSON(nil, 5, 1700000000123)
	// Field order is Canal's (fastjson sorts bean properties alphabetically).
	keys := topLevelKeys(t, out)
	want := []string{"data", "database", "es", "id", "isDdl", "mysqlType", "old", "pkNames", "sql", "sqlType", "table", "ts", "type"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	var m struct {
		Data      []map[string]*string
		Database  string
		Es, ID    int64
		IsDdl     bool
		MysqlType map[string]string
		Old       []map[string]*string
		PkNames   []string
		SQL       string
		SQLType   map[string]int
		Table     string
		Ts        int64
		Type      string
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m.Database != "shop" || m.Table != "all_types" || m.Es != 1700000000000 || m.ID != 5 || m.Ts != 1700000000123 || m.Type != "UPDATE" || m.IsDdl || m.SQL != "" {
		t.Errorf("header fields wrong: %+v", m)
	}
	if !reflect.DeepEqual(m.PkNames, []string{"id"}) {
		t.Errorf("pkNames = %v", m.PkNames)
	}
	str := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return *p
	}
	wantData := map[string]string{
		"id": "42", "i8": "-128", "u8": "255", "u64": "18446744073709551615", "imin": "-9223372036854775808",
		"dsmall": "-0.00001", "f32": "1.1", "f64": "0.1", "fbig": "1.0E300", "bits": "18446744073709551615",
		"yr": "2155", "yr0": "0000", "dt": "2024-02-29 23:59:59.000001", "t": "-838:59:59.000",
		"ts": "2038-01-19 03:14:07.999", "ts0": "1970-01-01 00:00:01", "tszero": "0000-00-00 00:00:00",
		"e": "it's", "set": "a,b", "bin": "\x00\x01\x02\u00ff", "vb": "\x00\u0080\u00fe invalid \u00c3( utf8",
		"blob": "", "nul": "<null>", "nulblob": "<null>",
	}
	for k, want := range wantData {
		if got := str(m.Data[0][k]); got != want {
			t.Errorf("data[%s] = %q, want %q", k, got, want)
		}
	}
	// old: only the changed columns, with their before values (NULL → value counts).
	if len(m.Old) != 1 {
		t.Fatalf("old = %v", m.Old)
	}
	wantOld := map[string]string{"i8": "127", "u64": "0", "s": "old", "nul": "was set"}
	if len(m.Old[0]) != len(wantOld) {
		t.Errorf("old has %d columns, want %d: %v", len(m.Old[0]), len(wantOld), m.Old[0])
	}
	for k, want := range wantOld {
		if got := str(m.Old[0][k]); got != want {
			t.Errorf("old[%s] = %q, want %q", k, got, want)
		}
	}
	wantSQLType := map[string]int{
		"id": -5, "i8": -6, "u8": 5, "u16": 4, "u32": -5, "u64": 3, "dec": 3, "f32": 7, "f64": 8,
		"bits": -7, "yr": 12, "d": 91, "dt": 93, "t": 92, "ts": 93, "s": 12, "ch": 1, "txt": 2005,
		"e": 1, "set": 1, "j": 12, "bin": 2004, "vb": 2004, "blob": 2004, "geo": 2004,
		"nul": 12, "nulblob": -4,
	}
	for k, want := range wantSQLType {
		if got := m.SQLType[k]; got != want {
			t.Errorf("sqlType[%s] = %d, want %d", k, got, want)
		}
	}
	for _, c := range e.Columns {
		if m.MysqlType[c.Name] != c.Type {
			t.Errorf("mysqlType[%s] = %q, want %q", c.Name, m.MysqlType[c.Name], c.Type)
		}
	}
}

func topLevelKeys(t *testing.T, data []byte) []string {
	t.Helper()
	rows, err := decodeCanalRows(data)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range rows[0] {
		keys = append(keys, f.Name)
	}
	return keys
}

func TestCanalJSONOldAndPKNames(t *testing.T) {
	cols := []Column{{Name: "a", Type: "int", PK: true}, {Name: "b", Type: "varchar"}}
	src := &Source{DB: "d", Table: "t"}
	tests := []struct {
		name     string
		e        Envelope
		wantOld  string
		wantPK   string
		wantData string
	}{
		{"update nothing changed", Envelope{Op: OpUpdate, Source: src, Columns: cols, Before: []any{int64(1), "x"}, After: []any{int64(1), "x"}},
			`"old":null`, `"pkNames":["a"]`, `"data":[{"a":"1","b":"x"}]`},
		{"update to null", Envelope{Op: OpUpdate, Source: src, Columns: cols, Before: []any{int64(1), "x"}, After: []any{int64(1), nil}},
			`"old":[{"b":"x"}]`, `"pkNames":["a"]`, `"data":[{"a":"1","b":null}]`},
		{"update from null", Envelope{Op: OpUpdate, Source: src, Columns: cols, Before: []any{int64(1), nil}, After: []any{int64(1), "y"}},
			`"old":[{"b":null}]`, `"pkNames":["a"]`, `"data":[{"a":"1","b":"y"}]`},
		{"delete has the old row in data", Envelope{Op: OpDelete, Source: src, Columns: cols, Before: []any{int64(3), "z"}},
			`"old":null`, `"pkNames":["a"]`, `"data":[{"a":"3","b":"z"}]`},
		{"no primary key", Envelope{Op: OpCreate, Source: src, KeyFallback: true, Columns: []Column{{Name: "a", Type: "int", PK: true}, {Name: "b", Type: "varchar", PK: true}}, After: []any{int64(1), "x"}},
			`"old":null`, `"pkNames":null`, `"data":[{"a":"1","b":"x"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := string(tt.e.AppendCanalJSON(nil, 1, 2))
			for _, want := range []string{tt.wantOld, tt.wantPK, tt.wantData} {
				if !strings.Contains(out, want) {
					t.Errorf("%s\nmissing %s", out, want)
				}
			}
			got, err := DecodeCanalJSON([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			c := got[0]
			if c.KeyFallback != tt.e.KeyFallback {
				t.Errorf("KeyFallback = %v", c.KeyFallback)
			}
			if !reflect.DeepEqual(c.Before, rowMap(cols, tt.e.Before)) || !reflect.DeepEqual(c.After, rowMap(cols, tt.e.After)) {
				t.Errorf("before %v after %v", c.Before, c.After)
			}
		})
	}
}

func TestJavaFloatFormat(t *testing.T) {
	tests := []struct {
		f    float64
		bits int
		want string
	}{
		{0, 64, "0.0"}, {math.Copysign(0, -1), 64, "-0.0"}, {1, 64, "1.0"}, {100, 64, "100.0"},
		{1.5, 64, "1.5"}, {-2.25, 64, "-2.25"}, {0.001, 64, "0.001"}, {0.0001, 64, "1.0E-4"},
		{1234567, 64, "1234567.0"}, {1e7, 64, "1.0E7"}, {12345678, 64, "1.2345678E7"},
		{1e300, 64, "1.0E300"}, {-1.5e-7, 64, "-1.5E-7"}, {0.1, 64, "0.1"},
		{math.MaxFloat64, 64, "1.7976931348623157E308"}, {5e-324, 64, "4.9E-324"},
		{float64(float32(1.1)), 32, "1.1"}, {float64(float32(3.4028235e38)), 32, "3.4028235E38"},
		{float64(float32(16777216)), 32, "1.6777216E7"}, {float64(float32(0.3)), 32, "0.3"},
		{math.NaN(), 64, "NaN"}, {math.Inf(1), 64, "Infinity"}, {math.Inf(-1), 32, "-Infinity"},
	}
	for _, tt := range tests {
		if got := string(appendJavaFloat(nil, tt.f, tt.bits)); got != tt.want {
			t.Errorf("appendJavaFloat(%v, %d) = %q, want %q", tt.f, tt.bits, got, tt.want)
		}
	}
}

func TestCanalJSONSamples(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "canal", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("flink update", func(t *testing.T) {
		got, err := DecodeCanalJSON(read("flink_update.json"))
		if err != nil {
			t.Fatal(err)
		}
		c := got[0]
		wantCols := []Column{{Name: "id", Type: "INTEGER", PK: true}, {Name: "name", Type: "VARCHAR(255)"}, {Name: "description", Type: "VARCHAR(512)"}, {Name: "weight", Type: "FLOAT"}}
		if !reflect.DeepEqual(c.Columns, wantCols) {
			t.Errorf("columns = %+v", c.Columns)
		}
		if c.Op != OpUpdate || c.Source.DB != "inventory" || c.Source.Table != "products" || c.Source.TsMs != 1589373560000 {
			t.Errorf("change = %+v", c)
		}
		if c.After["weight"] != float32(5.18) || c.Before["weight"] != float32(5.15) || c.Before["id"] != int64(111) || c.Before["name"] != "scooter" {
			t.Errorf("before %v after %v", c.Before, c.After)
		}
		if c.Key() != "inventory.products:111" {
			t.Errorf("key = %q", c.Key())
		}
	})
	t.Run("ddl", func(t *testing.T) {
		_, err := DecodeCanalJSON(read("ddl_create_database.json"))
		if !errors.Is(err, ErrDDL) || !errors.Is(err, ErrDecode) {
			t.Fatalf("err = %v, want ErrDDL and ErrDecode", err)
		}
		if !strings.Contains(err.Error(), "dip_test") {
			t.Errorf("error does not name the database: %v", err)
		}
		if _, err := Decode("", read("ddl_create_database.json")); !errors.Is(err, ErrDDL) {
			t.Errorf("Decode sniffing: err = %v", err)
		}
	})
	t.Run("delete two rows", func(t *testing.T) {
		got, err := DecodeCanalJSON(read("delete_two_rows_extra_fields.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%d changes", len(got))
		}
		for i, c := range got {
			if c.Op != OpDelete || c.After != nil || c.Source.Row != i || !c.KeyFallback || len(c.KeyColumns()) != 3 {
				t.Errorf("change %d = %+v", i, c)
			}
		}
		if got[0].Before["time_create"] != int64(1697472177437) || got[1].Before["is_finished"] != nil || got[0].Before["is_finished"] != int64(0) {
			t.Errorf("values: %v / %v", got[0].Before, got[1].Before)
		}
		if got[0].Key() != `main.orderitemreceiveuniquerecord:22a88c4a-edbe-4a7f-a55d-3b7436704795,1697472177437,0` {
			t.Errorf("key = %q", got[0].Key())
		}
	})
	t.Run("canal native types", func(t *testing.T) {
		got, err := DecodeCanalJSON(read("canal_native_types.json"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"id": int64(1), "st": "it's", "tags": "a,c", "raw": []byte{0, 0xff, 0x80, 'a'},
			"n": uint64(math.MaxUint64), "ts": "2024-02-29T23:59:59.120Z", "y": int64(0),
			"price": Decimal("-0.00001"), "f": float32(1e10), "d": -1.5e-7, "b": uint64(1),
		}
		if !reflect.DeepEqual(got[0].After, want) {
			t.Errorf("after = %#v\nwant %#v", got[0].After, want)
		}
	})
}

func TestDecodeCanalJSONErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
		ddl            bool
	}{
		{"not json", `{"data":`, "canal-json", false},
		{"unknown type", `{"database":"d","table":"t","type":"UPSERT","data":[{"a":"1"}]}`, `d.t: unknown type "UPSERT"`, false},
		{"alter", `{"database":"d","table":"t","type":"ALTER","isDdl":true,"sql":"alter table t add c int"}`, "d.t: ALTER", true},
		{"rename without isDdl", `{"database":"d","table":"t","type":"RENAME","isDdl":false}`, "d.t: RENAME", true},
		{"insert without data", `{"database":"d","table":"t","type":"INSERT","data":null}`, "d.t: INSERT message without data", false},
		{"bad int", `{"database":"d","table":"t","type":"INSERT","data":[{"a":"x"}],"mysqlType":{"a":"int(11)"}}`, `d.t data[0]: column "a" (int(11))`, false},
		{"blob not latin1", `{"database":"d","table":"t","type":"INSERT","data":[{"a":"€"}],"mysqlType":{"a":"blob"}}`, "not ISO-8859-1", false},
		{"enum index out of range", `{"database":"d","table":"t","type":"INSERT","data":[{"a":"3"}],"mysqlType":{"a":"enum('x','y')"},"sqlType":{"a":4}}`, "enum index", false},
		{"data not a list", `{"database":"d","table":"t","type":"INSERT","data":"x"}`, "d.t data", false},
		{"old column unknown", `{"database":"d","table":"t","type":"UPDATE","data":[{"a":"1"}],"old":[{"zz":"1"}]}`, `column "zz" is not in data`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCanalJSON([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrDecode) {
				t.Errorf("error does not wrap ErrDecode: %v", err)
			}
			if errors.Is(err, ErrDDL) != tt.ddl {
				t.Errorf("errors.Is(err, ErrDDL) = %v, want %v", !tt.ddl, tt.ddl)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeCanalJSONTypedValues(t *testing.T) {
	// Canal-compatible writers such as Flink's canal-json encoder use JSON numbers and
	// booleans; they decode as their text.
	in := `{"data":[{"id":7,"ok":true,"w":5.5,"n":null}],"database":"d","table":"t","type":"INSERT",
		"mysqlType":{"id":"bigint","ok":"tinyint(1)","w":"double","n":"int"}}`
	got, err := DecodeCanalJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": int64(7), "ok": int64(1), "w": 5.5, "n": nil}
	if !reflect.DeepEqual(got[0].After, want) {
		t.Errorf("after = %#v", got[0].After)
	}
}

func TestDecode(t *testing.T) {
	e := allTypesEnvelope(OpCreate)
	kanal := e.AppendJSON(nil)
	canal := e.AppendCanalJSON(nil, 1, 2)
	tests := []struct {
		name, format string
		in           []byte
		wantErr      string
	}{
		{"json by header", FormatJSON, kanal, ""},
		{"canal by header", FormatCanalJSON, canal, ""},
		{"json by shape", "", kanal, ""},
		{"canal by shape", "", canal, ""},
		{"unknown format", "avro2", kanal, `unknown format "avro2"`},
		{"unknown shape", "", []byte(`{"x":1}`), "neither kanal json nor canal-json"},
		{"not an object", "", []byte(`[1]`), "not a JSON object"},
		{"header wins", FormatJSON, canal, "kanal json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.format, tt.in)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrDecode containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].After["u64"] != uint64(math.MaxUint64) || got[0].Source.Table != "all_types" {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestTypeMembers(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"enum('a','b')", []string{"a", "b"}, true},
		{"enum('it''s','x,y','')", []string{"it's", "x,y", ""}, true},
		{"set('a')", []string{"a"}, true},
		{"enum", nil, false},
		{"enum('a'", nil, false},
		{"enum(a,b)", nil, false},
	}
	for _, tt := range tests {
		got, ok := typeMembers(tt.in)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("typeMembers(%q) = %q, %v", tt.in, got, ok)
		}
	}
}

// FuzzDecodeCanalJSON checks that arbitrary input never panics and that every
// failure wraps ErrDecode.
func FuzzDecodeCanalJSON(f *testing.F) {
	for _, op := range []Op{OpCreate, OpUpdate, OpDelete} {
		f.Add(allTypesEnvelope(op).AppendCanalJSON(nil, 1, 2))
	}
	entries, _ := os.ReadDir(filepath.Join("testdata", "canal"))
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("testdata", "canal", e.Name())); err == nil && strings.HasSuffix(e.Name(), ".json") {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		changes, err := DecodeCanalJSON(data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		for _, c := range changes {
			if c.Row() == nil {
				t.Fatalf("change without a row: %+v", c)
			}
			_ = c.Key()
			if _, err := c.MarshalJSON(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzCanalJSONRoundTrip: strings, bytes and floats survive AppendCanalJSON →
// DecodeCanalJSON exactly (strings when valid UTF-8).
func FuzzCanalJSONRoundTrip(f *testing.F) {
	f.Add("plain", []byte{0, 0xff}, 1.5, float32(1.1), int64(0), uint64(0))
	f.Add("\u2028\"\\\x00", []byte("\xc3\x28"), 5e-324, float32(3.4028235e38), int64(math.MinInt64), uint64(math.MaxUint64))
	f.Add("", []byte{}, -0.0, float32(1e-45), int64(2155), uint64(1<<63))
	f.Fuzz(func(t *testing.T, s string, b []byte, d float64, fl float32, i int64, u uint64) {
		if math.IsNaN(d) || math.IsNaN(float64(fl)) {
			return // NaN != NaN; MySQL cannot store it anyway
		}
		cols := []Column{{Name: "s", Type: "varchar", PK: true}, {Name: "b", Type: "blob"}, {Name: "d", Type: "double"},
			{Name: "f", Type: "float"}, {Name: "i", Type: "bigint"}, {Name: "u", Type: "bigint unsigned"}}
		e := &Envelope{Op: OpUpdate, Source: &Source{DB: "d", Table: "t"}, Columns: cols,
			Before: []any{s, []byte("x"), 0.0, float32(0), int64(1), uint64(2)},
			After:  []any{s, b, d, fl, i, u}}
		out := e.AppendCanalJSON(nil, 1, 2)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
		got, err := DecodeCanalJSON(out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		c := got[0]
		wantS := string([]rune(s))
		if b == nil {
			b = []byte{}
		}
		want := map[string]any{"s": wantS, "b": b, "d": d, "f": fl, "i": i, "u": u}
		if !reflect.DeepEqual(c.After, want) {
			t.Fatalf("after = %#v\nwant %#v\n%s", c.After, want, out)
		}
		if c.Before["b"].([]byte)[0] != 'x' || c.Before["s"] != wantS {
			t.Fatalf("before = %#v", c.Before)
		}
	})
}
