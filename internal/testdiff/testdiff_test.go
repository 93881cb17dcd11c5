package testdiff

import (
	"fmt"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	if d := Diff(map[string]string{}, map[string]string(nil)); d != "" {
		t.Errorf("empty and nil maps differ:\n%s", d)
	}
	want := map[string]string{"a": "1", "b": "2"}
	d := Diff(want, map[string]string{"a": "1", "b": "3", "c": "4"})
	for _, s := range []string{`"b"`, `"2"`, `"3"`, `"c"`} {
		if !strings.Contains(d, s) {
			t.Errorf("the report does not name %s:\n%s", s, d)
		}
	}
	a, b := map[int]int{}, map[int]int{}
	for i := range 1000 {
		a[i], b[i] = i, -i
	}
	if d := Diff(a, b); len(strings.Split(d, "\n")) > maxLines+1 || !strings.Contains(d, "more lines") {
		t.Errorf("a long report is not cut:\n%s", d)
	}
}

func TestRows(t *testing.T) {
	want := map[string]map[string]string{"k1": {"id": "1", "v": "a"}, "k2": {"id": "2", "v": "b"}}
	got := map[string]map[string]string{"k1": {"id": "1", "v": "a", "_kanal_version": "7"}, "k2": {"id": "2", "v": "b"}}
	if d := Rows(want, got); d != "" {
		t.Errorf("a column the source lacks counts:\n%s", d)
	}
	for name, g := range map[string]map[string]map[string]string{
		"value":   {"k1": {"id": "1", "v": "x"}, "k2": {"id": "2", "v": "b"}},
		"column":  {"k1": {"id": "1"}, "k2": {"id": "2", "v": "b"}},
		"missing": {"k1": {"id": "1", "v": "a"}},
		"extra":   {"k1": {"id": "1", "v": "a"}, "k2": {"id": "2", "v": "b"}, "k3": {"id": "3"}},
	} {
		if d := Rows(want, g); d == "" {
			t.Errorf("%s: no difference reported", name)
		} else if testing.Verbose() {
			fmt.Printf("%s:\n%s\n", name, d)
		}
	}
}
