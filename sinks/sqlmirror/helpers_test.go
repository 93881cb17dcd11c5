package sqlmirror_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newMirror(t testing.TB, cfg sqlmirror.Config) *sqlmirror.Handler {
	t.Helper()
	h, err := sqlmirror.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func mustExec(t testing.TB, db *sql.DB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := db.ExecContext(ctxT(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// readRows reads query's rows rendered as text (NULL as "NULL"; columns listed
// in bin as 0x-hex), keyed by keyOf.
func readRows(ctx context.Context, db *sql.DB, query string, keyOf func(map[string]string) string, bin ...string) (map[string]map[string]string, error) {
	isBin := map[string]bool{}
	for _, b := range bin {
		isBin[b] = true
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]string{}
		for i, c := range cols {
			switch {
			case vals[i] == nil:
				row[c] = "NULL"
			case isBin[c]:
				row[c] = fmt.Sprintf("0x%x", []byte(vals[i]))
			default:
				row[c] = string(vals[i])
			}
		}
		out[keyOf(row)] = row
	}
	return out, rows.Err()
}

func openDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
