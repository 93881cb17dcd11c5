package producer_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// TestSnapshotUnderLoad backfills tables that hold rows from before the
// producer started while a writer inserts, updates (also keys) and deletes
// anywhere in them: afterwards the topics replay to exactly the tables, and no
// key was read twice.
func TestSnapshotUnderLoad(t *testing.T) { testSnapshotUnderLoad(t, false) }

// TestSnapshotUnderLoadTableWatermark is TestSnapshotUnderLoad with the table
// watermark (source.snapshot_watermark: table), MySQL's way, on MariaDB.
func TestSnapshotUnderLoadTableWatermark(t *testing.T) { testSnapshotUnderLoad(t, true) }

func testSnapshotUnderLoad(t *testing.T, table bool) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	n := cdctest.SnapshotRows(t)
	cdctest.PreloadBF(t, m.DB(), n)
	cfg := cdctest.ProducerConfig(m, k, "load")
	cfg.Source.Start = "current" // the rows already there reach Kafka only through the backfill
	cfg.Tables.Include = []string{"bf.*"}
	if table {
		useTableWatermark(&cfg)
	}
	r := cdctest.StartProducer(t, cfg)
	w := cdctest.StartBFWriter(t, m.DB(), n, 11)
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
	t.Logf("backfill took %v with %d writer transactions meanwhile", time.Since(began).Round(time.Millisecond), w.Stmts.Load())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.`, cdctest.ReadTimeout(n))
	cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckBF(t, m.DB(), recs, true)
	if table {
		checkWatermarks(t, m, cfg, chunks(st))
	}
}

// TestSnapshotWindow changes rows of a chunk after its snapshot was taken and
// before the stream reaches it, deterministically: the chunk must leave those
// keys to their changes (else an old value read by the chunk would be written
// after the newer change). It also deletes and re-inserts rows of the chunk and
// changes a key into the chunk's range.
func TestSnapshotWindow(t *testing.T) { testSnapshotWindow(t, false) }

// TestSnapshotWindowTableWatermark is TestSnapshotWindow with the table watermark.
func TestSnapshotWindowTableWatermark(t *testing.T) { testSnapshotWindow(t, true) }

func testSnapshotWindow(t *testing.T, table bool) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cdctest.PreloadBF(t, m.DB(), 2000)
	cfg := cdctest.ProducerConfig(m, k, "window")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"bf.*"}
	if table {
		useTableWatermark(&cfg)
	}
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
		// The stream handles these changes before the chunk's rows arrive
		// (this hook holds the reader): the chunk must leave their keys out.
		// Without the wait the chunk could be written first, with the old
		// values, and the changes after it: right too, but not this test.
		var file string
		var pos uint32
		var skip any
		if err := m.DB().QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &skip, &skip); err != nil && hookErr == nil {
			hookErr = err
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			if pr := p.Progress(); pr.ReadFile > file || pr.ReadFile == file && pr.ReadPos >= pos {
				break
			}
			if time.Now().After(deadline) {
				if hookErr == nil {
					hookErr = fmt.Errorf("the stream did not reach %s:%d, the end of the hook's changes", file, pos)
				}
				break
			}
		}
	})
	r := cdctest.StartProducerWith(t, cfg, p)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, ChunkSize: 500})
	st := waitSnapshots(t, r, 1, time.Minute)
	r.CaughtUp(t, m.DB())
	if table {
		checkWatermarks(t, m, cfg, chunks(st))
	}
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
	cdctest.CheckBF(t, m.DB(), recs, false)
}

// TestSnapshotChunkBoundaries backfills tables whose rows fill their chunks
// exactly, and some chunk sizes around that: the reader reads chunks ahead of
// the session, chained to the one before, so a chunk asked for after the
// table's end must not count or repeat anything. Every row is read once, and
// the chunks are those of the rows (plus the empty one that finds the end).
func TestSnapshotChunkBoundaries(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	const n = 1000 // bf.items holds n rows, bf.pairs n/5
	cdctest.PreloadBF(t, m.DB(), n)
	cfg := cdctest.ProducerConfig(m, k, "bounds")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"bf.*"}
	r := cdctest.StartProducer(t, cfg)
	sizes := []int{250, 1000, 999, 1001, 7}
	for i, size := range sizes {
		requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items", "bf.pairs"}, ChunkSize: size})
		st := waitSnapshots(t, r, 2*(i+1), 2*time.Minute)
		for _, tbl := range []string{"bf.items", "bf.pairs"} {
			rows := n
			if tbl == "bf.pairs" {
				rows = n / 5
			}
			b := finished(t, st, tbl)
			if want := uint64(rows/size + 1); b.State != schemas.BackfillDone || b.Rows != uint64(rows) || b.Chunks != want {
				t.Errorf("chunk size %d, %s: %s, %d rows in %d chunks; want %d rows in %d chunks", size, tbl, b.State, b.Rows, b.Chunks, rows, want)
			}
		}
	}
	r.CaughtUp(t, m.DB())
	// The reads of each table in sequence order, backfill after backfill:
	// each backfill's share holds every key once.
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.`, time.Minute)
	slices.SortFunc(recs, func(a, b cdctest.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, tbl := range []string{"items", "pairs"} {
		rows := n
		if tbl == "pairs" {
			rows = n / 5
		}
		var keys []string
		for _, rec := range recs {
			if rec.Op == "r" && strings.HasPrefix(rec.Key, "bf."+tbl+":") {
				keys = append(keys, rec.Key)
			}
		}
		if len(keys) != len(sizes)*rows {
			t.Fatalf("bf.%s: %d reads, want %d", tbl, len(keys), len(sizes)*rows)
		}
		for i, size := range sizes {
			seen := map[string]bool{}
			for _, key := range keys[i*rows : (i+1)*rows] {
				if seen[key] {
					t.Errorf("chunk size %d: bf.%s key %s read twice", size, tbl, key)
				}
				seen[key] = true
			}
		}
	}
}
