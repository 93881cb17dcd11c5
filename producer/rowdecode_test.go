package producer

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// TestRowDecoderMatchesGoMySQL reads the same binlog twice, once with go-mysql's row
// decoding followed by convert (the reference) and once with rowDecoder, and requires
// identical values for every row image, edge values included. Events rowDecoder
// leaves to go-mysql must still come out right, and most must take its own path.
func TestRowDecoderMatchesGoMySQL(t *testing.T) {
	m := testenv.MariaDB(t)
	m.Exec(t, "CREATE DATABASE rd")
	m.Exec(t, `CREATE TABLE rd.t (
		id BIGINT NOT NULL PRIMARY KEY,
		ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
		mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, biu BIGINT UNSIGNED,
		d65 DECIMAL(65,30), d2 DECIMAL(10,2), d0 DECIMAL(10,0), d55 DECIMAL(5,5), d189 DECIMAL(18,9), d20 DECIMAL(20,4),
		f FLOAT, db DOUBLE,
		dt DATE, dtm DATETIME, dtm1 DATETIME(1), dtm3 DATETIME(3), dtm6 DATETIME(6),
		ts TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, ts6 TIMESTAMP(6) NULL, y YEAR,
		c CHAR(10), cl CHAR(100), vc VARCHAR(100), vcl VARCHAR(1000), tx TEXT, ttx TINYTEXT, mtx MEDIUMTEXT, ltx LONGTEXT,
		bn BINARY(4), vb VARBINARY(20), bl BLOB, lbl LONGBLOB,
		e ENUM('small','medium','large'), e2 ENUM('a','b') NOT NULL
	) CHARACTER SET utf8mb4`)
	// A table the fast path must leave alone (BIT, SET, TIME, JSON).
	m.Exec(t, `CREATE TABLE rd.other (id INT PRIMARY KEY, bt BIT(10), st SET('x','y'), tm TIME(3), j JSON, d DECIMAL(10,2))`)

	cols := "id,ti,tiu,si,siu,mi,miu,i,iu,biu,d65,d2,d0,d55,d189,d20,f,db,dt,dtm,dtm1,dtm3,dtm6,ts,ts2,ts6,y,c,cl,vc,vcl,tx,ttx,mtx,ltx,bn,vb,bl,lbl,e,e2"
	rows := []string{
		"1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 18446744073709551615, " +
			"'12345678901234567890123456789012345.123456789012345678901234567890', 99999999.99, 9999999999, 0.99999, 123456789.123456789, -1234567890123456.1234, " +
			"1.5, 2.718281828459045, '9999-12-31', '9999-12-31 23:59:59', '2024-02-29 12:34:56.7', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789012', " +
			"'2038-01-19 03:14:07', '2001-02-03 04:05:06.07', '2020-01-01 00:00:00.000001', 2155, " +
			"'abc', REPEAT('c', 100), 'héllo 🎉 世界 \"q\" \\\\ \\n', REPEAT('€', 300), REPEAT('x', 1000), 'tiny', 'mtx', 'ltx', " +
			"X'6162', X'00FF0001', X'DEADBEEF00', X'', 'large', 'b'",
		"2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, 0, " +
			"'-0.000000000000000000000000000001', -0.01, -1, -0.00001, -0.000000001, 0, " +
			"-3.4028234e38, -1.7976931348623157e308, '1000-01-01', '1970-01-01 00:00:00', '1999-12-31 23:59:59.9', '1970-01-02 00:00:00.001', '2000-01-01 00:00:00.000001', " +
			"'1970-01-01 00:00:01', '1970-01-01 00:00:01.01', '1970-01-01 00:00:01.000001', 1901, " +
			"'', '', '', '', '', '', '', '', X'00000000', X'', X'', X'00', 'small', 'a'",
		"3, -1, 1, -1, 1, -1, 1, -1, 1, 1, 0, 0, 0, 0, 0, 0.0001, 0, 0, '2024-01-05', '2024-01-05 10:00:00', NULL, NULL, NULL, NULL, NULL, NULL, 0, " +
			"'a,b', 'x', 'y\\\\z', 'w', 'v', 'u', 't', 's', X'01', X'02', X'03', X'04', NULL, 'a'",
	}
	for _, r := range rows {
		m.Exec(t, "INSERT INTO rd.t ("+cols+") VALUES ("+r+")")
	}
	m.Exec(t, "INSERT INTO rd.t (id, e2) VALUES (4, 'b'), (5, 'a'), (6, 'b')")
	m.Exec(t, "UPDATE rd.t SET iu = COALESCE(iu, 0) DIV 2 + 1, d2 = d2 / 3, vc = CONCAT(vc, '!'), dtm6 = '2030-06-07 08:09:10.111213' WHERE id IN (1,2,3,4)")
	// Pre-1970 DATETIME: go-mysql returns text for it, so this event takes go-mysql's path.
	m.Exec(t, "UPDATE rd.t SET dtm = '1960-05-05 05:05:05' WHERE id = 5")
	m.Exec(t, "DELETE FROM rd.t WHERE id IN (2, 6)")
	m.Exec(t, "INSERT INTO rd.other VALUES (1, b'101', 'x,y', '-12:34:56.789', '{\"a\":1}', 1.25)")
	m.Exec(t, "UPDATE rd.other SET d = 2.5 WHERE id = 1")
	m.Exec(t, "INSERT INTO rd.t (id, e2, vc) SELECT seq + 100, 'a', CONCAT('row ', seq) FROM rd.seq_1_to_2000")

	var file string
	var pos uint32
	if err := m.DB().QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, new(any), new(any)); err != nil {
		t.Fatal(err)
	}
	var first string
	if err := m.DB().QueryRow("SHOW BINARY LOGS").Scan(&first, new(any)); err != nil {
		t.Fatal(err)
	}

	type image struct {
		table string
		vals  []any // boxed copies: the decoder reuses its buffers
		kinds []schemas.ValueKind
		fast  bool
	}
	keep := func(table string, vals []schemas.Value, fast bool) image {
		im := image{table: table, fast: fast}
		for _, v := range vals {
			im.vals = append(im.vals, v.Any())
			im.kinds = append(im.kinds, v.Kind())
		}
		return im
	}
	read := func(serverID uint32, rd *rowDecoder) []image {
		st := startSync(t, m, serverID, first, func(cfg *replication.BinlogSyncerConfig) {
			if rd != nil {
				cfg.RowsEventDecodeFunc = rd.decode
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out []image
		cur := first
		tables := map[uint64]*tableInfo{}
		for {
			ev, err := st.GetEvent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			switch e := ev.Event.(type) {
			case *replication.RotateEvent:
				cur = string(e.NextLogName)
			case *replication.TableMapEvent:
				ti, err := newTableInfo(e, mariadbText())
				if err != nil {
					t.Fatal(err)
				}
				tables[e.TableID] = ti
			case *replication.RowsEvent:
				ti := tables[e.TableID]
				name := string(e.Table.Schema) + "." + string(e.Table.Table)
				if !strings.HasPrefix(name, "rd.") {
					break
				}
				if dr, ok := decodedRowsOf(e); ok {
					for i := range dr.images {
						out = append(out, keep(name, dr.image(i), true))
					}
					dr.release()
					break
				}
				for i, row := range e.Rows {
					var buf []schemas.Value
					var scratch []byte
					vals, err := (&session{}).convert(ti, row, ev, i, &buf, &scratch)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, keep(name, vals, false))
				}
			}
			if cur == file && ev.Header.LogPos >= pos {
				return out
			}
		}
	}
	want := read(7101, nil)
	var slow atomic.Uint64
	got := read(7102, newRowDecoder(filter{include: []string{"rd.*"}}, mariadbText(), &slow))
	if len(got) != len(want) {
		t.Fatalf("%d images with rowDecoder, %d with go-mysql", len(got), len(want))
	}
	fast := map[string]int{}
	for i := range want {
		g, w := got[i], want[i]
		if g.fast {
			fast[g.table]++
		}
		if g.table != w.table || len(g.vals) != len(w.vals) {
			t.Fatalf("image %d: %s with %d values, want %s with %d", i, g.table, len(g.vals), w.table, len(w.vals))
		}
		for c := range w.vals {
			if g.kinds[c] != w.kinds[c] || !reflect.DeepEqual(g.vals[c], w.vals[c]) {
				t.Errorf("image %d (%s) column %d: got %d:%#v, want %d:%#v", i, w.table, c, g.kinds[c], g.vals[c], w.kinds[c], w.vals[c])
			}
		}
	}
	// rd.t: 3 + 3 inserted, 4 updated (×2), 2 deleted, 2000 inserted = 2016 images
	// on the fast path; the pre-1970 update (2 images) goes to go-mysql.
	if fast["rd.t"] != 2016 || fast["rd.other"] != 0 {
		t.Errorf("fast-path images: %v, want rd.t 2016 and rd.other 0", fast)
	}
	if slow.Load() == 0 {
		t.Errorf("rows events left to go-mysql were not counted (Stats.SlowRowsEvents)")
	}

	// Excluded tables are not decoded at all.
	skipped := read(7103, newRowDecoder(filter{include: []string{"rd.other"}}, mariadbText(), nil))
	for _, im := range skipped {
		if im.table == "rd.t" {
			t.Fatalf("rows of an excluded table were decoded: %#v", im.vals)
		}
	}
}

// mariadbText is how a session decodes text from MariaDB, with the built-in
// collation ids.
func mariadbText() *sourceText {
	return &sourceText{collations: charset.NewCollations(), mariadb: true}
}

// startSync streams m's binlog from the start of file with go-mysql, configured
// as the decoder tests need (edit adds to it); the syncer stops with the test.
func startSync(t *testing.T, m *testenv.MariaDBServer, serverID uint32, file string, edit func(*replication.BinlogSyncerConfig)) *replication.BinlogStreamer {
	t.Helper()
	cfg := replication.BinlogSyncerConfig{ServerID: serverID, Flavor: mysql.MariaDBFlavor, Host: m.Host, Port: uint16(m.Port),
		User: m.User, Password: m.Password, ParseTime: true, Logger: slog.New(slog.DiscardHandler)}
	edit(&cfg)
	syncer := replication.NewBinlogSyncer(cfg)
	t.Cleanup(syncer.Close)
	st, err := syncer.StartSync(mysql.Position{Name: file, Pos: 4})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestAppendDateTimeMatchesTime: the direct formatting of DATETIME fields writes
// what going through time.Date and appendTime writes, for every fsp, on dates
// near the calendar's edges (month ends, leap days of leap and century years)
// and random ones; daysIn agrees with time's calendar.
func TestAppendDateTimeMatchesTime(t *testing.T) {
	check := func(y, mo, d, h, mi, s, us int) {
		t.Helper()
		for fsp := 0; fsp <= 6; fsp++ {
			got := string(appendDateTime(nil, y, mo, d, h, mi, s, us, fsp))
			want := string(appendTime(nil, time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC), fsp, false))
			if got != want {
				t.Fatalf("%04d-%02d-%02d %02d:%02d:%02d.%06d fsp %d: %s, want %s", y, mo, d, h, mi, s, us, fsp, got, want)
			}
		}
	}
	for _, y := range []int{1, 999, 1000, 1900, 1970, 2000, 2023, 2024, 2100, 9999} {
		for mo := 1; mo <= 12; mo++ {
			last := time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day()
			if got := daysIn(mo, y); got != last {
				t.Fatalf("daysIn(%d, %d) = %d, want %d", mo, y, got, last)
			}
			check(y, mo, 1, 0, 0, 0, 0)
			check(y, mo, last, 23, 59, 59, 999999)
		}
	}
	r := uint64(1)
	next := func(n int) int { r = r*6364136223846793005 + 1442695040888963407; return int(r>>33) % n }
	for range 20000 {
		y, mo := next(10000), 1+next(12)
		check(y, mo, 1+next(daysIn(mo, y)), next(24), next(60), next(60), next(1000000))
	}
}
