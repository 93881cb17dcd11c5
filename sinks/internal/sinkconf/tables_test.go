package sinkconf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCheckMatch(t *testing.T) {
	for _, tc := range []struct{ pattern, wantErr string }{
		{"shop.orders", ""},
		{"shop.*", ""},
		{"*.*", ""},
		{"sh?p.ord[a-z]rs", ""},
		{"nodot", `tables[3].match: "nodot" must look like db.table (globs allowed: shop.*)`},
		{"a.b.c", `tables[3].match: "a.b.c" must look like db.table`},
		{".orders", `tables[3].match: ".orders" must look like db.table`},
		{"shop.", `tables[3].match: "shop." must look like db.table`},
		{"", `tables[3].match: "" must look like db.table`},
		{"shop.[", `tables[3].match: "shop.[": syntax error in pattern`},
	} {
		err := CheckMatch("tables[3].match", tc.pattern)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckMatch(%q): %v", tc.pattern, err)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("CheckMatch(%q) = %v, want %q", tc.pattern, err, tc.wantErr)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"redis", true},
		{"es-orders_2", true},
		{strings.Repeat("a", 100), true},
		{strings.Repeat("a", 101), false},
		{"", false},
		{"a b", false},
		{"a.b", false},
	} {
		err := CheckName("name", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), fmt.Sprintf("name: %q must be", tc.name)) {
			t.Errorf("CheckName(%q) = %q: does not name the field and value", tc.name, err)
		}
	}
}

func TestRulesFirstMatchWins(t *testing.T) {
	var r Rules[string]
	r.Add("shop.orders", "orders")
	r.Add("shop.*", "shop")
	r.Add("*.orders", "any orders")
	for _, tc := range []struct {
		table, want string
		ok          bool
	}{
		{"shop.orders", "orders", true},
		{"shop.items", "shop", true},
		{"crm.orders", "any orders", true},
		{"crm.users", "", false},
		{"shop.orders", "orders", true}, // again, from the cache
		{"crm.users", "", false},
	} {
		got, ok := r.Lookup(tc.table)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.table, got, ok, tc.want, tc.ok)
		}
	}
	if r.Len() != 3 {
		t.Errorf("Len() = %d, want 3", r.Len())
	}
	var empty Rules[*int]
	if p, ok := empty.Lookup("a.b"); p != nil || ok {
		t.Errorf("empty Rules: Lookup = %v, %v", p, ok)
	}
}

func TestRulesConcurrentLookup(t *testing.T) {
	var r Rules[int]
	for i := range 10 {
		r.Add(fmt.Sprintf("db%d.*", i), i)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				db := (i + g) % 12 // db10 and db11 match nothing
				got, ok := r.Lookup(fmt.Sprintf("db%d.t%d", db, i%5))
				if ok != (db < 10) || ok && got != db {
					errs <- fmt.Sprintf("db%d: got %d, %v", db, got, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestKeyParts(t *testing.T) {
	for _, tc := range []struct{ table, key, db, tbl, pk string }{
		{"shop.orders", "shop.orders:7", "shop", "orders", "7"},
		{"shop.orders", "shop.orders:1,abc", "shop", "orders", "1,abc"},
		{"shop.orders", "shop.orders:a:b", "shop", "orders", "a:b"},
		{"shop.orders", "shop.orders:", "shop", "orders", ""},
		// A key of another table is not cut: the whole key stands for {pk}.
		{"shop.orders", "shop.items:7", "shop", "orders", "shop.items:7"},
		{"shop.orders", "shop.orders", "shop", "orders", "shop.orders"},
	} {
		db, tbl, pk := KeyParts(tc.table, tc.key)
		if db != tc.db || tbl != tc.tbl || pk != tc.pk {
			t.Errorf("KeyParts(%q, %q) = %q, %q, %q; want %q, %q, %q", tc.table, tc.key, db, tbl, pk, tc.db, tc.tbl, tc.pk)
		}
	}
}

func TestPatterns(t *testing.T) {
	type rule struct{ Match, Other string }
	got := Patterns([]rule{{"a.*", "x"}, {"b.c", "y"}}, func(r *rule) string { return r.Match })
	if strings.Join(got, " ") != "a.* b.c" {
		t.Errorf("Patterns = %q", got)
	}
	if got := Patterns([]rule(nil), func(r *rule) string { return r.Match }); got == nil || len(got) != 0 {
		t.Errorf("Patterns(nil) = %#v, want an empty list", got)
	}
}
