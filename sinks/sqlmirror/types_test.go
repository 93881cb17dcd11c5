package sqlmirror_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// allTypes is a source table with a column of every MySQL type family.
var allTypes = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "i8", Type: "tinyint"},
	{Name: "u32", Type: "int unsigned"},
	{Name: "u64", Type: "bigint unsigned"},
	{Name: "amount", Type: "decimal(30,10)"},
	{Name: "f", Type: "float"},
	{Name: "d", Type: "double"},
	{Name: "flags", Type: "bit(10)"},
	{Name: "yr", Type: "year"},
	{Name: "day", Type: "date"},
	{Name: "at", Type: "datetime(6)"},
	{Name: "ts", Type: "timestamp(6)"},
	{Name: "tod", Type: "time"},
	{Name: "name", Type: "varchar"},
	{Name: "doc", Type: "json"},
	{Name: "state", Type: "enum"},
	{Name: "tags", Type: "set"},
	{Name: "data", Type: "blob"},
	{Name: "gone", Type: "varchar"},
}

func allTypesRow() map[string]any {
	return map[string]any{
		"id": int64(1), "i8": int64(-128), "u32": uint64(4294967295), "u64": uint64(18446744073709551615),
		"amount": schemas.Decimal("-12345678901234567890.0123456789"), "f": float32(1.1), "d": 2.5e-300,
		"flags": uint64(0x2a5), "yr": int64(2024), "day": "2024-02-29", "at": "2024-02-29 23:59:59.123456",
		"ts": "2024-02-29T12:00:00.000001Z", "tod": "-838:59:59", "name": "O'Brien \"quoted\", ü 🎉",
		"doc": `{"a": [1, 2.5, "x"]}`, "state": "shipped", "tags": "a,b", "data": []byte{0, 1, 0xfe},
		"gone": "not copied",
	}
}

func typesBatch(seq uint64, row map[string]any) consumer.Batch {
	c := &schemas.Change{Op: schemas.OpCreate, Seq: seq, Columns: allTypes, After: row,
		Source: schemas.Source{Name: "src", DB: "src", Table: "all_types"}}
	return consumer.Batch{Group: "g", Topic: "kanal.src.all_types", Records: []consumer.Record{
		{Topic: "kanal.src.all_types", Offset: int64(seq), Key: c.Key(), Table: "src.all_types", Op: c.Op, Seq: seq, Change: c}}}
}

func checkRow(t *testing.T, got map[string]map[string]string, want map[string]string) {
	t.Helper()
	row, ok := got["1"]
	if !ok {
		t.Fatalf("row 1 missing: %v", got)
	}
	for c, w := range want {
		if row[c] != w {
			t.Errorf("column %s: got %q, want %q", c, row[c], w)
		}
	}
}

// TestTypesPostgres writes every MySQL type family to the PostgreSQL types
// docs/sqlmirror.md maps them to and reads them back; a value the column
// cannot hold is a permanent error naming table and key, and nothing of its
// batch is written.
func TestTypesPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	db := cdctest.OpenDB(t, "pgx", pg.DSN)
	mustExec(t, db, `CREATE TABLE all_types (id bigint PRIMARY KEY, i8 smallint, u32 bigint, u64 numeric(20,0),
		amount numeric(30,10), f real, d double precision, flags bigint, yr smallint, day date, at timestamp(6),
		ts timestamptz(6), tod interval, name text, doc jsonb, state text, tags text, data bytea,
		_kanal_version bigint NOT NULL)`,
		`CREATE TABLE narrow (id bigint PRIMARY KEY, i8 smallint, u32 bigint, u64 bigint, amount numeric(30,10), f real,
		d double precision, flags bigint, yr smallint, day date, at timestamp(6), ts timestamptz(6), tod interval,
		name text, doc jsonb, state text, tags text, data bytea, _kanal_version bigint NOT NULL)`)
	for _, target := range []string{"all_types", "narrow"} {
		cfg := sqlmirror.DefaultConfig()
		cfg.Name = "types"
		cfg.Dialect = sqlmirror.Postgres
		cfg.DSN = pg.DSN
		cfg.OffsetsTable = target + "_offsets"
		cfg.Tables = []sqlmirror.TableConfig{{Source: "src.all_types", Target: target, Exclude: []string{"gone"}}}
		h := newMirror(t, cfg)
		err := h.Handle(ctxT(t), typesBatch(1, allTypesRow()))
		if target == "narrow" {
			if !consumer.IsPermanent(err) || !strings.Contains(err.Error(), "src.all_types") || !strings.Contains(err.Error(), "src.all_types:1") {
				t.Fatalf("18446744073709551615 into a bigint: %v, want a permanent error naming table and key", err)
			}
			var n int
			if err := db.QueryRow("SELECT count(*) FROM narrow").Scan(&n); err != nil || n != 0 {
				t.Fatalf("the refused batch wrote %d rows (%v)", n, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := cdctest.ReadRows(ctxT(t), db, `SELECT id::text AS id, i8::text AS i8, u32::text AS u32, u64::text AS u64,
		amount::text AS amount, f::text AS f, d::text AS d, flags::text AS flags, yr::text AS yr, day::text AS day,
		to_char(at, 'YYYY-MM-DD HH24:MI:SS.US') AS at, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts,
		tod::text AS tod, name, doc::text AS doc, state, tags, data FROM all_types`,
		func(r map[string]string) string { return r["id"] }, "data")
	if err != nil {
		t.Fatal(err)
	}
	checkRow(t, got, map[string]string{"i8": "-128", "u32": "4294967295", "u64": "18446744073709551615",
		"amount": "-12345678901234567890.0123456789", "f": "1.1", "d": "2.5e-300", "flags": "677", "yr": "2024",
		"day": "2024-02-29", "at": "2024-02-29 23:59:59.123456", "ts": "2024-02-29 12:00:00.000001", "tod": "-838:59:59",
		"name": "O'Brien \"quoted\", ü 🎉", "doc": `{"a": [1, 2.5, "x"]}`, "state": "shipped", "tags": "a,b", "data": "0x0001fe"})

	// Values PostgreSQL has no place for are refused before they reach it.
	cfg := sqlmirror.DefaultConfig()
	cfg.Name = "types"
	cfg.Dialect = sqlmirror.Postgres
	cfg.DSN = pg.DSN
	cfg.OffsetsTable = "zero_offsets"
	cfg.Tables = []sqlmirror.TableConfig{{Source: "src.all_types", Exclude: []string{"gone"}}}
	h := newMirror(t, cfg)
	row := allTypesRow()
	row["day"] = "0000-00-00"
	err = h.Handle(ctxT(t), typesBatch(2, row))
	var ve *sqlmirror.ValueError
	if !consumer.IsPermanent(err) || !errors.As(err, &ve) || ve.Table != "src.all_types" || ve.Column != "day" || ve.Value != `"0000-00-00"` {
		t.Fatalf("a zero date: %v, want a permanent ValueError naming src.all_types, day and the value", err)
	}
}

// TestTypesMariaDB writes every type family to a MariaDB table of the source's
// own types and reads them back as MariaDB prints them.
func TestTypesMariaDB(t *testing.T) {
	m := testenv.MariaDB(t)
	mustExec(t, m.DB(), "CREATE DATABASE dst", `CREATE TABLE dst.all_types (id BIGINT PRIMARY KEY, i8 TINYINT,
		u32 INT UNSIGNED, u64 BIGINT UNSIGNED, amount DECIMAL(30,10), f FLOAT, d DOUBLE, flags BIT(10), yr YEAR,
		day DATE, at DATETIME(6), ts TIMESTAMP(6) NULL, tod TIME, name VARCHAR(64) CHARACTER SET utf8mb4, doc JSON,
		state ENUM('new','shipped'), tags SET('a','b','c'), data BLOB, _kanal_version BIGINT NOT NULL)`)
	cfg := sqlmirror.DefaultConfig()
	cfg.Name = "types"
	cfg.Dialect = sqlmirror.MySQL
	cfg.DSN = m.DSN("dst")
	cfg.Tables = []sqlmirror.TableConfig{{Source: "src.all_types", Exclude: []string{"gone"}}}
	h := newMirror(t, cfg)
	if err := h.Handle(ctxT(t), typesBatch(1, allTypesRow())); err != nil {
		t.Fatal(err)
	}
	got, err := cdctest.ReadRows(ctxT(t), m.DB(), `SELECT id, i8, u32, u64, amount, f, d, flags+0 AS flags, yr, day, at,
		CONVERT_TZ(ts, @@session.time_zone, '+00:00') AS ts, tod, name, doc, state, tags, data FROM dst.all_types`,
		func(r map[string]string) string { return r["id"] }, "data")
	if err != nil {
		t.Fatal(err)
	}
	checkRow(t, got, map[string]string{"i8": "-128", "u32": "4294967295", "u64": "18446744073709551615",
		"amount": "-12345678901234567890.0123456789", "f": "1.1", "d": "2.5e-300", "flags": "677", "yr": "2024",
		"day": "2024-02-29", "at": "2024-02-29 23:59:59.123456", "ts": "2024-02-29 12:00:00.000001", "tod": "-838:59:59",
		"name": "O'Brien \"quoted\", ü 🎉", "doc": `{"a": [1, 2.5, "x"]}`, "state": "shipped", "tags": "a,b", "data": "0x0001fe"})
}
