package producer_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// snapshotRows is the size of the backfilled table in the load tests: 30,000
// rows keep `make test` short; KANAL_SNAPSHOT_ROWS=300000 runs the size.
func snapshotRows(t testing.TB) int {
	if s := os.Getenv("KANAL_SNAPSHOT_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("KANAL_SNAPSHOT_ROWS=%q: want a number >= 100", s)
		}
		return n
	}
	return 30000
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

// preloadBF creates the bf tables with n items and n/5 pairs.
func preloadBF(t testing.TB, db *sql.DB, n int) {
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

// bfWriter changes bf rows at random — inserts, updates, key changes, deletes,
// anywhere in the key range — until stopped.
type bfWriter struct {
	db    *sql.DB
	n     int
	rng   *rand.Rand
	stmts atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startBFWriter(t testing.TB, db *sql.DB, n int, seed uint64) *bfWriter {
	w := &bfWriter{db: db, n: n, rng: rand.New(rand.NewPCG(seed, seed+1)), stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.loop() }()
	t.Cleanup(func() { w.Stop(t) })
	return w
}

func (w *bfWriter) loop() error {
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
		w.stmts.Add(1)
	}
	return nil
}

// Stop stops the writer and reports its error.
func (w *bfWriter) Stop(t testing.TB) {
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

// checkBF compares bf.items (and bf.pairs when pairs) with the state the
// records replay to, and checks that no backfill read a key twice.
func checkBF(t testing.TB, db *sql.DB, recs []cdctest.Record, pairs bool) {
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
	state := cdctest.Replay(t, recs)
	want := cdctest.SourceRows(t, db, "bf.items", func(r map[string]string) string { return "bf.items:" + r["id"] }, "data")
	if pairs {
		for k, v := range cdctest.SourceRows(t, db, "bf.pairs", func(r map[string]string) string {
			return "bf.pairs:" + r["a"] + "," + strings.ReplaceAll(strings.ReplaceAll(r["b"], `\`, `\\`), ",", `\,`)
		}) {
			want[k] = v
		}
	}
	if d := cdctest.Diff(want, state); d != "" {
		t.Fatalf("topics do not replay to the tables (%d rows, want %d):\n%s", len(state), len(want), d)
	}
	t.Logf("%d rows equal, %d read by the backfill", len(want), len(reads))
}

// TestSnapshotUnderLoad backfills tables that hold rows from before the
// producer started while a writer inserts, updates (also keys) and deletes
// anywhere in them: afterwards the topics replay to exactly the tables, and no
// key was read twice.
func TestSnapshotUnderLoad(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	n := snapshotRows(t)
	preloadBF(t, m.DB(), n)
	cfg := cdctest.ProducerConfig(m, k, "load")
	cfg.Source.Start = "current" // the rows already there reach Kafka only through the backfill
	cfg.Tables.Include = []string{"bf.*"}
	r := cdctest.StartProducer(t, cfg)
	w := startBFWriter(t, m.DB(), n, 11)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items", "bf.pairs"}, ChunkSize: 500})
	began := time.Now()
	st := waitSnapshots(t, r, 2, 5*time.Minute)
	w.Stop(t)
	r.CaughtUp(t, m.DB())
	for _, tbl := range []string{"bf.items", "bf.pairs"} {
		b := finished(t, st, tbl)
		if b.State != schemas.BackfillDone {
			t.Fatalf("%s: %+v", tbl, b)
		}
		t.Logf("%s: %d rows read, %d left to the stream, %d chunks", tbl, b.Rows, b.Skipped, b.Chunks)
	}
	t.Logf("backfill took %v with %d writer transactions meanwhile", time.Since(began).Round(time.Millisecond), w.stmts.Load())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.`, 2*time.Minute)
	cdctest.CheckExactlyOnce(t, recs)
	checkBF(t, m.DB(), recs, true)
}

// TestSnapshotWindow changes rows of a chunk after its snapshot was taken and
// before the stream reaches it, deterministically: the chunk must leave those
// keys to their changes (else an old value read by the chunk would be written
// after the newer change). It also deletes and re-inserts rows of the chunk and
// changes a key into the chunk's range.
func TestSnapshotWindow(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	preloadBF(t, m.DB(), 2000)
	cfg := cdctest.ProducerConfig(m, k, "window")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"bf.*"}
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var hookErr error
	var mu sync.Mutex
	changed := map[string]bool{}
	producer.SetSnapshotReadHook(p, func(table string, chunk int) {
		if table != "bf.items" || chunk != 1 {
			return
		}
		// Chunk 1 covers ids 501..1000: the snapshot is taken, the SELECT
		// follows. These changes are not in it.
		mu.Lock()
		defer mu.Unlock()
		for _, q := range []string{
			"UPDATE bf.items SET name = 'after the snapshot' WHERE id = 600",
			"DELETE FROM bf.items WHERE id = 700",
			"UPDATE bf.items SET id = 5000 WHERE id = 800",
			"DELETE FROM bf.items WHERE id IN (750, 751)",
			"UPDATE bf.items SET id = 750 WHERE id = 1500",
			"INSERT INTO bf.items VALUES (751, 'new', 1.00, X'00', '2024-01-01 00:00:00', 1, 1)",
		} {
			if _, err := m.DB().Exec(q); err != nil && hookErr == nil {
				hookErr = fmt.Errorf("%s: %w", q, err)
			}
		}
		// Keys of the chunk's range (5000 and 1500 are read, or not, by later chunks).
		for _, k := range []string{"600", "700", "800", "750", "751"} {
			changed["bf.items:"+k] = true
		}
	})
	r := cdctest.StartProducerWith(t, cfg, p)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, ChunkSize: 500})
	waitSnapshots(t, r, 1, time.Minute)
	r.CaughtUp(t, m.DB())
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if len(changed) == 0 {
		t.Fatal("the hook never ran")
	}
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.items$`, time.Minute)
	for _, rec := range recs {
		if rec.Op == "r" && changed[rec.Key] {
			t.Errorf("key %s changed after its chunk's snapshot, yet the chunk read it", rec.Key)
		}
	}
	checkBF(t, m.DB(), recs, false)
}
