package sinkconf

import (
	"path"
	"strings"
	"sync"
)

// CheckMatch checks a table rule's pattern: a "db.table" glob in path.Match
// syntax ("shop.orders", "shop.*"), as it is matched against the table of each
// record.
func CheckMatch(field, pattern string) error {
	db, table, ok := strings.Cut(pattern, ".")
	if !ok || db == "" || table == "" || strings.Contains(table, ".") {
		return fieldError(field, "%q must look like db.table (globs allowed: shop.*)", pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fieldError(field, "%q: %v", pattern, err)
	}
	return nil
}

// Patterns returns the Match patterns of a sink's table rules, for
// consumer.Tables when registering its handler.
func Patterns[T any](tables []T, match func(*T) string) []string {
	out := make([]string, 0, len(tables))
	for i := range tables {
		out = append(out, match(&tables[i]))
	}
	return out
}

// Rules finds the rule that applies to a table: the first one, in the order
// added, whose pattern matches "db.table". The answer is remembered per table,
// so a record costs one map lookup. Add every rule before the first Lookup;
// Lookup is safe for concurrent use.
type Rules[R any] struct {
	patterns []string
	rules    []R

	mu      sync.RWMutex
	byTable map[string]int // "db.table" → index in rules, -1 when none matches
}

// Add appends a rule for the tables pattern matches (checked by CheckMatch).
func (r *Rules[R]) Add(pattern string, rule R) {
	r.patterns = append(r.patterns, pattern)
	r.rules = append(r.rules, rule)
}

// Lookup returns the rule of table ("db.table"), and false when no pattern
// matches it.
func (r *Rules[R]) Lookup(table string) (R, bool) {
	r.mu.RLock()
	i, ok := r.byTable[table]
	r.mu.RUnlock()
	if !ok {
		i = -1
		for j, p := range r.patterns {
			if m, _ := path.Match(p, table); m {
				i = j
				break
			}
		}
		r.mu.Lock()
		if r.byTable == nil {
			r.byTable = map[string]int{}
		}
		r.byTable[table] = i
		r.mu.Unlock()
	}
	if i < 0 {
		var none R
		return none, false
	}
	return r.rules[i], true
}

// Len returns the number of rules.
func (r *Rules[R]) Len() int { return len(r.rules) }

// KeyParts splits a record of table ("db.table") with record key
// "<db>.<table>:<pk>" into the values of the {db}, {table} and {pk}
// placeholders.
func KeyParts(table, key string) (db, tbl, pk string) {
	db, tbl, _ = strings.Cut(table, ".")
	pk = key
	if len(key) > len(table) && key[len(table)] == ':' && key[:len(table)] == table {
		pk = key[len(table)+1:]
	}
	return db, tbl, pk
}
