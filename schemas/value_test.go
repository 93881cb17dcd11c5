package schemas

import (
	"bytes"
	"math"
	"testing"
)

// The unboxed encoders must write exactly what the boxed ones write: consumers
// cannot tell which one the producer used.
func TestValueEncodingMatchesBoxed(t *testing.T) {
	vals := []Value{
		NullValue(), IntValue(0), IntValue(-42), IntValue(math.MinInt64), IntValue(math.MaxInt64),
		UintValue(0), UintValue(7), UintValue(math.MaxUint64),
		Float32Value(1.5), Float32Value(-0.1), Float32Value(float32(math.Inf(1))), Float64Value(0.1), Float64Value(math.NaN()), Float64Value(1e300),
		DecimalValue("-12.50"), DecimalValue("0.00"),
		StringValue(""), StringValue(`a,b\c "q" é 価格 🚚` + "\u2028\x01"), StringBytesValue([]byte("text, as bytes")), StringValue("bad \xff utf8"),
		InvalidTextValue("caf\uFFFD"),
		BytesValue(nil), BytesValue([]byte{0, 1, 0xff, ','}),
	}
	for _, v := range vals {
		boxed := v.Any()
		if got, want := AppendValueJSON(nil, v), AppendJSONValue(nil, boxed); !bytes.Equal(got, want) {
			t.Errorf("JSON of %#v: got %s, want %s", boxed, got, want)
		}
		if got, want := AppendKeyComponent(nil, v), AppendKeyValue(nil, boxed); !bytes.Equal(got, want) {
			t.Errorf("key of %#v: got %s, want %s", boxed, got, want)
		}
	}
	cols := []Column{{Name: "id", Type: "bigint", PK: true}, {Name: "name", Type: "varchar"}, {Name: "b", Type: "blob", PK: true}}
	src := &Source{Name: "s", ServerID: 1, File: "binlog.000001", Pos: 4, GTID: "0-1-2", TsMs: 5, DB: "db", Table: "t", Row: 3}
	rows := [][]Value{
		nil,
		{IntValue(1), StringValue("x,y"), BytesValue([]byte{1, 2})},
		{IntValue(2), NullValue(), NullValue()},
		{IntValue(3)}, // shorter than the columns: the rest is null, as with []any
	}
	boxedRow := func(r []Value) []any {
		if r == nil {
			return nil
		}
		out := make([]any, len(r))
		for i, v := range r {
			out[i] = v.Any()
		}
		return out
	}
	for _, keys := range [][][]byte{nil, ColumnKeysJSON(cols)} {
		for _, fallback := range []bool{false, true} {
			for _, before := range rows {
				for _, after := range rows {
					e := Envelope{Op: OpUpdate, Seq: 9, Source: src, Columns: cols, ColumnKeys: keys, KeyFallback: fallback}
					got := e.AppendJSONValues(nil, nil, before, after)
					e.Before, e.After = boxedRow(before), boxedRow(after)
					want := e.AppendJSON(nil)
					if !bytes.Equal(got, want) {
						t.Fatalf("envelope:\n got %s\nwant %s", got, want)
					}
					for _, gtid := range []string{"", "0-1-2"} {
						src.GTID = gtid
						want = e.AppendJSON(nil)
						if got := e.AppendJSONValues(nil, AppendSourcePrefixJSON(nil, src), before, after); !bytes.Equal(got, want) {
							t.Fatalf("envelope with a source prefix:\n got %s\nwant %s", got, want)
						}
					}
				}
			}
		}
	}
	if !InvalidTextValue("x").InvalidText() || StringValue("x").InvalidText() || BytesValue([]byte{1}).InvalidText() || IntValue(1).InvalidText() {
		t.Error("InvalidText marks only InvalidTextValue")
	}
	row := rows[1]
	if got, want := AppendKeyValues(nil, "db", "t", row, []int{0, 2}), AppendKey(nil, "db", "t", []any{row[0].Any(), row[2].Any()}); !bytes.Equal(got, want) {
		t.Errorf("key: got %s, want %s", got, want)
	}
}
