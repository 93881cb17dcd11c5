package producer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

var signalIDs int

// requestSnapshot asks the producer of cfg for a backfill, as `kanal snapshot` does.
func requestSnapshot(t testing.TB, cfg producer.Config, sig schemas.Signal) string {
	t.Helper()
	signalIDs++
	if sig.ID == "" {
		sig.ID = fmt.Sprintf("%s-%d", t.Name(), signalIDs)
	}
	if sig.Action == "" {
		sig.Action = schemas.SignalSnapshot
	}
	sig.Source = cfg.Source.Name
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := producer.SendSignal(ctx, &cfg.Kafka.Config, sig); err != nil {
		t.Fatal(err)
	}
	return sig.ID
}

// waitSnapshots waits until no backfill is queued or running and at least n
// have finished, and returns the state.
func waitSnapshots(t testing.TB, r *cdctest.Producer, n int, timeout time.Duration) *schemas.SnapshotState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := r.P.Snapshots()
		if st != nil && len(st.Tables) == 0 && len(st.Finished) >= n {
			return st
		}
		if done, err := r.Exited(); done {
			t.Fatalf("producer stopped while backfilling: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("backfills not finished after %v: %+v", timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finished returns the finished backfill of table (the last one).
func finished(t testing.TB, st *schemas.SnapshotState, table string) schemas.Backfill {
	t.Helper()
	for i := len(st.Finished) - 1; i >= 0; i-- {
		if st.Finished[i].Table == table {
			return st.Finished[i]
		}
	}
	t.Fatalf("no finished backfill of %s in %+v", table, st.Finished)
	return schemas.Backfill{}
}

const moreTypesDDL = `CREATE TABLE ty.more (
	b VARCHAR(10) NOT NULL, a INT NOT NULL,
	l1 VARCHAR(20) CHARACTER SET latin1, el ENUM('zéro','un') CHARACTER SET latin1, sl SET('à','b') CHARACTER SET latin1,
	c5 CHAR(5), zd DATE, zdt DATETIME(3), zts TIMESTAMP(2) NULL, old DATETIME, t0 TIME(6), t1 TIME(2),
	d DOUBLE, f FLOAT, g POINT, bn BINARY(3), fl FLOAT, y YEAR, bt BIT(64),
	u VARCHAR(10) COLLATE utf8mb4_uca1400_ai_ci, gb VARCHAR(10) CHARACTER SET gbk,
	PRIMARY KEY (b, a)
) CHARACTER SET utf8mb4`

// TestSnapshotEveryTypeGolden backfills the every-type table (and one with
// latin1 text, zero and pre-1970 dates, a composite key in another order than
// its columns, a POINT) after its rows went through the binlog: each row's read
// record must carry byte for byte the same columns and values as its insert, in
// both formats, and the same key.
func TestSnapshotEveryTypeGolden(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE ty")
	m.Exec(t, allTypesDDL)
	m.Exec(t, moreTypesDDL)
	conn, err := m.DB().Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%.80s…: %v", q, err)
		}
	}
	exec("SET time_zone = '+03:00'")
	insertAllTypes(exec)
	exec("SET sql_mode = ''") // zero dates
	exec(`INSERT INTO ty.more VALUES ('x', 2, 'café', 'zéro', 'à,b', 'ab  ', '0000-00-00', '0000-00-00 00:00:00.000',
		'0000-00-00 00:00:00', '1969-12-31 23:59:59', '12:00:00', '-00:00:00.5', 0.1+0.2, 1.1, POINT(1, 2), 'a', 3.4028234e38, 0, b'1111111111111111111111111111111111111111111111111111111111111111', 'Ünï', '世界')`)
	exec(`INSERT INTO ty.more VALUES ('y', 1, '', '', '', '', '2024-00-00', '2024-00-05 10:00:00.5', '2001-02-03 07:05:06.7',
		'1000-01-01 00:00:00', '-838:59:59.000000', '00:00:00', 1e300, -0.0, POINT(-1.5, 1e10), '', 1e-40, 1999, 0, NULL, '')`)
	exec(`INSERT INTO ty.more (b, a) VALUES ('y', 0), ('Y ', 3)`)

	for _, format := range []string{"json", "canal-json"} {
		t.Run(format, func(t *testing.T) {
			cfg := cdctest.ProducerConfig(m, k, "golden-"+format)
			cfg.Source.ServerID = 1100 + uint32(len(format))
			cfg.Kafka.TopicPrefix = "g" + strings.ReplaceAll(format, "-", "")
			cfg.Kafka.Format = format
			cfg.Tables.Include = []string{"ty.*"}
			r := cdctest.StartProducer(t, cfg)
			r.CaughtUp(t, m.DB())
			requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"ty.all_types", "ty.more"}, ChunkSize: 2})
			st := waitSnapshots(t, r, 2, time.Minute)
			keys := 0
			for _, tbl := range []string{"ty.all_types", "ty.more"} {
				var n int
				if err := m.DB().QueryRow("SELECT COUNT(*) FROM " + tbl).Scan(&n); err != nil {
					t.Fatal(err)
				}
				keys += n
				if b := finished(t, st, tbl); b.State != schemas.BackfillDone || b.Rows != uint64(n) {
					t.Fatalf("backfill of %s (%d rows): %+v", tbl, n, b)
				}
			}
			recs := cdctest.ReadAll(t, k.Brokers, "^"+cfg.Kafka.TopicPrefix+`\.ty\.`, time.Minute)
			type pair struct{ c, r *cdctest.Record }
			byKey := map[string]*pair{}
			for i := range recs {
				rec := &recs[i]
				p := byKey[rec.Key]
				if p == nil {
					p = &pair{}
					byKey[rec.Key] = p
				}
				switch rec.Op {
				case "c":
					p.c = rec
				case "r":
					if p.r != nil {
						t.Fatalf("key %s read twice", rec.Key)
					}
					p.r = rec
				default:
					t.Fatalf("unexpected op %q for %s", rec.Op, rec.Key)
				}
			}
			if len(byKey) != keys {
				t.Fatalf("%d keys, want %d", len(byKey), keys)
			}
			fields := []string{"columns", "after", "key_fallback"}
			if format == "canal-json" {
				fields = []string{"data", "mysqlType", "sqlType", "pkNames", "type", "isDdl", "old"}
			}
			for key, p := range byKey {
				if p.c == nil || p.r == nil {
					t.Fatalf("key %s: insert %v, read %v", key, p.c != nil, p.r != nil)
				}
				var c, r map[string]json.RawMessage
				if err := json.Unmarshal(p.c.Value, &c); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(p.r.Value, &r); err != nil {
					t.Fatal(err)
				}
				for _, f := range fields {
					if !bytes.Equal(c[f], r[f]) {
						t.Errorf("key %s field %s:\nbinlog   %s\nsnapshot %s", key, f, c[f], r[f])
					}
				}
				if p.r.Seq <= p.c.Seq {
					t.Errorf("key %s: read seq %d not after the insert's %d", key, p.r.Seq, p.c.Seq)
				}
				if format == "json" && p.r.Change.Op != schemas.OpRead {
					t.Errorf("key %s: decoded op %q", key, p.r.Change.Op)
				}
				if format == "json" && p.r.Change.Before != nil {
					t.Errorf("key %s: a read has a before image", key)
				}
			}
		})
	}
}
