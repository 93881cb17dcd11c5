package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// memSchemas is an in-memory SchemaResolver and SchemaRegistry: what the
// schemas topic and a registry hold, without Kafka or HTTP.
type memSchemas struct {
	byFP    map[uint64]string
	byID    []string
	failing error // returned by every lookup when set
}

func newMemSchemas() *memSchemas { return &memSchemas{byFP: map[uint64]string{}} }

func (m *memSchemas) SchemaByFingerprint(_ context.Context, fp uint64) (string, error) {
	if m.failing != nil {
		return "", m.failing
	}
	s, ok := m.byFP[fp]
	if !ok {
		return "", fmt.Errorf("%w: fingerprint %x", ErrSchemaNotFound, fp)
	}
	return s, nil
}

func (m *memSchemas) SchemaByID(_ context.Context, id int) (string, error) {
	if m.failing != nil {
		return "", m.failing
	}
	if id < 1 || id > len(m.byID) {
		return "", fmt.Errorf("%w: id %d", ErrSchemaNotFound, id)
	}
	return m.byID[id-1], nil
}

func (m *memSchemas) Register(_ context.Context, _ string, schema string) (int, error) {
	for i, s := range m.byID {
		if s == schema {
			return i + 1, nil
		}
	}
	m.byID = append(m.byID, schema)
	return len(m.byID), nil
}

// publish takes the records Prepare asked for, as the producer would write them.
func (m *memSchemas) publish(t *testing.T, recs []OutRecord) {
	t.Helper()
	for _, r := range recs {
		if r.Topic != SchemasTopic("kanal") {
			t.Fatalf("schema record for topic %s", r.Topic)
		}
		var fp uint64
		if _, err := fmt.Sscanf(string(r.Key), "%016x", &fp); err != nil {
			t.Fatal(err)
		}
		// The key is the fingerprint's bytes as they appear in the record.
		m.byFP[binary.LittleEndian.Uint64(binary.BigEndian.AppendUint64(nil, fp))] = string(r.Value)
	}
}

func valuesOf(row []any) []Value {
	if row == nil {
		return nil
	}
	out := make([]Value, len(row))
	for i, v := range row {
		switch x := v.(type) {
		case nil:
			out[i] = NullValue()
		case int64:
			out[i] = IntValue(x)
		case uint64:
			out[i] = UintValue(x)
		case float32:
			out[i] = Float32Value(x)
		case float64:
			out[i] = Float64Value(x)
		case Decimal:
			out[i] = DecimalValue(string(x))
		case string:
			out[i] = StringValue(x)
		case []byte:
			out[i] = BytesValue(x)
		default:
			panic(fmt.Sprintf("%T", v))
		}
	}
	return out
}

// avroRoundTrip encodes e in format and decodes it back.
func avroRoundTrip(t *testing.T, format string, tv *TableVersion, e *Envelope, mem *memSchemas) (*Change, []byte) {
	t.Helper()
	enc, err := NewEncoder(format, EncoderConfig{TopicPrefix: "kanal", Registry: mem})
	if err != nil {
		t.Fatal(err)
	}
	te, err := enc.Table(tv)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := te.(TablePreparer).Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mem.publish(t, recs)
	rc := &RowChange{Op: e.Op, Seq: e.Seq, Source: e.Source, Event: 1, Before: valuesOf(e.Before), After: valuesOf(e.After)}
	val, err := te.AppendValue(nil, rc)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder()
	d.Schemas = mem
	cs, err := d.DecodeContext(context.Background(), format, val)
	if err != nil {
		t.Fatalf("decode %s: %v", format, err)
	}
	return cs[0], val
}

// TestAvroRoundTripEqualsJSON: every type, encoded in avro and avro-confluent and
// decoded, gives exactly the Change the JSON envelope of the same change gives.
func TestAvroRoundTripEqualsJSON(t *testing.T) {
	for _, op := range []Op{OpCreate, OpUpdate, OpDelete} {
		e := allTypesEnvelope(op)
		e.Source.GTID = "0-1-42"
		want, err := DecodeJSON(e.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		tv := &TableVersion{DB: "shop", Table: "all_types", Topic: "kanal.shop.all_types", Columns: e.Columns}
		for _, format := range []string{FormatAvro, FormatAvroConfluent} {
			got, val := avroRoundTrip(t, format, tv, e, newMemSchemas())
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s:\n got %+v\nwant %+v", format, op, got, want)
				for k := range want.Row() {
					if !reflect.DeepEqual(got.Row()[k], want.Row()[k]) {
						t.Errorf("  column %s: got %#v, want %#v", k, got.Row()[k], want.Row()[k])
					}
				}
			}
			if jl := len(e.AppendJSON(nil)); op == OpUpdate && len(val)*2 > jl {
				t.Errorf("%s record is %d bytes, JSON %d", format, len(val), jl)
			}
		}
	}
}

// TestAvroValuesExact checks the value mappings at their edges against the JSON
// envelope's decoding.
func TestAvroValuesExact(t *testing.T) {
	cases := []struct {
		typ  string
		vals []any
	}{
		{"decimal(65,30)", []any{Decimal("0.000000000000000000000000000000"), Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
			Decimal("99999999999999999999999999999999999.999999999999999999999999999999"), Decimal("-0.000000000000000000000000000001")}},
		{"decimal(10,2)", []any{Decimal("0.00"), Decimal("-0.01"), Decimal("0.50"), Decimal("-12345678.99"), Decimal("99999999.99"), Decimal("1.28"), Decimal("-1.28"), Decimal("-1.29")}},
		{"decimal(18,0)", []any{Decimal("999999999999999999"), Decimal("-999999999999999999"), Decimal("0"), Decimal("127"), Decimal("128"), Decimal("-128"), Decimal("-129")}},
		{"decimal(19,0)", []any{Decimal("9999999999999999999"), Decimal("-9999999999999999999")}},
		{"bigint unsigned", []any{uint64(0), uint64(127), uint64(128), uint64(math.MaxInt64), uint64(math.MaxInt64 + 1), uint64(math.MaxUint64)}},
		{"bigint", []any{int64(math.MinInt64), int64(math.MaxInt64), int64(-1), int64(0)}},
		{"int unsigned", []any{uint64(math.MaxUint32), uint64(0)}},
		{"bit(1)", []any{uint64(0), uint64(1)}},
		{"bit(63)", []any{uint64(math.MaxInt64)}},
		{"bit(64)", []any{uint64(math.MaxUint64), uint64(0), uint64(1)}},
		{"timestamp", []any{"1970-01-01T00:00:01Z", "2038-01-19T03:14:07Z", "0000-00-00 00:00:00", "2000-02-29T23:59:59Z"}},
		{"timestamp(6)", []any{"1970-01-01T00:00:01.000001Z", "2024-02-29T09:34:56.789012Z", "0000-00-00 00:00:00.000000", "2024-02-29T09:34:56.000000Z"}},
		{"timestamp(2)", []any{"2024-02-29T09:34:56.10Z", "0000-00-00 00:00:00.00", "9999-12-31T23:59:59.99Z"}},
		{"set", []any{"", "a", "a,b,c", "x,emoji 🎉"}},
		{"varchar", []any{"", "plain", "bad \xff\xfe utf8 \xc3\x28", "\u2028\u2029"}},
		{"float", []any{float32(math.MaxFloat32), float32(-1.1), float32(math.SmallestNonzeroFloat32)}},
		{"double", []any{math.MaxFloat64, -0.1, math.SmallestNonzeroFloat64}},
		{"blob", []any{[]byte{}, []byte{0, 0xff}, []byte(strings.Repeat("x", 300))}},
	}
	for _, tc := range cases {
		cols := []Column{{Name: "id", Type: "int", PK: true}, {Name: "v", Type: tc.typ}}
		tv := &TableVersion{DB: "d", Table: "t", Topic: "kanal.d.t", Columns: cols, Nullable: []bool{false, true}}
		for i, v := range tc.vals {
			e := &Envelope{Op: OpCreate, Seq: 1, Source: &Source{Name: "s", DB: "d", Table: "t"}, Columns: cols, After: []any{int64(i), v}}
			want, err := DecodeJSON(e.AppendJSON(nil))
			if err != nil {
				t.Fatal(err)
			}
			for _, format := range []string{FormatAvro, FormatAvroConfluent} {
				got, _ := avroRoundTrip(t, format, tv, e, newMemSchemas())
				if !reflect.DeepEqual(got.After["v"], want.After["v"]) {
					t.Errorf("%s %s %#v: got %#v, want %#v", format, tc.typ, v, got.After["v"], want.After["v"])
				}
			}
		}
	}
}

// TestAvroNotNullEveryType: every type can be a NOT NULL column (its field then
// has the type's zero as default) and round-trips.
func TestAvroNotNullEveryType(t *testing.T) {
	e := allTypesEnvelope(OpCreate)
	nullable := make([]bool, len(e.Columns))
	for i := range e.Columns {
		nullable[i] = e.After[i] == nil
	}
	tv := &TableVersion{DB: "shop", Table: "all_types", Topic: "kanal.shop.all_types", Columns: e.Columns, Nullable: nullable}
	want, err := DecodeJSON(e.AppendJSON(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{FormatAvro, FormatAvroConfluent} {
		got, _ := avroRoundTrip(t, format, tv, e, newMemSchemas())
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v", format, got)
		}
	}
	js, err := SchemaJSON(tv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(js, `"default":null`) != 2+2+1 { // before, after, the two NULL columns, source.gtid
		t.Errorf("schema defaults: %s", js)
	}
}

// TestAvroIndependentDecode: hamba/avro's own generic decoder reads kanal's
// body with the published schema, and the logical types hold the values.
func TestAvroIndependentDecode(t *testing.T) {
	cols := []Column{{Name: "id", Type: "bigint unsigned", PK: true}, {Name: "amount", Type: "decimal(12,2)"},
		{Name: "at", Type: "timestamp(3)"}, {Name: "tags", Type: "set"}, {Name: "odd name-é", Type: "varchar"}}
	tv := &TableVersion{DB: "shop", Table: "orders", Topic: "kanal.shop.orders", Columns: cols, Nullable: []bool{false, false, true, true, true}}
	e := &Envelope{Op: OpCreate, Seq: 9, Source: &Source{Name: "s", DB: "shop", Table: "orders", Row: 3}, Columns: cols,
		After: []any{uint64(math.MaxUint64), Decimal("-12.50"), "2024-06-01T12:00:00.250Z", "a,b", "x"}}
	mem := newMemSchemas()
	_, val := avroRoundTrip(t, FormatAvro, tv, e, mem)
	var js string
	for _, s := range mem.byFP {
		js = s
	}
	schema, err := avro.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := avro.Unmarshal(schema, val[10:], &got); err != nil {
		t.Fatal(err)
	}
	after := got["after"]
	if s := fmt.Sprint(after); !strings.Contains(s, "18446744073709551615") || !strings.Contains(s, "-25/2") ||
		!strings.Contains(s, "2024-06-01 12:00:00.25 +0000 UTC") || !strings.Contains(s, "[a b]") || !strings.Contains(s, "odd_name___:") {
		t.Errorf("hamba decoded %s", s)
	}
	if got["op"] != "c" || got["seq"] != int64(9) {
		t.Errorf("hamba decoded %v", got)
	}
	if fp := binary.LittleEndian.AppendUint64(nil, avroFingerprint(schema)); string(fp) != string(val[2:10]) {
		t.Errorf("record fingerprint %x, schema's %x", val[2:10], fp)
	}
}

// TestAvroCanonicalForm: the fingerprint covers the specification's Parsing
// Canonical Form, which strips logical types (hamba's keeps them), and agrees
// with hamba's where there are none.
func TestAvroCanonicalForm(t *testing.T) {
	plain := avro.MustParse(`{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":["null","string"],"default":null,"doc":"x"},
		{"name":"b","type":{"type":"array","items":{"type":"enum","name":"E","symbols":["X","Y"]}}},{"name":"c","type":["null","E"]},
		{"name":"d","type":{"type":"map","values":{"type":"fixed","name":"F","size":2}}}]}`)
	fp, _ := plain.FingerprintUsing(avro.CRC64Avro)
	if got := avroFingerprint(plain); got != binary.BigEndian.Uint64(fp) {
		t.Errorf("fingerprint %x, hamba's %x\n%s\n%s", got, fp, canonicalForm(plain), plain.String())
	}
	logical := avro.MustParse(`{"type":"record","name":"R","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}},
		{"name":"t","type":["null",{"type":"long","logicalType":"timestamp-micros"}]}]}`)
	want := `{"name":"R","type":"record","fields":[{"name":"d","type":"bytes"},{"name":"t","type":["null","long"]}]}`
	if got := canonicalForm(logical); got != want {
		t.Errorf("canonical form\n got %s\nwant %s", got, want)
	}
}

// TestAvroFingerprintCoversMetadata: versions that differ only in what the
// canonical form drops (decimal scale, kanal type, key) get distinct
// fingerprints, while the same version always gets the same one.
func TestAvroFingerprintCoversMetadata(t *testing.T) {
	fp := func(cols ...Column) string {
		enc, _ := NewEncoder(FormatAvro, EncoderConfig{TopicPrefix: "kanal"})
		te, err := enc.Table(&TableVersion{DB: "d", Table: "t", Columns: cols})
		if err != nil {
			t.Fatal(err)
		}
		return FingerprintKey(te.(*avroTable).fp)
	}
	id := Column{Name: "id", Type: "int", PK: true}
	seen := map[string]string{}
	for name, cols := range map[string][]Column{
		"decimal(10,2)": {id, {Name: "v", Type: "decimal(10,2)"}},
		"decimal(10,3)": {id, {Name: "v", Type: "decimal(10,3)"}},
		"varchar":       {id, {Name: "v", Type: "varchar"}},
		"text":          {id, {Name: "v", Type: "text"}},
		"v is key":      {id, {Name: "v", Type: "text", PK: true}},
	} {
		f := fp(cols...)
		if other, dup := seen[f]; dup {
			t.Errorf("%s and %s share fingerprint %s", name, other, f)
		}
		seen[f] = name
		if fp(cols...) != f {
			t.Errorf("%s: fingerprint not stable", name)
		}
	}
}

func TestAvroBadInput(t *testing.T) {
	e := allTypesEnvelope(OpCreate)
	tv := &TableVersion{DB: "shop", Table: "all_types", Topic: "kanal.shop.all_types", Columns: e.Columns}
	mem := newMemSchemas()
	_, val := avroRoundTrip(t, FormatAvro, tv, e, mem)
	_, cval := avroRoundTrip(t, FormatAvroConfluent, tv, e, mem)

	d := NewDecoder()
	d.Schemas = newMemSchemas() // knows nothing
	for _, tc := range []struct {
		format string
		val    []byte
	}{{FormatAvro, val}, {FormatAvroConfluent, cval}} {
		_, err := d.DecodeContext(context.Background(), tc.format, tc.val)
		if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrSchemaNotFound) {
			t.Errorf("%s unknown schema: %v, want ErrDecode and ErrSchemaNotFound", tc.format, err)
		}
	}
	down := newMemSchemas()
	down.failing = errors.New("connection refused")
	d = NewDecoder()
	d.Schemas = down
	_, err := d.DecodeContext(context.Background(), FormatAvro, val)
	if errors.Is(err, ErrDecode) || !errors.Is(err, ErrSchemaUnavailable) {
		t.Errorf("resolver down: %v, want ErrSchemaUnavailable and not ErrDecode", err)
	}
	d = NewDecoder()
	d.Schemas = mem
	for name, v := range map[string][]byte{
		"truncated":   val[:len(val)-3],
		"trailing":    append(append([]byte{}, val...), 0),
		"no marker":   append([]byte{0xc3, 0x02}, val[2:]...),
		"too short":   val[:5],
		"bad varint":  append(append([]byte{}, val[:10]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"huge length": append(append([]byte{}, val[:10]...), 2, 0xfe, 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, err := d.DecodeContext(context.Background(), FormatAvro, v); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}
	if _, err := d.Decode(FormatAvro, val); err != nil {
		t.Errorf("intact record after bad ones: %v", err)
	}
	// A NOT NULL column holding NULL cannot be written.
	enc, _ := NewEncoder(FormatAvro, EncoderConfig{TopicPrefix: "kanal"})
	te, _ := enc.Table(&TableVersion{DB: "d", Table: "t", Columns: []Column{{Name: "id", Type: "int", PK: true}}, Nullable: []bool{false}})
	if _, err := te.(TablePreparer).Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = te.AppendValue(nil, &RowChange{Op: OpCreate, Source: &Source{}, After: []Value{NullValue()}})
	if err == nil || !strings.Contains(err.Error(), "column id") {
		t.Errorf("NULL in NOT NULL column: %v", err)
	}
	if _, err := NewEncoder(FormatAvroConfluent, EncoderConfig{}); err == nil {
		t.Error("avro-confluent without a registry: no error")
	}
}

// TestAvroTruncate: a truncate (no row images) encodes and decodes in every format.
func TestTruncateEveryFormat(t *testing.T) {
	cols := []Column{{Name: "id", Type: "int", PK: true}}
	tv := &TableVersion{DB: "d", Table: "t", Topic: "kanal.d.t", Columns: cols}
	src := &Source{Name: "s", DB: "d", Table: "t", File: "b.1", Pos: 9}
	for _, format := range Formats() {
		mem := newMemSchemas()
		enc, err := NewEncoder(format, EncoderConfig{TopicPrefix: "kanal", Registry: mem})
		if err != nil {
			t.Fatal(err)
		}
		te, err := enc.Table(tv)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := te.(TablePreparer); ok {
			recs, err := p.Prepare(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mem.publish(t, recs)
		}
		val, err := te.AppendValue(nil, &RowChange{Op: OpTruncate, Seq: 5, Source: src, Event: 1})
		if err != nil {
			t.Fatal(err)
		}
		d := NewDecoder()
		d.Schemas = mem
		cs, err := d.Decode(format, val)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, val)
		}
		c := cs[0]
		if c.Op != OpTruncate || c.Before != nil || c.After != nil || c.Source.DB != "d" || c.Source.Table != "t" || c.Key() != "d.t" {
			t.Errorf("%s: %+v", format, c)
		}
	}
}
