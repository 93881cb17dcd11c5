package sqlmirror_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// tombstoneOnly is what a compacted topic can hold for a deleted row: its
// tombstone, the delete itself compacted away. It goes to a mirror that has not
// seen a change of the table since it started.
func tombstoneOnly(seq uint64, keys ...string) consumer.Batch {
	b := consumer.Batch{Group: "g", Topic: "kanal.src.pairs"}
	for i, k := range keys {
		b.Records = append(b.Records, consumer.Record{Topic: b.Topic, Offset: int64(i), Key: k, Table: "src.pairs",
			Op: schemas.OpDelete, Seq: seq, Tombstone: true})
	}
	return b
}

func pairsKey(a int64, b string, bin []byte) string {
	return string(schemas.AppendKey(nil, "src", "pairs", []any{a, b, bin}))
}

func checkTombstones(t *testing.T, h *sqlmirror.Handler, db *sql.DB, table string) {
	t.Helper()
	// Version 5: a tombstone of seq 3 is older and leaves the row; seq 0
	// (unknown, after compaction) and seq 9 delete.
	b := tombstoneOnly(3, pairsKey(1, "a,b", []byte{0xca, 0xfe}))
	if err := h.Handle(ctxT(t), b); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 3 {
		t.Fatalf("a tombstone older than the row deleted it: %d rows (%v), want 3", n, err)
	}
	b = tombstoneOnly(0, pairsKey(1, "a,b", []byte{0xca, 0xfe}), pairsKey(2, `back\slash`, []byte{}))
	for i := range b.Records {
		b.Records[i].Offset += 10
	}
	if err := h.Handle(ctxT(t), b); err != nil {
		t.Fatal(err)
	}
	got, err := cdctest.ReadRows(context.Background(), db, "SELECT a, b FROM "+table, func(r map[string]string) string { return r["a"] + "/" + r["b"] })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["3/keep"] == nil {
		t.Fatalf("after tombstones of (1, 'a,b') and (2, 'back\\slash'): %v, want only 3/keep", got)
	}
}

// TestTombstoneOfUnseenTable: a mirror that restarted and gets a tombstone
// whose delete was compacted away reads the target's primary key from its
// catalog and deletes the row (composite key with an escaped comma, a
// backslash and bytes).
func TestTombstoneOfUnseenTable(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.Postgres(t)
		db := cdctest.OpenDB(t, "pgx", pg.DSN)
		mustExec(t, db, `CREATE TABLE pairs (a bigint, b text, c bytea, _kanal_version bigint NOT NULL, PRIMARY KEY (a, b, c))`,
			`INSERT INTO pairs VALUES (1, 'a,b', '\xcafe', 5), (2, 'back\slash', '', 5), (3, 'keep', '\x00', 5)`)
		cfg := sqlmirror.DefaultConfig()
		cfg.Name, cfg.Dialect, cfg.DSN = "tomb", sqlmirror.Postgres, pg.DSN
		checkTombstones(t, newMirror(t, cfg), db, "pairs")
	})
	t.Run("mariadb", func(t *testing.T) {
		m := testenv.MariaDB(t)
		mustExec(t, m.DB(), "CREATE DATABASE dst",
			`CREATE TABLE dst.pairs (a BIGINT, b VARCHAR(20), c VARBINARY(8), _kanal_version BIGINT NOT NULL, PRIMARY KEY (a, b, c))`,
			`INSERT INTO dst.pairs VALUES (1, 'a,b', x'cafe', 5), (2, 'back\\slash', '', 5), (3, 'keep', x'00', 5)`)
		cfg := sqlmirror.DefaultConfig()
		cfg.Name, cfg.Dialect, cfg.DSN = "tomb", sqlmirror.MySQL, m.DSN("dst")
		checkTombstones(t, newMirror(t, cfg), m.DB(), "dst.pairs")
	})
}
