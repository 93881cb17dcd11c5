package sinkconf

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestColumnsValidate(t *testing.T) {
	reserved := func(name string) error {
		if strings.HasPrefix(name, "__") {
			return fmt.Errorf("%q is reserved", name)
		}
		return nil
	}
	for _, tc := range []struct {
		name     string
		c        ColumnsConfig
		reserved func(string) error
		wantErr  string
	}{
		{name: "empty", c: ColumnsConfig{}},
		{name: "include and rename", c: ColumnsConfig{Include: []string{"id", "note"}, Rename: map[string]string{"note": "text"}}},
		{name: "exclude", c: ColumnsConfig{Exclude: []string{"secret"}}},
		{name: "swap", c: ColumnsConfig{Rename: map[string]string{"a": "b", "b": "a"}}, reserved: reserved},
		{name: "no reserved check", c: ColumnsConfig{Rename: map[string]string{"a": "__v"}}},
		{name: "both lists", c: ColumnsConfig{Include: []string{"a"}, Exclude: []string{"b"}},
			wantErr: "tables[1].columns: include and exclude are exclusive"},
		{name: "empty target", c: ColumnsConfig{Rename: map[string]string{"a": ""}},
			wantErr: "tables[1].columns.rename: empty column name"},
		{name: "empty source", c: ColumnsConfig{Rename: map[string]string{"": "a"}},
			wantErr: "tables[1].columns.rename: empty column name"},
		{name: "reserved", c: ColumnsConfig{Rename: map[string]string{"v": "__v"}}, reserved: reserved,
			wantErr: `tables[1].columns.rename.v: "__v" is reserved`},
		{name: "two become one", c: ColumnsConfig{Rename: map[string]string{"a": "x", "b": "x"}},
			wantErr: `both become "x"`},
	} {
		err := tc.c.Validate("tables[1].columns", tc.reserved)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// Either pair may be named; the message names both sources.
	err := (&ColumnsConfig{Rename: map[string]string{"a": "x", "b": "x"}}).Validate("columns", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "columns.rename: ") ||
		!strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("duplicate target: %v", err)
	}
	// The reserved check's error is the message, not wrapped away.
	sentinel := errors.New("kept by the sink")
	err = (&ColumnsConfig{Rename: map[string]string{"a": "x"}}).Validate("columns", func(string) error { return sentinel })
	if err == nil || err.Error() != "columns.rename.a: kept by the sink" {
		t.Errorf("reserved error = %v", err)
	}
}

func TestColumnsName(t *testing.T) {
	type want struct {
		name string
		ok   bool
	}
	for _, tc := range []struct {
		name string
		c    ColumnsConfig
		cols map[string]want
	}{
		{"zero", ColumnsConfig{}, map[string]want{"id": {"id", true}, "note": {"note", true}}},
		{"include", ColumnsConfig{Include: []string{"id", "note"}, Rename: map[string]string{"note": "text", "secret": "s"}},
			map[string]want{"id": {"id", true}, "note": {"text", true}, "secret": {"", false}}},
		{"exclude", ColumnsConfig{Exclude: []string{"secret"}, Rename: map[string]string{"note": "remark"}},
			map[string]want{"id": {"id", true}, "note": {"remark", true}, "secret": {"", false}}},
	} {
		cols := tc.c.Compile()
		for col, w := range tc.cols {
			if got, ok := cols.Name(col); got != w.name || ok != w.ok {
				t.Errorf("%s: Name(%q) = %q, %v; want %q, %v", tc.name, col, got, ok, w.name, w.ok)
			}
		}
	}
	var zero Columns
	if got, ok := zero.Name("id"); got != "id" || !ok {
		t.Errorf("zero Columns: Name(id) = %q, %v", got, ok)
	}
}
