package sqlmirror_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	avatica "github.com/apache/calcite-avatica-go/v5"

	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// TestRealPhoenix mirrors into a real Phoenix through its Query Server when
// KANAL_PHOENIX_URL names one (for example http://localhost:8765); see
// docs/sqlmirror.md. It creates and drops the table KANAL_MIRROR_TEST and the
// offsets table KANAL_MIRROR_TEST_OFFSETS.
func TestRealPhoenix(t *testing.T) {
	url := os.Getenv("KANAL_PHOENIX_URL")
	if url == "" {
		t.Skip("KANAL_PHOENIX_URL is not set: no Phoenix Query Server to test against (docs/sqlmirror.md)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := sql.OpenDB(avatica.NewConnector(url))
	defer db.Close()
	for _, q := range []string{
		"DROP TABLE IF EXISTS KANAL_MIRROR_TEST",
		"DROP TABLE IF EXISTS KANAL_MIRROR_TEST_OFFSETS",
		`CREATE TABLE KANAL_MIRROR_TEST (ID BIGINT NOT NULL PRIMARY KEY, NAME VARCHAR, AMOUNT DECIMAL(12,2),
			RATIO FLOAT, AT TIMESTAMP, DAY DATE, DATA VARBINARY, FLAGS INTEGER, BIG UNSIGNED_LONG, NOTE VARCHAR,
			"_KANAL_VERSION" BIGINT)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP TABLE IF EXISTS KANAL_MIRROR_TEST", "DROP TABLE IF EXISTS KANAL_MIRROR_TEST_OFFSETS"} {
			_, _ = db.ExecContext(context.Background(), q)
		}
	})
	cfg := sqlmirror.DefaultConfig()
	cfg.Name = "phoenix-real"
	cfg.Dialect = sqlmirror.Phoenix
	cfg.DSN = url
	cfg.OffsetsTable = "KANAL_MIRROR_TEST_OFFSETS"
	cfg.Tables = []sqlmirror.TableConfig{{Source: "wl.items", Target: "KANAL_MIRROR_TEST"}}
	h := newMirror(t, cfg)
	b := phoenixBatch(0,
		phoenixChange(schemas.OpCreate, 10, 1, "O'Brien", 1<<63-1),
		phoenixChange(schemas.OpUpdate, 11, 1, "Ann", 7),
		phoenixChange(schemas.OpCreate, 12, 2, "", 0),
		phoenixChange(schemas.OpDelete, 13, 2, "", 0),
		phoenixChange(schemas.OpCreate, 14, 3, `a "quoted", 'word' — ü`, 1))
	for i := 0; i < 2; i++ { // the second time is a replay: a no-op
		if err := h.Handle(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT ID, NAME, AMOUNT, RATIO, AT, DAY, DATA, FLAGS, BIG, NOTE, "_KANAL_VERSION" FROM KANAL_MIRROR_TEST ORDER BY ID`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, flags, big, ver int64
		var name, amount string
		var note sql.NullString
		var ratio float64
		var at, day time.Time
		var data []byte
		if err := rows.Scan(&id, &name, &amount, &ratio, &at, &day, &data, &flags, &big, &note, &ver); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %q %s %v %s %s %x %d %d %v %d", id, name, amount, ratio,
			at.UTC().Format("2006-01-02 15:04:05.000"), day.UTC().Format(time.DateOnly), data, flags, big, note.Valid, ver))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`1 "Ann" 12.50 1.5 2024-03-01 10:00:00.123 2024-03-01 cafe 5 7 false 11`,
		`3 "a \"quoted\", 'word' — ü" 12.50 1.5 2024-03-01 10:00:00.123 2024-03-01 cafe 5 1 false 14`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Phoenix holds\n  %v\nwant\n  %v", got, want)
	}
	offs, err := h.LoadOffsets(ctx, b.Group, map[string][]int32{b.Topic: {0}})
	if err != nil {
		t.Fatal(err)
	}
	if offs[b.Topic][0] != b.NextOffset() {
		t.Errorf("stored offset %v, want %d", offs, b.NextOffset())
	}
}
