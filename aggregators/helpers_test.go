package aggregators

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to read Postgres summaries in tests

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// targetEnv is a real target database for tests.
type targetEnv struct {
	name   string
	driver string
	dsn    string
	db     *sql.DB
}

// asText renders a column as text in the target's SQL.
func (te *targetEnv) asText(col string) string {
	if te.driver == DriverPostgres {
		return `"` + col + `"::text`
	}
	return "CAST(`" + col + "` AS CHAR)"
}

func (te *targetEnv) config(name string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.Target.Driver = te.driver
	cfg.Target.DSN = te.dsn
	cfg.Target.MaxConns = 4
	return cfg
}

func postgresTarget(t *testing.T) *targetEnv {
	pg := testenv.Postgres(t)
	return &targetEnv{name: "postgres", driver: DriverPostgres, dsn: pg.DSN, db: cdctest.OpenDB(t, "pgx", pg.DSN)}
}

// mysqlTarget uses database "summaries" of a MariaDB server.
func mariadbTarget(t *testing.T, m *testenv.MariaDBServer) *targetEnv {
	m.Exec(t, "CREATE DATABASE IF NOT EXISTS summaries")
	return &targetEnv{name: "mariadb", driver: DriverMySQL, dsn: m.DSN("summaries"), db: cdctest.OpenDB(t, "mysql", m.DSN("summaries"))}
}

// readSummary returns group values joined by "|" → "count|sum…", everything as
// the target renders it as text (NULL as "NULL").
func readSummary(t testing.TB, te *targetEnv, s *Summary) map[string]string {
	t.Helper()
	var cols []string
	for _, g := range s.GroupBy {
		cols = append(cols, te.asText(g.Column))
	}
	cols = append(cols, te.asText(s.countColumn()))
	for _, m := range s.Sums {
		cols = append(cols, te.asText(m.Column))
	}
	q := "`"
	if te.driver == DriverPostgres {
		q = `"`
	}
	table := q + strings.ReplaceAll(s.Table, ".", q+"."+q) + q
	return queryText(t, te.db, "SELECT "+strings.Join(cols, ", ")+" FROM "+table, len(s.GroupBy))
}

// queryText runs q and returns the first ngroup columns joined by "|" → the
// rest joined by "|".
func queryText(t testing.TB, db *sql.DB, q string, ngroup int) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		strs := make([]string, len(cols))
		for i, v := range vals {
			strs[i] = "NULL"
			if v.Valid {
				strs[i] = v.String
			}
		}
		k := strings.Join(strs[:ngroup], "|")
		if _, dup := out[k]; dup {
			t.Fatalf("%s: group %q twice", q, k)
		}
		out[k] = strings.Join(strs[ngroup:], "|")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
