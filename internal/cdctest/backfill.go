package cdctest

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/testdiff"
)

// The bf workload: tables with many rows before a producer starts, and a writer
// that changes them anywhere while a backfill reads them.

// SnapshotRows is the size of the backfilled table in the load tests: 30,000
// rows keep `make test` short; KANAL_SNAPSHOT_ROWS=300000 runs the size.
func SnapshotRows(t testing.TB) int {
	if s := os.Getenv("KANAL_SNAPSHOT_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("KANAL_SNAPSHOT_ROWS=%q: want a number >= 100", s)
		}
		return n
	}
	return 30000
}

// ReadTimeout bounds reading back the topics of a bf workload over n rows: a
// few minutes more for KANAL_SNAPSHOT_ROWS=300000 under -race on a busy machine.
func ReadTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n/1000)*time.Second
}

const bfSchema = `CREATE DATABASE bf;
CREATE TABLE bf.items (
	id BIGINT NOT NULL PRIMARY KEY,
	name VARCHAR(32) CHARACTER SET utf8mb4,
	amount DECIMAL(14,2),
	data VARBINARY(16),
	ts DATETIME(6),
	cnt INT UNSIGNED,
	grp INT NOT NULL
);
CREATE TABLE bf.pairs (
	a INT NOT NULL,
	b VARCHAR(20) NOT NULL,
	v INT,
	PRIMARY KEY (a, b)
)`

// PreloadBF creates the tables bf.items (BIGINT key, several types, a group
// column grp) and bf.pairs (composite key with a string part that needs escaping)
// with n items and n/5 pairs.
func PreloadBF(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	for _, q := range strings.Split(bfSchema, ";\n") {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for start := 1; start <= n; start += 1000 {
		var vals []string
		for id := start; id < start+1000 && id <= n; id++ {
			vals = append(vals, bfItemValues(rng, int64(id)))
		}
		if _, err := db.Exec("INSERT INTO bf.items VALUES " + strings.Join(vals, ",")); err != nil {
			t.Fatal(err)
		}
	}
	for start := 1; start <= n/10; start += 1000 {
		var vals []string
		for a := start; a < start+1000 && a <= n/10; a++ {
			vals = append(vals, fmt.Sprintf("(%d, 'x', %d), (%d, 'y,z', NULL)", a, a, a))
		}
		if _, err := db.Exec("INSERT INTO bf.pairs VALUES " + strings.Join(vals, ",")); err != nil {
			t.Fatal(err)
		}
	}
}

var bfNames = []string{"alice", "bob", "crème", "emoji 🎉", "世界", "quote's", `back\slash`, "comma,here", ""}

func bfItemValues(rng *rand.Rand, id int64) string {
	name := "NULL"
	if rng.IntN(8) > 0 {
		name = "'" + strings.ReplaceAll(strings.ReplaceAll(bfNames[rng.IntN(len(bfNames))], `\`, `\\`), "'", "''") + "'"
	}
	return fmt.Sprintf("(%d, %s, %d.%02d, X'%016x', '2024-0%d-1%d 10:11:12.%06d', %d, %d)", id, name,
		rng.IntN(100000)-50000, rng.IntN(100), rng.Uint64(), 1+rng.IntN(9), rng.IntN(10), rng.IntN(1000000), rng.Uint32(), rng.IntN(7))
}

// BFWriter changes bf rows at random — inserts, updates, key changes, deletes,
// anywhere in the key range — until stopped.
type BFWriter struct {
	db  *sql.DB
	n   int
	rng *rand.Rand
	// Stmts counts the transactions committed.
	Stmts atomic.Int64
	stop  chan struct{}
	done  chan error
}

// StartBFWriter starts a writer over the n-row bf tables; it stops at the end of
// the test (or Stop), after 5 minutes at the latest.
func StartBFWriter(t testing.TB, db *sql.DB, n int, seed uint64) *BFWriter {
	w := &BFWriter{db: db, n: n, rng: rand.New(rand.NewPCG(seed, seed+1)), stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.loop() }()
	t.Cleanup(func() { w.Stop(t) })
	return w
}

func (w *BFWriter) loop() error {
	deadline := time.Now().Add(5 * time.Minute) // bounded whatever happens
	for time.Now().Before(deadline) {
		select {
		case <-w.stop:
			return nil
		default:
		}
		tx, err := w.db.Begin()
		if err != nil {
			return err
		}
		for range 1 + w.rng.IntN(4) {
			id := 1 + w.rng.Int64N(int64(w.n)*6/5)
			var q string
			var args []any
			switch r := w.rng.IntN(10); {
			case r < 3:
				q = "INSERT IGNORE INTO bf.items VALUES " + bfItemValues(w.rng, id)
			case r < 6:
				q, args = "UPDATE bf.items SET amount = amount + 1, name = ?, cnt = cnt DIV 2 WHERE id = ?", []any{bfNames[w.rng.IntN(len(bfNames))], id}
			case r < 7:
				q, args = "UPDATE IGNORE bf.items SET id = ? WHERE id = ?", []any{1 + w.rng.Int64N(int64(w.n)*6/5), id}
			case r < 8:
				q, args = "DELETE FROM bf.items WHERE id = ?", []any{id}
			default:
				a := 1 + w.rng.Int64N(int64(w.n)/10+10)
				switch w.rng.IntN(4) {
				case 0:
					q, args = "INSERT IGNORE INTO bf.pairs VALUES (?, ?, ?)", []any{a, []string{"x", "y,z", "w\\"}[w.rng.IntN(3)], w.rng.IntN(100)}
				case 1:
					q, args = "UPDATE bf.pairs SET v = IFNULL(v, 0) + 1 WHERE a = ?", []any{a}
				case 2:
					q, args = "UPDATE IGNORE bf.pairs SET b = 'moved' WHERE a = ? AND b = 'x'", []any{a}
				default:
					q, args = "DELETE FROM bf.pairs WHERE a = ? AND b = 'y,z'", []any{a}
				}
			}
			if _, err := tx.Exec(q, args...); err != nil {
				tx.Rollback()
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		w.Stmts.Add(1)
	}
	return nil
}

// Stop stops the writer and reports its error.
func (w *BFWriter) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	if err := <-w.done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// CheckBF compares bf.items (and bf.pairs when pairs) with the state the
// records replay to, and checks that no backfill read a key twice.
func CheckBF(t testing.TB, db *sql.DB, recs []Record, pairs bool) {
	t.Helper()
	reads := map[string]int{}
	for _, r := range recs {
		if r.Op == "r" {
			reads[r.Key]++
			if reads[r.Key] > 1 {
				t.Fatalf("key %s read twice by one backfill", r.Key)
			}
		}
	}
	state := Replay(t, recs)
	want := SourceRows(t, db, "bf.items", func(r map[string]string) string { return "bf.items:" + r["id"] }, "data")
	if pairs {
		for k, v := range SourceRows(t, db, "bf.pairs", func(r map[string]string) string {
			return "bf.pairs:" + r["a"] + "," + strings.ReplaceAll(strings.ReplaceAll(r["b"], `\`, `\\`), ",", `\,`)
		}) {
			want[k] = v
		}
	}
	if d := testdiff.Rows(want, state); d != "" {
		t.Fatalf("topics do not replay to the tables (%d rows, want %d):\n%s", len(state), len(want), d)
	}
	t.Logf("%d rows equal, %d read by the backfill", len(want), len(reads))
}
