package sqloffsets_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kanal-cdc/kanal/internal/sqloffsets"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// target is a real database of one dialect.
type target struct {
	name string
	d    sqloffsets.Dialect
	db   *sql.DB
	// legacy is the CREATE TABLE of sqlmirror's offsets table before this
	// design, as releases up to 2026-12 created it (%s: the quoted name).
	legacy func(table string) string
}

func targets(t *testing.T) []target {
	pg := testenv.Postgres(t)
	pgdb := stdlib.OpenDB(*mustPGConfig(t, pg.DSN))
	t.Cleanup(func() { pgdb.Close() })
	m := testenv.MariaDB(t)
	m.Exec(t, "CREATE DATABASE IF NOT EXISTS sinks")
	mc, err := mysql.ParseDSN(m.DSN("sinks"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	mydb := sql.OpenDB(conn)
	t.Cleanup(func() { mydb.Close() })
	return []target{
		{"postgres", sqloffsets.Postgres, pgdb, func(table string) string {
			return `CREATE TABLE "` + table + `" (grp text NOT NULL, topic text NOT NULL, part integer NOT NULL, next_offset bigint NOT NULL, PRIMARY KEY (grp, topic, part))`
		}},
		{"mariadb", sqloffsets.MySQL, mydb, func(table string) string {
			return "CREATE TABLE `" + table + "` (grp VARCHAR(200) CHARACTER SET ascii NOT NULL, topic VARCHAR(249) CHARACTER SET ascii NOT NULL, part INT NOT NULL," +
				" next_offset BIGINT NOT NULL, PRIMARY KEY (grp, topic, part))"
		}},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestOffsetsTable(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Run("Protocol", func(t *testing.T) { protocol(t, tg) })
			t.Run("MigratesLegacyTable", func(t *testing.T) { migratesLegacy(t, tg) })
		})
	}
}

// lock runs one batch's share of the protocol: lock the partition's row and,
// unless a reset is pending, store next.
func lock(t *testing.T, tb *sqloffsets.Table, db *sql.DB, group, topic string, part int32, next int64) sqloffsets.State {
	t.Helper()
	ctx := ctxT(t)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	st, err := tb.Lock(ctx, tx, group, topic, part)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ResetPending && next >= 0 {
		if err := tb.StoreNext(ctx, tx, group, topic, part, next); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return st
}

func load(t *testing.T, tb *sqloffsets.Table, group string) map[string]map[int32]int64 {
	t.Helper()
	got, err := tb.Load(ctxT(t), group, map[string][]int32{"k.a": {0, 1, 2}, "k.b": {0}})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func protocol(t *testing.T, tg target) {
	tb := sqloffsets.New(tg.d, tg.db, "proto_offsets")
	for range 2 {
		if err := tb.Setup(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if st := lock(t, tb, tg.db, "g", "k.a", 0, -1); st.Next != -1 || st.ResetPending {
		t.Fatalf("a new partition's state is %+v", st)
	}
	if got := load(t, tb, "g"); len(got) != 0 {
		t.Fatalf("a claimed partition without an offset loads as %v", got)
	}
	lock(t, tb, tg.db, "g", "k.a", 0, 10)
	lock(t, tb, tg.db, "g", "k.a", 1, 20)
	lock(t, tb, tg.db, "other", "k.a", 0, 99)
	if st := lock(t, tb, tg.db, "g", "k.a", 0, 15); st.Next != 10 {
		t.Fatalf("stored 10, locked %+v", st)
	}
	want := map[string]map[int32]int64{"k.a": {0: 15, 1: 20}}
	if d := testdiff.Diff(want, load(t, tb, "g")); d != "" {
		t.Fatalf("loaded offsets (-want +got):\n%s", d)
	}
	// A reset stays in place while a member keeps applying batches, until the
	// offsets are loaded again.
	if err := tb.Reset(ctxT(t), "g", map[string]map[int32]int64{"k.a": {0: 3}, "k.b": {0: 0}}); err != nil {
		t.Fatal(err)
	}
	if st := lock(t, tb, tg.db, "g", "k.a", 0, 16); st.Next != 3 || !st.ResetPending {
		t.Fatalf("after a reset the state is %+v", st)
	}
	want = map[string]map[int32]int64{"k.a": {0: 3, 1: 20}, "k.b": {0: 0}}
	if d := testdiff.Diff(want, load(t, tb, "g")); d != "" {
		t.Fatalf("offsets after the reset (-want +got):\n%s", d)
	}
	if st := lock(t, tb, tg.db, "g", "k.a", 0, 4); st.Next != 3 || st.ResetPending {
		t.Fatalf("loading did not end the pending reset: %+v", st)
	}
	if d := testdiff.Diff(map[string]map[int32]int64{"k.a": {0: 99}}, load(t, tb, "other")); d != "" {
		t.Fatalf("another group's offsets (-want +got):\n%s", d)
	}
}

// migratesLegacy: a table sqlmirror created before this design keeps its
// offsets: Setup (run by several processes at once) migrates it, and the
// protocol works on it.
func migratesLegacy(t *testing.T, tg target) {
	const name = "legacy_offsets"
	ctx := ctxT(t)
	if _, err := tg.db.ExecContext(ctx, tg.legacy(name)); err != nil {
		t.Fatal(err)
	}
	ph := "$1, $2, $3, $4"
	if tg.d == sqloffsets.MySQL {
		ph = "?, ?, ?, ?"
	}
	for _, r := range []struct {
		grp, topic string
		part       int32
		next       int64
	}{{"g", "k.a", 0, 41}, {"g", "k.a", 2, 7}, {"g", "k.b", 0, 5}, {"h", "k.a", 0, 1}} {
		q := "INSERT INTO " + quote(tg.d, name) + " (grp, topic, part, next_offset) VALUES (" + ph + ")"
		if _, err := tg.db.ExecContext(ctx, q, r.grp, r.topic, r.part, r.next); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sqloffsets.New(tg.d, tg.db, name).Setup(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	tb := sqloffsets.New(tg.d, tg.db, name)
	want := map[string]map[int32]int64{"k.a": {0: 41, 2: 7}, "k.b": {0: 5}}
	if d := testdiff.Diff(want, load(t, tb, "g")); d != "" {
		t.Fatalf("offsets of the migrated table (-want +got):\n%s", d)
	}
	lock(t, tb, tg.db, "g", "k.a", 0, 42)
	if err := tb.Reset(ctx, "h", map[string]map[int32]int64{"k.a": {0: 0}}); err != nil {
		t.Fatal(err)
	}
	if st := lock(t, tb, tg.db, "h", "k.a", 0, 2); st.Next != 0 || !st.ResetPending {
		t.Fatalf("a reset on the migrated table: %+v", st)
	}
	want["k.a"][0] = 42
	if d := testdiff.Diff(want, load(t, tb, "g")); d != "" {
		t.Fatalf("offsets after a batch on the migrated table (-want +got):\n%s", d)
	}
}

func quote(d sqloffsets.Dialect, name string) string {
	if d == sqloffsets.MySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

func mustPGConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
