package schemas

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"
)

// compactEncode encodes e as json-compact with an encoder of source name
// source, publishing its descriptor to mem.
func compactEncode(t testing.TB, source string, e *Envelope, keyFallback bool, mem *memSchemas) []byte {
	t.Helper()
	enc, err := NewEncoder(FormatJSONCompact, EncoderConfig{TopicPrefix: "kanal", Source: source})
	if err != nil {
		t.Fatal(err)
	}
	te, err := enc.Table(&TableVersion{DB: e.Source.DB, Table: e.Source.Table, Topic: "kanal.x", Columns: e.Columns, KeyFallback: keyFallback})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := te.(TablePreparer).Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		fp, ok := compactKeyFingerprint(string(r.Key))
		if r.Topic != SchemasTopic("kanal") || !ok {
			t.Fatalf("descriptor record %s %s", r.Topic, r.Key)
		}
		if mem != nil {
			mem.byFP[fp] = string(r.Value)
		}
	}
	val, err := te.AppendValue(nil, &RowChange{Op: e.Op, Seq: e.Seq, Source: e.Source, Event: 1,
		Before: valuesOf(e.Before), After: valuesOf(e.After)})
	if err != nil {
		t.Fatal(err)
	}
	return val
}

// sameCompactDecode checks that the Decoder (fast path when it applies) and the
// encoding/json reference agree on data, and returns the change.
func sameCompactDecode(t testing.TB, d *Decoder, data []byte) (*Change, error) {
	t.Helper()
	want, werr := d.decodeCompactStd(context.Background(), data, nil)
	cs, gerr := d.DecodeContext(context.Background(), FormatJSONCompact, data)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("reference err %v, decoder err %v\n%s", werr, gerr, data)
	}
	if werr != nil {
		if gerr.Error() != werr.Error() || !errors.Is(gerr, ErrDecode) {
			t.Fatalf("errors differ: %v / %v", gerr, werr)
		}
		return nil, gerr
	}
	got := cs[0]
	if d.SkipUpdateBefore && want.Op == OpUpdate && got.Before == nil {
		want.Before = nil // checked, not built
	}
	if !sameChange(got, want) {
		t.Fatalf("decoder gave\n%#v\nreference\n%#v\n%s", got, want, data)
	}
	return got, nil
}

// TestCompactEqualsJSON: every type, every op, with and without GTID, key
// fallback, and a source name other than the descriptor's: json-compact decodes
// to exactly the Change the JSON envelope of the same change decodes to.
func TestCompactEqualsJSON(t *testing.T) {
	for _, op := range []Op{OpCreate, OpRead, OpUpdate, OpDelete, OpTruncate} {
		for _, gtid := range []string{"", "0-1-42"} {
			for _, keyFallback := range []bool{false, true} {
				for _, source := range []string{"src", "other"} {
					e := allTypesEnvelope(op)
					e.Source.GTID, e.KeyFallback, e.Source.Row = gtid, keyFallback, 17
					want, err := DecodeJSON(e.AppendJSON(nil))
					if err != nil {
						t.Fatal(err)
					}
					mem := newMemSchemas()
					val := compactEncode(t, source, e, keyFallback, mem)
					for _, d := range []*Decoder{NewDecoder(), {Alias: true}} {
						d.Schemas = mem
						got, err := sameCompactDecode(t, d, val)
						if err != nil {
							t.Fatalf("%s: %v\n%s", op, err, val)
						}
						if !sameChange(got, want) {
							t.Errorf("%s gtid %q fallback %v source %s:\n got %+v\nwant %+v\n%s", op, gtid, keyFallback, source, got, want, val)
						}
						if !d.fastCompact(val) {
							t.Errorf("%s: fast path not taken\n%s", op, val)
						}
					}
					if jl := len(e.AppendJSON(nil)); op != OpTruncate && len(val)*2 > jl {
						t.Errorf("%s: json-compact record is %d bytes, JSON %d", op, len(val), jl)
					}
					if hasName := strings.HasSuffix(string(val), `,"src"]`); hasName != (source == "other") {
						t.Errorf("source %s: name in the record: %v\n%s", source, hasName, val)
					}
				}
			}
		}
	}
}

// fastCompact reports whether the one-pass path decodes data.
func (d *Decoder) fastCompact(data []byte) bool {
	p := &jsonScan{d: d, alias: d.Alias, s: string(data)}
	if !p.lit("[") {
		return false
	}
	key, ok := p.str()
	if !ok {
		return false
	}
	fp, ok := compactKeyFingerprint(key)
	if !ok {
		return false
	}
	desc, err := d.compactDescriptor(context.Background(), fp)
	if err != nil {
		return false
	}
	return p.compactRest(desc, &Change{})
}

// TestCompactMatchesReference: random changes of every kind (escapes, invalid
// UTF-8, NaN, NULLs), and every corruption of them, decode on the fast path
// exactly as through encoding/json (same change, same error), and as the JSON
// envelope of the same change.
func TestCompactMatchesReference(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	mem := newMemSchemas()
	plain, alias, skip := NewDecoder(), &Decoder{Alias: true}, &Decoder{SkipUpdateBefore: true}
	for _, d := range []*Decoder{plain, alias, skip} {
		d.Schemas = mem
	}
	const n = 1500
	fast := 0
	for i := 0; i < n; i++ {
		d := []*Decoder{plain, alias, skip}[i%3]
		e := randomEnvelope(r)
		want, err := DecodeJSON(e.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		source := e.Source.Name
		if r.Intn(4) == 0 {
			source = "another"
		}
		data := compactEncode(t, source, e, e.KeyFallback, mem)
		got, err := sameCompactDecode(t, d, data)
		if err != nil {
			t.Fatal(err)
		}
		if d.SkipUpdateBefore && want.Op == OpUpdate {
			want.Before = nil
		}
		if !sameChange(got, want) {
			t.Fatalf("json-compact gave\n%#v\nJSON\n%#v\n%s", got, want, data)
		}
		if d.fastCompact(data) {
			fast++
		}
		for k := 0; k < 5; k++ {
			bad := append([]byte(nil), data...)
			j := r.Intn(len(bad))
			switch k % 3 {
			case 0:
				const alphabet = "{}[]\":,0-+.eE \\xu\x00\x1f\xff"
				bad[j] = alphabet[r.Intn(len(alphabet))]
			case 1:
				bad = append(bad[:j], bad[j+1:]...)
			case 2:
				bad = bad[:j]
			}
			_, _ = sameCompactDecode(t, d, bad)
		}
	}
	if fast != n {
		t.Errorf("fast path taken for %d of %d records", fast, n)
	}
}

// TestCompactDescriptorErrors: a record whose descriptor is missing is
// undecodable (ErrDecode, naming the fingerprint); one whose descriptor cannot
// be looked up now is not (ErrSchemaUnavailable only).
func TestCompactDescriptorErrors(t *testing.T) {
	e := allTypesEnvelope(OpCreate)
	val := compactEncode(t, "src", e, false, nil)
	fp := string(val[2:18])
	for name, d := range map[string]*Decoder{"unknown": {Schemas: newMemSchemas()}, "no resolver": {}} {
		_, err := d.Decode(FormatJSONCompact, val)
		if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), fp) {
			t.Errorf("%s: %v, want ErrDecode naming %s", name, err, fp)
		}
		if name == "unknown" && !errors.Is(err, ErrSchemaNotFound) {
			t.Errorf("%s: %v, want ErrSchemaNotFound", name, err)
		}
	}
	down := newMemSchemas()
	down.failing = errors.New("connection refused")
	_, err := (&Decoder{Schemas: down}).Decode(FormatJSONCompact, val)
	if errors.Is(err, ErrDecode) || !errors.Is(err, ErrSchemaUnavailable) {
		t.Errorf("resolver down: %v, want ErrSchemaUnavailable and not ErrDecode", err)
	}
	// Something else under the fingerprint (an avro schema, a hash collision).
	other := newMemSchemas()
	id, _ := compactKeyFingerprint(fp)
	other.byFP[id] = `{"format":"json-compact","name":"x","db":"d","table":"t","columns":[],"nullable":[],"key_fallback":false}`
	if _, err := (&Decoder{Schemas: other}).Decode(FormatJSONCompact, val); !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "something else") {
		t.Errorf("mismatched descriptor: %v", err)
	}
}

// TestCompactDescriptor: the descriptor carries what every record of a table
// version shares, the same bytes (and fingerprint) for the same version and a
// new fingerprint when anything of it changes.
func TestCompactDescriptor(t *testing.T) {
	cols := []Column{{Name: "id", Type: "bigint", PK: true}, {Name: "note", Type: "varchar"}}
	tv := &TableVersion{DB: "shop", Table: "users", Columns: cols, Nullable: []bool{false, true}}
	got := string(appendCompactDescriptor(nil, "main", tv))
	want := `{"format":"json-compact","name":"main","db":"shop","table":"users","columns":[{"name":"id","type":"bigint","pk":true},{"name":"note","type":"varchar"}],"nullable":[false,true],"key_fallback":false}`
	if got != want {
		t.Errorf("descriptor\n got %s\nwant %s", got, want)
	}
	fps := map[uint64]string{}
	for name, v := range map[string]*TableVersion{
		"base":     tv,
		"type":     {DB: "shop", Table: "users", Columns: []Column{cols[0], {Name: "note", Type: "text"}}, Nullable: []bool{false, true}},
		"nullable": {DB: "shop", Table: "users", Columns: cols, Nullable: []bool{false, false}},
		"fallback": {DB: "shop", Table: "users", Columns: cols, Nullable: []bool{false, true}, KeyFallback: true},
		"table":    {DB: "shop", Table: "users2", Columns: cols, Nullable: []bool{false, true}},
	} {
		fp := compactFingerprint(appendCompactDescriptor(nil, "main", v))
		if other, dup := fps[fp]; dup {
			t.Errorf("%s and %s share fingerprint", name, other)
		}
		fps[fp] = name
	}
	// One descriptor record per table version and encoder.
	enc, _ := NewEncoder(FormatJSONCompact, EncoderConfig{TopicPrefix: "p", Source: "main"})
	for i, wantRecs := range []int{1, 0} {
		te, _ := enc.Table(tv)
		recs, _ := te.(TablePreparer).Prepare(context.Background())
		if len(recs) != wantRecs {
			t.Fatalf("table %d: %d records", i, len(recs))
		}
		if len(recs) == 1 && (recs[0].Topic != "p._schemas" || string(recs[0].Value) != want) {
			t.Errorf("record %+v", recs[0])
		}
	}
	if !FormatUsesSchemasTopic(FormatJSONCompact) || FormatUsesSchemasTopic(FormatJSON) {
		t.Error("FormatUsesSchemasTopic")
	}
}

// TestCompactNarrowSize: a bench.earnings insert (bench/narrow.go) takes at
// most 1.5 times the minimal JSON of its row.
func TestCompactNarrowSize(t *testing.T) {
	cols := []Column{{Name: "id", Type: "bigint", PK: true}, {Name: "user_id", Type: "bigint"}, {Name: "kind", Type: "varchar"},
		{Name: "amount", Type: "decimal(18,2)"}, {Name: "note", Type: "varchar"}, {Name: "created_at", Type: "datetime(6)"}}
	after := []any{int64(312345), int64(1234567), "refund", Decimal("-12345.67"), "order 1234567", "2025-01-04 14:30:12.123456"}
	e := &Envelope{Op: OpCreate, Seq: 812345, Columns: cols, After: after,
		Source: &Source{Name: "narrowfmt3", ServerID: 1, File: "mariadb-bin.000012", Pos: 123456789, GTID: "0-1-51234",
			TsMs: 1765000000000, DB: "bench", Table: "earnings", Row: 999}}
	minimal := len(`{"id":312345,"user_id":1234567,"kind":"refund","amount":"-12345.67","note":"order 1234567","created_at":"2025-01-04 14:30:12.123456"}`)
	val := compactEncode(t, "narrowfmt3", e, false, nil)
	js := e.AppendJSON(nil)
	t.Logf("json-compact %d bytes, json %d, minimal %d: %.2f× and %.2f× minimal", len(val), len(js), minimal,
		float64(len(val))/float64(minimal), float64(len(js))/float64(minimal))
	if float64(len(val)) > 1.5*float64(minimal) {
		t.Errorf("json-compact %d bytes, more than 1.5 × %d\n%s", len(val), minimal, val)
	}
}

// FuzzCompactDecoder: on any input the fast path and encoding/json agree, with
// and without aliasing.
func FuzzCompactDecoder(f *testing.F) {
	r := rand.New(rand.NewSource(3))
	mem := newMemSchemas()
	for range 20 {
		e := randomEnvelope(r)
		f.Add(compactEncode(f, e.Source.Name, e, e.KeyFallback, mem))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range []*Decoder{{Schemas: mem}, {Schemas: mem, Alias: true}, {Schemas: mem, SkipUpdateBefore: true}} {
			_, _ = sameCompactDecode(t, d, data)
		}
	})
}
