package sqlmirror

import (
	"strconv"
	"strings"
)

// dialect generates a target's SQL. Table and column names come in as the
// mapping gives them; the dialect quotes them.
type dialect interface {
	// quote quotes an identifier, "schema.table" as two parts.
	quote(ident string) string
	// param is the i-th (0-based) placeholder.
	param(i int) string
	// upsert inserts a row or, when its key exists with an older (or NULL)
	// version, overwrites it; cols holds the key columns too and ends with the
	// version.
	upsert(table string, cols, key []string, version string) string
	// delete deletes the row with the key; when guarded, only if its version is
	// NULL or older than the last parameter.
	delete(table string, key []string, version string, guarded bool) string
	// convert turns a kanal value of column typ into the value bound for the
	// target, or says why the target cannot hold it.
	convert(typ string, v any) (any, error)
}

func newDialect(c *Config) dialect {
	switch c.Dialect {
	case Postgres:
		return pgDialect{}
	case MySQL:
		return mysqlDialect{}
	default:
		return phoenixDialect{caseSensitive: c.CaseSensitive, truncate: c.TruncateToMillis}
	}
}

func quoteParts(ident string, q func(string) string) string {
	if a, b, ok := strings.Cut(ident, "."); ok {
		return q(a) + "." + q(b)
	}
	return q(ident)
}

func joinQuoted(d dialect, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = d.quote(n)
	}
	return strings.Join(q, ", ")
}

func params(d dialect, from, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = d.param(from + i)
	}
	return strings.Join(p, ", ")
}

func keyWhere(d dialect, key []string) string {
	w := make([]string, len(key))
	for i, k := range key {
		w[i] = d.quote(k) + " = " + d.param(i)
	}
	return strings.Join(w, " AND ")
}

// ---- Postgres ----

type pgDialect struct{}

func (pgDialect) quote(ident string) string {
	return quoteParts(ident, func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` })
}

func (pgDialect) param(i int) string { return "$" + strconv.Itoa(i+1) }

func (d pgDialect) upsert(table string, cols, key []string, version string) string {
	isKey := map[string]bool{}
	for _, k := range key {
		isKey[k] = true
	}
	var set []string
	for _, c := range cols {
		if !isKey[c] {
			set = append(set, d.quote(c)+" = EXCLUDED."+d.quote(c))
		}
	}
	t := d.quote(table)
	return "INSERT INTO " + t + " AS t (" + joinQuoted(d, cols) + ") VALUES (" + params(d, 0, len(cols)) + ")" +
		" ON CONFLICT (" + joinQuoted(d, key) + ") DO UPDATE SET " + strings.Join(set, ", ") +
		" WHERE t." + d.quote(version) + " IS NULL OR t." + d.quote(version) + " < EXCLUDED." + d.quote(version)
}

func (d pgDialect) delete(table string, key []string, version string, guarded bool) string {
	q := "DELETE FROM " + d.quote(table) + " WHERE " + keyWhere(d, key)
	if guarded {
		q += " AND (" + d.quote(version) + " IS NULL OR " + d.quote(version) + " < " + d.param(len(key)) + ")"
	}
	return q
}

// ---- MySQL / MariaDB ----

type mysqlDialect struct{}

func (mysqlDialect) quote(ident string) string {
	return quoteParts(ident, func(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" })
}

func (mysqlDialect) param(int) string { return "?" }

func (d mysqlDialect) upsert(table string, cols, key []string, version string) string {
	isKey := map[string]bool{}
	for _, k := range key {
		isKey[k] = true
	}
	v := d.quote(version)
	guard := v + " IS NULL OR " + v + " < VALUES(" + v + ")"
	var set []string
	for _, c := range cols {
		if !isKey[c] && c != version {
			qc := d.quote(c)
			set = append(set, qc+" = IF("+guard+", VALUES("+qc+"), "+qc+")")
		}
	}
	// Assignments run left to right and see earlier ones: the version goes last.
	set = append(set, v+" = IF("+guard+", VALUES("+v+"), "+v+")")
	return "INSERT INTO " + d.quote(table) + " (" + joinQuoted(d, cols) + ") VALUES (" + params(d, 0, len(cols)) + ")" +
		" ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
}

func (d mysqlDialect) delete(table string, key []string, version string, guarded bool) string {
	q := "DELETE FROM " + d.quote(table) + " WHERE " + keyWhere(d, key)
	if guarded {
		q += " AND (" + d.quote(version) + " IS NULL OR " + d.quote(version) + " < ?)"
	}
	return q
}

// ---- Phoenix ----

// phoenixDialect writes Phoenix SQL. Identifiers are always double-quoted (so
// reserved words and '$' work); Phoenix folds unquoted names to upper case, so
// unless caseSensitive they are upper-cased first and a table created with
// unquoted names matches. Values are always bound as typed Avatica parameters,
// never spliced into the SQL: numbers can't end up quoted nor strings unquoted.
type phoenixDialect struct {
	caseSensitive bool
	truncate      bool
}

func (d phoenixDialect) quote(ident string) string {
	return quoteParts(ident, func(s string) string {
		if !d.caseSensitive {
			s = strings.ToUpper(s)
		}
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	})
}

func (phoenixDialect) param(int) string { return "?" }

func (d phoenixDialect) upsert(table string, cols, _ []string, _ string) string {
	return "UPSERT INTO " + d.quote(table) + " (" + joinQuoted(d, cols) + ") VALUES (" + params(d, 0, len(cols)) + ")"
}

func (d phoenixDialect) delete(table string, key []string, version string, guarded bool) string {
	q := "DELETE FROM " + d.quote(table) + " WHERE " + keyWhere(d, key)
	if guarded {
		q += " AND (" + d.quote(version) + " IS NULL OR " + d.quote(version) + " < ?)"
	}
	return q
}
