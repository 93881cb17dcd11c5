package producer_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// TestSnapshotAlterRestarts adds a column while a backfill reads its third
// chunk: the backfill restarts from the first row (says so in its state), and
// every row ends up in the topic with the new column.
func TestSnapshotAlterRestarts(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cdctest.PreloadBF(t, m.DB(), 3000)
	cfg := cdctest.ProducerConfig(m, k, "alter")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"bf.*"}
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var alterErr error
	producer.SetSnapshotReadHook(p, func(table string, chunk int) {
		if table == "bf.items" && chunk == 2 {
			once.Do(func() {
				_, alterErr = m.DB().Exec("ALTER TABLE bf.items ADD COLUMN extra INT NOT NULL DEFAULT 7")
			})
		}
	})
	r := cdctest.StartProducerWith(t, cfg, p)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, ChunkSize: 500})
	st := waitSnapshots(t, r, 1, time.Minute)
	if alterErr != nil {
		t.Fatal(alterErr)
	}
	b := finished(t, st, "bf.items")
	if b.State != schemas.BackfillDone || b.Restarts != 1 || !strings.Contains(b.Note, "definition changed") || b.Rows != 3000 {
		t.Fatalf("backfill after the ALTER: %+v", b)
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.items$`, time.Minute)
	last := map[string]*schemas.Change{}
	reads := map[string]int{}
	for _, rec := range recs {
		if rec.Change != nil {
			last[rec.Key] = rec.Change
		}
		if rec.Op == "r" {
			reads[rec.Key]++
		}
	}
	for key, c := range last {
		if c.After["extra"] != int64(7) {
			t.Fatalf("key %s: last record has no extra column: %v", key, c.After)
		}
	}
	twice, total := 0, 0
	for _, n := range reads {
		total += n
		if n > 1 {
			twice++
		}
	}
	// The chunks written before the stream reached the ALTER were read again
	// after the restart: whole chunks from the first row, at most the two before
	// the third (the reader reads ahead, so the second, or both, may not have
	// been written yet: their windows saw the ALTER and they were dropped).
	if twice%500 != 0 || twice > 1000 || total != 3000+twice {
		t.Errorf("%d keys read twice (%d reads), want the whole chunks before the restart (0, 500 or 1000 keys)", twice, total)
	}
	for key, n := range reads {
		id, _ := strconv.Atoi(strings.TrimPrefix(key, "bf.items:"))
		if want := 1 + btoi(id <= twice); n != want {
			t.Errorf("key %s read %d times, want %d (%d keys were written before the restart)", key, n, want, twice)
			break
		}
	}
	state := cdctest.Replay(t, recs)
	want := cdctest.SourceRows(t, m.DB(), "bf.items", func(r map[string]string) string { return "bf.items:" + r["id"] }, "data")
	if d := testdiff.Rows(want, state); d != "" {
		t.Fatalf("topic does not replay to the table:\n%s", d)
	}
}

// TestSnapshotRefusals: a table without a primary key under no_primary_key:
// refuse, a WHERE the server rejects, a table not captured, the same table twice:
// each is refused or fails with an error naming the table and the cause, and
// writes nothing. A cancel stops a running backfill.
func TestSnapshotRefusals(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE bi")
	m.Exec(t, "CREATE TABLE bi.nopk (x INT, y VARCHAR(10))")
	m.Exec(t, "INSERT INTO bi.nopk VALUES (1, 'a'), (1, 'a'), (NULL, 'b'), (2, NULL), (NULL, NULL)")
	m.Exec(t, "CREATE TABLE bi.ok (id INT PRIMARY KEY, v INT)")
	m.Exec(t, "INSERT INTO bi.ok SELECT seq, seq FROM mysql.seq_1_to_3000")
	m.Exec(t, "CREATE TABLE bi.secret (id INT PRIMARY KEY)")
	cfg := cdctest.ProducerConfig(m, k, "refuse")
	cfg.Source.Start = "current"
	cfg.Source.NoPrimaryKey = "refuse"
	cfg.Tables.Include = []string{"bi.nopk", "bi.ok", "bi.secret"}
	cfg.Tables.Exclude = []string{"bi.secret"}
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	producer.SetSnapshotReadHook(p, func(table string, chunk int) {
		if table == "bi.ok" && chunk == 1 {
			<-release // holds the cancelled backfill's second chunk
		}
	})
	r := cdctest.StartProducerWith(t, cfg, p)

	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bi.nopk"}})
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bi.ok"}, Where: "no_such_column > 1"})
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bi.secret", "bi.nothere", "nodot"}})
	st := waitSnapshots(t, r, 5, time.Minute)
	expect := func(table, state string, words ...string) {
		t.Helper()
		b := finished(t, st, table)
		if b.State != state {
			t.Errorf("%s: state %s, want %s (%+v)", table, b.State, state, b)
		}
		for _, w := range words {
			if !strings.Contains(b.Error, w) {
				t.Errorf("%s: error %q does not say %q", table, b.Error, w)
			}
		}
	}
	expect("bi.nopk", schemas.BackfillFailed, "bi.nopk", "no primary key", "no_primary_key")
	expect("bi.ok", schemas.BackfillFailed, "bi.ok", "no_such_column")
	expect("bi.secret", schemas.BackfillRefused, "not captured", "bi.secret")
	expect("bi.nothere", schemas.BackfillRefused, "not captured")
	expect("nodot", schemas.BackfillRefused, "db.table")

	// The same table twice: the second request is refused while the first runs;
	// then a cancel stops the first.
	requestSnapshot(t, cfg, schemas.Signal{ID: "first", Tables: []string{"bi.ok"}, ChunkSize: 1000})
	requestSnapshot(t, cfg, schemas.Signal{ID: "second", Tables: []string{"bi.ok"}})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		// The first chunk is written; the hook holds the second.
		st := r.P.Snapshots()
		if len(st.Tables) == 1 && st.Tables[0].Rows == 1000 && len(st.Finished) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first chunk not written: %+v", st)
		}
	}
	requestSnapshot(t, cfg, schemas.Signal{ID: "stop", Action: schemas.SignalCancel, Tables: []string{"bi.ok"}})
	st = waitSnapshots(t, r, 7, time.Minute)
	close(release)
	var second, first *schemas.Backfill
	for i := range st.Finished {
		switch st.Finished[i].ID {
		case "second":
			second = &st.Finished[i]
		case "first":
			first = &st.Finished[i]
		}
	}
	if second == nil || second.State != schemas.BackfillRefused || !strings.Contains(second.Error, "already") || !strings.Contains(second.Error, "first") {
		t.Errorf("second request: %+v", second)
	}
	if first == nil || first.State != schemas.BackfillCancelled || first.Rows != 1000 {
		t.Errorf("cancelled request: %+v (want cancelled after its first chunk)", first)
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bi\.`, time.Minute)
	if len(recs) != 1000 {
		t.Errorf("%d records, want the 1000 of the cancelled backfill's first chunk", len(recs))
	}
	for _, rec := range recs {
		if rec.Change == nil || rec.Change.Table() != "bi.ok" {
			t.Fatalf("unexpected record %+v", rec)
		}
	}
}

// TestSnapshotNoPrimaryKey backfills a table without a primary key under
// no_primary_key: all-columns: rows are keyed by every column (NULLs included),
// identical rows share one key, and the topic replays to the distinct rows.
func TestSnapshotNoPrimaryKey(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE np")
	m.Exec(t, "CREATE TABLE np.log (x INT, y VARCHAR(10), z DECIMAL(4,1))")
	m.Exec(t, "INSERT INTO np.log SELECT seq % 7, IF(seq % 5 = 0, NULL, CONCAT('v', seq % 11)), IF(seq % 3 = 0, NULL, seq % 4) FROM mysql.seq_1_to_500")
	cfg := cdctest.ProducerConfig(m, k, "nopk")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"np.*"}
	r := cdctest.StartProducer(t, cfg)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"np.log"}, ChunkSize: 7})
	st := waitSnapshots(t, r, 1, time.Minute)
	var distinct int
	if err := m.DB().QueryRow("SELECT COUNT(*) FROM (SELECT DISTINCT x, y, z FROM np.log) d").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if b := finished(t, st, "np.log"); b.State != schemas.BackfillDone || b.Rows != uint64(distinct) {
		t.Fatalf("backfill: %+v, want %d rows (the distinct ones)", b, distinct)
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.np\.log$`, time.Minute)
	state := cdctest.Replay(t, recs)
	want := cdctest.SourceRows(t, m.DB(), "np.log", func(r map[string]string) string {
		key := "np.log:"
		for i, c := range []string{"x", "y", "z"} {
			if i > 0 {
				key += ","
			}
			if r[c] == "NULL" {
				key += `\N`
			} else {
				key += r[c]
			}
		}
		return key
	})
	if d := testdiff.Rows(want, state); d != "" {
		t.Fatalf("topic does not replay to the distinct rows:\n%s", d)
	}
}

// TestSnapshotStart: source.start: snapshot on a fresh deployment backfills
// every captured table, then streams; a restart does not backfill again.
func TestSnapshotStart(t *testing.T) { testSnapshotStart(t, false) }

// TestSnapshotStartTableWatermark is TestSnapshotStart with the table
// watermark: the producer creates the table (and its database) at start.
func TestSnapshotStartTableWatermark(t *testing.T) { testSnapshotStart(t, true) }

func testSnapshotStart(t *testing.T, table bool) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cdctest.PreloadBF(t, m.DB(), 4000)
	m.Exec(t, "CREATE DATABASE other")
	m.Exec(t, "CREATE TABLE other.t (id INT PRIMARY KEY)")
	m.Exec(t, "INSERT INTO other.t VALUES (1), (2)")
	cfg := cdctest.ProducerConfig(m, k, "start")
	cfg.Source.Start = "snapshot"
	cfg.Source.SnapshotChunkSize = 300
	cfg.Tables.Include = []string{"bf.*"}
	if table {
		useTableWatermark(&cfg)
	}
	r := cdctest.StartProducer(t, cfg)
	w := cdctest.StartBFWriter(t, m.DB(), 4000, 5)
	st := waitSnapshots(t, r, 2, 2*time.Minute)
	w.Stop(t)
	if table {
		// One write at start, one per chunk read (at least).
		checkWatermarks(t, m, cfg, chunks(st)+1)
	}
	for _, b := range st.Finished {
		if b.ID != "initial" || b.State != schemas.BackfillDone {
			t.Fatalf("initial backfill: %+v", b)
		}
	}
	checkSnapshotMetrics(t, r.P, st)
	r.CaughtUp(t, m.DB())
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	reads := r.P.Stats().SnapshotRows.Load()
	r2 := cdctest.StartProducer(t, cfg)
	m.Exec(t, "UPDATE bf.items SET cnt = 1 WHERE id = 1")
	r2.CaughtUp(t, m.DB())
	if n := r2.P.Stats().SnapshotRows.Load(); n != 0 {
		t.Errorf("a restart read %d rows again", n)
	}
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.`, time.Minute)
	for _, rec := range recs {
		if strings.HasPrefix(rec.Key, "other.") {
			t.Fatalf("a table that is not captured was backfilled: %s", rec.Key)
		}
	}
	var tableRecs []cdctest.Record
	for _, rec := range recs {
		if strings.HasPrefix(rec.Topic, "kanal.bf.") {
			tableRecs = append(tableRecs, rec)
		}
	}
	cdctest.CheckExactlyOnce(t, tableRecs)
	cdctest.CheckBF(t, m.DB(), tableRecs, true)
	t.Logf("%d rows read by the initial backfill", reads)
}

// TestSnapshotKeys: a backfill of given keys (kanal verify --repair) reads the
// rows that exist and writes a tombstone, with a sequence, for keys that do not.
func TestSnapshotKeys(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cdctest.PreloadBF(t, m.DB(), 100)
	cfg := cdctest.ProducerConfig(m, k, "keys")
	cfg.Source.Start = "current"
	cfg.Tables.Include = []string{"bf.*"}
	r := cdctest.StartProducer(t, cfg)
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, Keys: []string{"bf.items:5", "bf.items:77", "bf.items:12345"}})
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.pairs"}, Keys: []string{`bf.pairs:3,y\,z`, `bf.pairs:4,x`, `bf.pairs:4,nope`}})
	waitSnapshots(t, r, 2, time.Minute)
	// After the first: a second request for the same table while one runs is refused.
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, Keys: []string{"bf.items:notanumber"}})
	st := waitSnapshots(t, r, 3, time.Minute)
	if b := st.Finished[2]; b.State != schemas.BackfillFailed || !strings.Contains(b.Error, "notanumber") {
		t.Errorf("a key that does not fit the table: %+v", b)
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.`, time.Minute)
	got := map[string]string{}
	for _, rec := range recs {
		op := rec.Op
		if rec.Tombstone {
			op = "tombstone"
			if rec.Seq == 0 {
				t.Errorf("tombstone of %s has no sequence", rec.Key)
			}
		}
		got[rec.Key] = op
	}
	want := map[string]string{"bf.items:5": "r", "bf.items:77": "r", "bf.items:12345": "tombstone",
		`bf.pairs:3,y\,z`: "r", "bf.pairs:4,x": "r", "bf.pairs:4,nope": "tombstone"}
	if len(got) != len(want) {
		t.Errorf("records %v, want %v", got, want)
	}
	for key, op := range want {
		if got[key] != op {
			t.Errorf("%s: %q, want %q", key, got[key], op)
		}
	}
}

// checkSnapshotMetrics: the producer's registry (the one its admin listener
// serves) exports each finished backfill's rows, and nothing left to read.
func checkSnapshotMetrics(t *testing.T, p *producer.Producer, st *schemas.SnapshotState) {
	t.Helper()
	mfs, err := p.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] != "start" {
				continue
			}
			switch mf.GetName() {
			case "kanal_snapshot_rows_total":
				got["rows "+labels["table"]] = m.GetCounter().GetValue()
			case "kanal_snapshot_remaining_rows":
				got["remaining "+labels["table"]] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{}
	for _, b := range st.Finished {
		want["rows "+b.Table] = float64(b.Rows)
		want["remaining "+b.Table] = 0
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kanal_snapshot_* metrics (-want +got):\n%s", diff)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
