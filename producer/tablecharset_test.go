package producer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestTableMapCollations reads MariaDB's table maps (binlog_row_metadata=FULL)
// of a table whose text columns mostly share one collation, which MariaDB logs
// as DEFAULT_CHARSET with exceptions, and of one with many, logged as
// COLUMN_CHARSET, with GEOMETRY, ENUM and SET columns among them; the collation
// kanal derives for every column is the one information_schema.COLUMNS names.
func TestTableMapCollations(t *testing.T) {
	m := testenv.MariaDB(t)
	m.Exec(t, "CREATE DATABASE tc")
	m.Exec(t, `CREATE TABLE tc.mostly (id INT PRIMARY KEY, a VARCHAR(10), g GEOMETRY, b TEXT, c CHAR(3) CHARACTER SET latin1,
		e ENUM('x','y'), d VARCHAR(5), f TINYTEXT, h MEDIUMTEXT, i CHAR(2)) CHARACTER SET utf8mb4`)
	m.Exec(t, `CREATE TABLE tc.mixed (id INT PRIMARY KEY, a VARCHAR(10) CHARACTER SET latin1, g GEOMETRY,
		b TEXT CHARACTER SET gbk, c CHAR(3) CHARACTER SET ucs2, e ENUM('x','y') CHARACTER SET big5,
		s SET('p','q') CHARACTER SET sjis, d VARCHAR(5) CHARACTER SET utf16le, bn BLOB) CHARACTER SET utf8mb4`)
	m.Exec(t, "INSERT INTO tc.mostly (id) VALUES (1)")
	m.Exec(t, "INSERT INTO tc.mixed (id) VALUES (1)")

	want := map[string]map[string]uint64{}
	rows, err := m.DB().Query(`SELECT c.TABLE_NAME, c.COLUMN_NAME, COALESCE(l.ID, 63) FROM information_schema.COLUMNS c
		LEFT JOIN information_schema.COLLATIONS l ON l.COLLATION_NAME = c.COLLATION_NAME
		WHERE c.TABLE_SCHEMA = 'tc' AND (c.COLLATION_NAME IS NOT NULL OR c.DATA_TYPE IN ('varbinary', 'blob'))`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tbl, col string
		var id uint64
		if err := rows.Scan(&tbl, &col, &id); err != nil {
			t.Fatal(err)
		}
		if want[tbl] == nil {
			want[tbl] = map[string]uint64{}
		}
		want[tbl][col] = id
	}
	rows.Close()

	var first string
	if err := m.DB().QueryRow("SHOW BINARY LOGS").Scan(&first, new(any)); err != nil {
		t.Fatal(err)
	}
	st := startSync(t, m, 7201, first, func(*replication.BinlogSyncerConfig) {})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	forms := map[string]string{}
	for len(forms) < 2 {
		ev, err := st.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tm, ok := ev.Event.(*replication.TableMapEvent)
		if !ok || string(tm.Schema) != "tc" {
			continue
		}
		table := string(tm.Table)
		switch {
		case len(tm.DefaultCharset) > 0 && len(tm.ColumnCharset) == 0:
			forms[table] = "default"
		case len(tm.ColumnCharset) > 0 && len(tm.DefaultCharset) == 0:
			forms[table] = "column"
		default:
			t.Fatalf("%s: default %v, column %v", table, tm.DefaultCharset, tm.ColumnCharset)
		}
		got := mariadbText().columnCollations(tm)
		for i, name := range tm.ColumnName {
			w, has := want[table][string(name)]
			if has && got[i] != w || !has && got[i] != 0 && !strings.HasPrefix(string(name), "g") {
				t.Errorf("%s.%s: collation %d, information_schema says %d", table, name, got[i], w)
			}
		}
	}
	if forms["mostly"] != "default" || forms["mixed"] != "column" {
		t.Errorf("charset metadata forms: %v, want mostly=default and mixed=column", forms)
	}
}
