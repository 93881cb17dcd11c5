package aggregators

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/kanal-cdc/kanal/aggregators/filter"
	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/schemas"
)

// checkDSN parses a DSN without connecting. Errors never quote it.
func checkDSN(driver, dsn string) error {
	switch driver {
	case DriverPostgres:
		if _, err := pgx.ParseConfig(dsn); err != nil {
			return fmt.Errorf("not a valid Postgres connection string")
		}
	case DriverMySQL:
		if _, err := mysql.ParseDSN(dsn); err != nil {
			return fmt.Errorf("not a valid go-sql-driver DSN (user:password@tcp(host:port)/db)")
		}
	}
	return nil
}

// ddl is one statement that creates a table or index, and what it creates
// (for errors).
type ddl struct{ what, sql string }

var precRE = regexp.MustCompile(`\((\d+)(?:\s*,\s*(\d+))?\)`)

// precision returns the (p, s) of "decimal(p,s)" or "datetime(n)" ("", "" when absent).
func precision(typ string) (p, s string) {
	m := precRE.FindStringSubmatch(typ)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// quoteTable quotes "name" or "schema.name" with q.
func quoteTable(name string, q byte) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = string(q) + p + string(q)
	}
	return strings.Join(parts, ".")
}

// isTimeType reports whether a target SQL type holds dates or times.
func isTimeType(typ string) bool {
	t := strings.ToLower(typ)
	return strings.HasPrefix(t, "date") || strings.HasPrefix(t, "timestamp") || strings.HasPrefix(t, "time")
}

// zeroDate reports whether v is a MySQL zero date ("0000-00-00", "2024-00-10").
func zeroDate(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	_, zero, err := filter.ParseTime(s)
	return err == nil && zero
}

// pgText renders a group value as Postgres input text for a column of type typ;
// nil is NULL.
func pgText(v any, typ string) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case []byte:
		s = `\x` + hex.EncodeToString(x)
	case bool:
		s = fmt.Sprint(x)
	default:
		if isTimeType(typ) && zeroDate(v) {
			return nil
		}
		s = filter.Text(v)
	}
	return &s
}

// mysqlValue converts a group value to a go-sql-driver parameter for a column
// of type typ.
func mysqlValue(v any, typ string) any {
	switch x := v.(type) {
	case nil, int64, uint64, []byte, float64, float32, int, bool:
		return x
	case schemas.Decimal:
		return string(x)
	case decimal.Decimal:
		return x.String()
	case string:
		if isTimeType(typ) {
			if zeroDate(x) {
				return nil
			}
			if strings.Contains(x, "T") && strings.HasSuffix(x, "Z") {
				return strings.TrimSuffix(strings.Replace(x, "T", " ", 1), "Z")
			}
		}
		return x
	}
	return filter.Text(v)
}

// columnTypes returns the types of s's group and sum columns as the target
// reports them (byName: the summary table's column name, as fold renders it,
// → its type), so that casts use the real ones when the table existed with
// other types. A column the table lacks is an error.
func (s *summaryRT) columnTypes(byName map[string]string, fold func(string) string) (gt, st []string, err error) {
	gt = make([]string, len(s.GroupBy))
	st = make([]string, len(s.Sums))
	need := []string{"kanal_group", s.countColumn()}
	for i, g := range s.GroupBy {
		gt[i] = byName[fold(g.Column)]
		need = append(need, g.Column)
	}
	for i, m := range s.Sums {
		st[i] = byName[fold(m.Column)]
		need = append(need, m.Column)
	}
	for _, c := range need {
		if byName[fold(c)] == "" {
			return nil, nil, fmt.Errorf("summary table %s exists without column %q: drop it or fix its columns (see docs/aggregators.md)", s.Table, c)
		}
	}
	return gt, st, nil
}

// parseSums sets the row's contribution to s's sums from their text as the
// state table holds it (nil: NULL); a row that contributes nothing has none.
func (st *rowState) parseSums(s *summaryRT, sums []*string) error {
	if st.gkey == nil {
		return nil
	}
	st.sums = make([]decimal.Decimal, len(sums))
	for i, v := range sums {
		if v == nil {
			continue
		}
		d, err := decimal.Parse(*v)
		if err != nil {
			return fmt.Errorf("key %s: column %q: %w", st.key, s.Sums[i].Column, err)
		}
		st.sums[i] = d
	}
	return nil
}
