package schemas

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"testing"
	"unsafe"
)

// sameDecode checks that the Decoder (fast path when it applies) and the
// encoding/json reference agree on data: both fail, or both give the same change.
func sameDecode(t *testing.T, d *Decoder, data []byte) (fast bool) {
	t.Helper()
	want, werr := decodeJSONStd(data)
	got, gerr := d.DecodeJSON(data)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("reference err %v, decoder err %v\n%s", werr, gerr, data)
	}
	if werr != nil {
		if gerr.Error() != werr.Error() || !errors.Is(gerr, ErrDecode) {
			t.Fatalf("errors differ: %v / %v", gerr, werr)
		}
		return false
	}
	_, fast = d.fastJSON(data)
	if d.SkipUpdateBefore && fast && want.Op == OpUpdate {
		want.Before = nil // checked, not built
	}
	if !sameChange(got, want) {
		t.Fatalf("decoder gave\n%#v\nreference\n%#v\n%s", got, want, data)
	}
	return fast
}

// sameChange is reflect.DeepEqual with NaN equal to NaN.
func sameChange(a, b *Change) bool {
	norm := func(c *Change) *Change {
		cp := *c
		fix := func(m map[string]any) map[string]any {
			if m == nil {
				return nil
			}
			out := make(map[string]any, len(m))
			for k, v := range m {
				switch x := v.(type) {
				case float64:
					if math.IsNaN(x) {
						v = "NaN"
					}
				case float32:
					if math.IsNaN(float64(x)) {
						v = "NaN32"
					}
				}
				out[k] = v
			}
			return out
		}
		cp.Before, cp.After = fix(c.Before), fix(c.After)
		return &cp
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// randomEnvelope builds an envelope of random columns and values of every kind,
// with the strings the encoder has to escape.
func randomEnvelope(r *rand.Rand) *Envelope {
	types := []string{"bigint", "int unsigned", "bigint unsigned", "decimal(12,2)", "float", "double",
		"bit(8)", "year", "datetime(6)", "varchar", "text", "enum", "json", "blob", "varbinary"}
	strs := []string{"", "plain", "größe 東京 🚚", `q"uote`, `back\slash`, "ctl\x01\x1f", "\u2028\u2029", "bad\xffutf8", "a]b", "}{,:"}
	n := 1 + r.Intn(12)
	cols := make([]Column, n)
	for i := range cols {
		name := fmt.Sprintf("c%d", i)
		if r.Intn(8) == 0 {
			name = strs[r.Intn(len(strs))] + name
		}
		cols[i] = Column{Name: name, Type: types[r.Intn(len(types))], PK: i == 0}
	}
	row := func() []any {
		out := make([]any, n)
		for i, c := range cols {
			if r.Intn(6) == 0 {
				continue // NULL
			}
			switch c.Kind() {
			case KindInt, KindYear:
				out[i] = []int64{0, -1, 42, math.MinInt64, math.MaxInt64, r.Int63()}[r.Intn(6)]
			case KindUint, KindBit:
				out[i] = []uint64{0, 7, math.MaxUint64, r.Uint64()}[r.Intn(4)]
			case KindDecimal:
				out[i] = Decimal([]string{"0.00", "-12.50", "99999999999.99"}[r.Intn(3)])
			case KindFloat:
				out[i] = []float32{0, -1.5, 3.4e38, float32(math.NaN()), float32(math.Inf(1)), r.Float32()}[r.Intn(6)]
			case KindDouble:
				out[i] = []float64{0, 1e300, -5e-324, math.NaN(), math.Inf(-1), r.NormFloat64()}[r.Intn(6)]
			case KindBytes:
				b := make([]byte, r.Intn(20))
				r.Read(b)
				out[i] = b
			default:
				out[i] = strs[r.Intn(len(strs))]
			}
		}
		return out
	}
	e := &Envelope{Op: []Op{OpCreate, OpRead, OpUpdate, OpDelete}[r.Intn(4)], Seq: r.Uint64(), Columns: cols,
		KeyFallback: r.Intn(5) == 0,
		Source: &Source{Name: strs[r.Intn(len(strs))], ServerID: r.Uint32(), File: "mysql-bin.000003", Pos: r.Uint32(),
			TsMs: r.Int63(), DB: "db", Table: strs[r.Intn(len(strs))] + "t", Row: r.Intn(5000)}}
	if r.Intn(2) == 0 {
		e.Source.GTID = "0-1-42"
	}
	switch e.Op {
	case OpCreate, OpRead:
		e.After = row()
	case OpUpdate:
		e.Before, e.After = row(), row()
	case OpDelete:
		e.Before = row()
	}
	return e
}

// TestDecoderMatchesReference: on what kanal writes, and on every corruption of
// it, the fast decoder gives exactly what encoding/json gives (same change, same
// error), and it does take the fast path for kanal's own envelopes.
func TestDecoderMatchesReference(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	plain, alias, skip := NewDecoder(), &Decoder{Alias: true}, &Decoder{SkipUpdateBefore: true}
	fast := 0
	const n = 1500
	for i := 0; i < n; i++ {
		d := []*Decoder{plain, alias, skip}[i%3]
		data := randomEnvelope(r).AppendJSON(nil)
		if sameDecode(t, d, data) {
			fast++
		}
		// Corruptions: a byte changed, a byte removed, cut short.
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
			sameDecode(t, d, bad)
		}
	}
	if fast != n {
		t.Errorf("fast path taken for %d of %d kanal envelopes", fast, n)
	}
	for _, op := range []Op{OpCreate, OpRead, OpUpdate, OpDelete} {
		if !sameDecode(t, alias, allTypesEnvelope(op).AppendJSON(nil)) {
			t.Errorf("fast path not taken for the all-types envelope (%s)", op)
		}
	}
}

// TestDecoderOwnsText: without Alias, what a change holds is its own: the
// records' bytes overwritten afterwards (as a reused buffer would be) and many
// records decoded one after the other (sharing text blocks) leave every change
// as encoding/json decoded it. Text values of a record are not in its input.
func TestDecoderOwnsText(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	d := NewDecoder()
	type kept struct {
		got, want *Change
	}
	var all []kept
	for range 400 {
		data := randomEnvelope(r).AppendJSON(nil)
		want, err := decodeJSONStd(data)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := d.fastJSON(data)
		if !ok {
			t.Fatalf("fast path not taken:\n%s", data)
		}
		for _, row := range []map[string]any{got.Before, got.After} {
			for col, v := range row {
				if s, ok := v.(string); ok && len(s) > 0 && inside(s, data) {
					t.Fatalf("value of %s points into the record's bytes", col)
				}
			}
		}
		for _, name := range []string{got.Source.Name, got.Source.File, got.Source.DB, got.Source.Table, got.Source.GTID, string(got.Op)} {
			if inside(name, data) {
				t.Fatalf("source field %q points into the record's bytes", name)
			}
		}
		for i := range data {
			data[i] = 'x'
		}
		all = append(all, kept{got, want})
	}
	runtime.GC() // only the changes keep their values' blocks alive
	for i, k := range all {
		if !sameChange(k.got, k.want) {
			t.Fatalf("change %d changed after later decodes:\n%#v\nwant\n%#v", i, k.got, k.want)
		}
	}
}

// inside reports whether s's bytes are within b.
func inside(s string, b []byte) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p < lo+uintptr(len(b))
}

// TestDecoderInputs covers shapes the encoder never writes: other key orders,
// white space, unknown keys, numbers outside JSON's grammar.
func TestDecoderInputs(t *testing.T) {
	const src = `"source":{"name":"n","server_id":1,"file":"f","pos":4,"ts_ms":5,"db":"d","table":"t","row":0}`
	inputs := []string{
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"before":null,"after":{"a":1}}`,
		` { "after" : { "a" : 1 } , "columns" : [ { "type" : "int" , "name" : "a" } ] , "op" : "c" , ` + src + ` } `,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"},{"name":"b","type":"int"}],"after":{"b":2,"a":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1,"extra":2}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1},"new_field":{"x":[1]}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":+1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":01}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1.0}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"double"}],"after":{"a":-0.5e+3}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"double"}],"after":{"a":"NaN"}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"varchar"}],"after":{"a":"x\u00e9\n"}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"varchar"}],"after":{"a":"raw` + "\xff" + `"}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[],"after":{}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}} x`,
		`{"OP":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		`{"op":"c","seq":-1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		`{"op":"c","op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1},"after":{"a":2}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"before":{"a":1},"after":{"a":2},"before":null}`,
		`{"op":"u","seq":1,` + src + `,"before":{"a":1},"columns":[{"name":"a","type":"int"}],"after":{"a":2},"before":null}`,
		// Repeated keys: encoding/json keeps the last (and reuses slice elements).
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"varchar"}],"after":{"a":"x"},"columns":[{"name":"a","type":"int"}]}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"},{"name":"b","type":"int"}],"after":{"a":1,"b":2},"columns":[{"name":"a","type":"int"}]}`,
		`{"op":"c","seq":1,` + src + `,"after":{"a":1},"columns":[{"name":"a","type":"int","pk":true}],"columns":[{"name":"a","type":"int"}]}`,
		`{"op":"c","seq":1,` + src + `,"source":{"name":"m"},"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		`{"op":"c","seq":1,"seq":2,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1},"key_fallback":true,"key_fallback":false}`,
		// A repeated column name.
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"},{"name":"a","type":"varchar"}],"after":{"a":1,"a":"x"}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"},{"name":"a","type":"int"}],"after":{"a":1,"a":2}}`,
		// Bad before images of updates: refused even when not built.
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"before":{"a":"x"},"after":{"a":2}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"before":{"b":1},"after":{"a":2}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"before":{"a":99999999999999999999},"after":{"a":2}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"int unsigned"}],"before":{"a":-1},"after":{"a":2}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"blob"}],"before":{"a":"!!"},"after":{"a":"AA=="}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"float"}],"before":{"a":1e99},"after":{"a":1}}`,
		`{"op":"u","seq":1,` + src + `,"columns":[{"name":"a","type":"varchar"}],"before":{"a":"ok"},"after":{"a":"fine"}}`,
		// ']' inside a name (the column cache finds the array's end by it).
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"price[usd]","type":"int"},{"name":"b","type":"int"}],"after":{"price[usd]":1,"b":2}}`,
		// Envelope and source keys written otherwise than kanal writes them (matched as bytes when it does).
		`{"op":"c","seq":1,"source":{"\u006eame":"n","server_id":1,"row":0,"file":"f","pos":4,"ts_ms":5,"db":"d","table":"t","db":"e"},"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		`{"op":"c","se\u0071":1,` + src + `,"columns" :[{"name":"a","type":"int"}],"after":{"a":1},"op":"u"}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1},"key_fallback":true,"after":{"a":2}}`,
		`{"opx":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`,
		// Row keys written otherwise than kanal writes them (matched as bytes when it does).
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"ab","type":"int"},{"name":"b","type":"int"}],"after":{"\u0061b":1, "b" :2}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"ab","type":"int"},{"name":"b","type":"int"}],"after":{"a":1,"b":2}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"ab","type":"int"},{"name":"b","type":"int"}],"after":{"abc":1,"b":2}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a\"b","type":"int"}],"after":{"a\"b":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a\"b","type":"int"}],"after":{"a"b":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a\\","type":"int"}],"after":{"a\\":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"a\\","type":"int"}],"after":{"a\":1}}`,
		`{"op":"c","seq":1,` + src + `,"columns":[{"name":"\u00e9","type":"int"}],"after":{"é":1}}`,
	}
	// The Runner's aliasing decoder and a zero Decoder must agree as well.
	for _, d := range []*Decoder{NewDecoder(), {Alias: true}, {}, {SkipUpdateBefore: true}} {
		for _, in := range inputs {
			sameDecode(t, d, []byte(in))
			sameDecode(t, d, []byte(in)) // a second time: from the column cache
		}
	}
	d := NewDecoder()
	// A second layout of the same table after an ALTER: not the cached one.
	a := `{"op":"c","seq":1,` + src + `,"columns":[{"name":"a","type":"int"}],"after":{"a":1}}`
	b := `{"op":"c","seq":2,` + src + `,"columns":[{"name":"a","type":"varchar"}],"after":{"a":"1"}}`
	for range 2 {
		sameDecode(t, d, []byte(a))
		sameDecode(t, d, []byte(b))
	}
}

// FuzzDecoder: whatever the input, the fast decoder agrees with encoding/json.
func FuzzDecoder(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	for range 20 {
		f.Add(randomEnvelope(r).AppendJSON(nil))
	}
	d, skip := NewDecoder(), &Decoder{SkipUpdateBefore: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecode(t, d, data)
		sameDecode(t, skip, data)
	})
}
