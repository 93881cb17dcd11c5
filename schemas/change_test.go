package schemas

import "testing"

func TestKindOf(t *testing.T) {
	tests := []struct {
		typ  string
		want Kind
	}{
		{"tinyint", KindInt}, {"smallint", KindInt}, {"mediumint", KindInt}, {"int", KindInt}, {"bigint", KindInt},
		{"tinyint unsigned", KindUint}, {"smallint unsigned", KindUint}, {"mediumint unsigned", KindUint},
		{"int unsigned", KindUint}, {"bigint unsigned", KindUint},
		{"int(11)", KindInt}, {"bigint(20) unsigned", KindUint}, {"int(10) unsigned zerofill", KindUint},
		{"tinyint(1)", KindInt}, {"INTEGER", KindInt}, {"BIGINT UNSIGNED", KindUint}, {"integer", KindInt},
		{"decimal(12,2)", KindDecimal}, {"decimal", KindDecimal}, {"DECIMAL(65,30)", KindDecimal}, {"numeric(5,0)", KindDecimal},
		{"float", KindFloat}, {"FLOAT", KindFloat}, {"float(7,4)", KindFloat},
		{"double", KindDouble}, {"double precision", KindDouble}, {"real", KindDouble},
		{"bit(1)", KindBit}, {"bit(64)", KindBit}, {"year", KindYear}, {"year(4)", KindYear},
		{"date", KindString}, {"datetime", KindString}, {"datetime(6)", KindString}, {"time(3)", KindString},
		{"timestamp", KindString}, {"timestamp(3)", KindString},
		{"char", KindString}, {"varchar", KindString}, {"VARCHAR(255)", KindString}, {"tinytext", KindString},
		{"text", KindString}, {"mediumtext", KindString}, {"longtext", KindString},
		{"enum", KindString}, {"enum('a','b unsigned')", KindString}, {"set('x','y')", KindString}, {"json", KindString},
		{"binary", KindBytes}, {"binary(16)", KindBytes}, {"varbinary", KindBytes}, {"tinyblob", KindBytes},
		{"blob", KindBytes}, {"mediumblob", KindBytes}, {"longblob", KindBytes}, {"geometry", KindBytes},
		{"point", KindBytes}, {"polygon", KindBytes},
		{"", KindString}, {"unknown(99)", KindString},
	}
	for _, tt := range tests {
		if got := KindOf(tt.typ); got != tt.want {
			t.Errorf("KindOf(%q) = %d, want %d", tt.typ, got, tt.want)
		}
		if got := (Column{Type: tt.typ}).Kind(); got != tt.want {
			t.Errorf("Column{Type: %q}.Kind() = %d, want %d", tt.typ, got, tt.want)
		}
	}
}

func TestOpValid(t *testing.T) {
	for _, op := range []Op{OpCreate, OpUpdate, OpDelete, OpRead} {
		if !op.Valid() {
			t.Errorf("%q not valid", op)
		}
	}
	for _, op := range []Op{"", "x", "C", "insert"} {
		if op.Valid() {
			t.Errorf("%q valid", op)
		}
	}
}

func TestChangeRow(t *testing.T) {
	before, after := map[string]any{"a": 1}, map[string]any{"a": 2}
	if r := (&Change{Before: before, After: after}).Row(); r["a"] != 2 {
		t.Errorf("update Row = %v", r)
	}
	if r := (&Change{Before: before}).Row(); r["a"] != 1 {
		t.Errorf("delete Row = %v", r)
	}
}
