package schemas

import "testing"

func TestBaseType(t *testing.T) {
	for in, want := range map[string]string{
		"bigint(20) unsigned": "bigint", "DECIMAL(12,2)": "decimal", "datetime(6)": "datetime",
		"enum('a','b')": "enum", "TIMESTAMP": "timestamp", "int unsigned zerofill": "int", "": "",
	} {
		if got := BaseType(in); got != want {
			t.Errorf("BaseType(%q) = %q, want %q", in, got, want)
		}
	}
}
