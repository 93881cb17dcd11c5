package producer_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

func topicsRE(prefix, db string) string {
	return "^" + regexp.QuoteMeta(prefix+"."+db+".") + "[^.]+$"
}

// TestRandomWorkload replays every committed change of a random workload (multi-row
// transactions, key changes, deletes, NULLs, a composite key that needs escaping, a
// table without a primary key, a transaction larger than the flush limit) and
// compares it with the source tables. Every change appears exactly once.
func TestRandomWorkload(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "random")
	cfg.Kafka.FlushRecords = 97 // split the big transaction across many Kafka transactions
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 42)
	r := cdctest.StartProducer(t, cfg)
	for i := 0; i < 150; i++ {
		w.Step(t)
		if i == 70 {
			w.Bulk(t, 1500)
		}
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	stats := r.P.Stats()
	if stats.Commits.Load() < 16 {
		t.Errorf("only %d Kafka commits for a 1500-row transaction with flush_records 97", stats.Commits.Load())
	}
	t.Logf("%d changes from %d statements, %d Kafka commits", n, w.Statements, stats.Commits.Load())

	// Deletes are followed, in the same partition, by their key's tombstone; key
	// changes are a delete of the old key then a create of the new one.
	type tp struct {
		topic string
		part  int32
	}
	byPart := map[tp][]cdctest.Record{}
	bySeq := map[uint64]*schemas.Change{}
	for _, rec := range recs {
		byPart[tp{rec.Topic, rec.Partition}] = append(byPart[tp{rec.Topic, rec.Partition}], rec)
		if rec.Change != nil {
			bySeq[rec.Change.Seq] = rec.Change
		}
	}
	for _, part := range byPart {
		for i, rec := range part {
			if rec.Change != nil && rec.Change.Op == schemas.OpDelete {
				if i+1 >= len(part) || !part[i+1].Tombstone || part[i+1].Key != rec.Key {
					t.Fatalf("delete of %s at %s/%d@%d not followed by its tombstone", rec.Key, rec.Topic, rec.Partition, rec.Offset)
				}
			}
		}
	}
	keyChanges := 0
	for seq, c := range bySeq {
		if prev := bySeq[seq-1]; c.Op == schemas.OpCreate && prev != nil && prev.Op == schemas.OpDelete &&
			prev.Source.Pos == c.Source.Pos && prev.Source.Row == c.Source.Row-1 && prev.Table() == c.Table() && prev.Key() != c.Key() {
			keyChanges++
		}
	}
	if keyChanges == 0 {
		t.Error("no primary-key change was emitted as delete+create")
	}
}

// TestResumeExactlyOnce stops and restarts the producer between bursts of load
// (including mid-way through big transactions, cancelled at random moments): the
// topics still hold every change exactly once.
func TestResumeExactlyOnce(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "resume")
	cfg.Kafka.FlushRecords = 50
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 7)
	midTxn := 0
	for round := 0; round < 5; round++ {
		r := cdctest.StartProducer(t, cfg)
		stopAt := uint64(100 + round*900)
		stopped := make(chan struct{})
		producer.SetEmitHook(r.P, func(n uint64) {
			if n == stopAt {
				r.Cancel()
				close(stopped)
			}
		})
		w.Bulk(t, 5000)
		for i := 0; i < 20; i++ {
			w.Step(t)
		}
		// Stop while the producer is inside the 5000-row transaction: the hook
		// cancels from the producer's own goroutine right after change stopAt.
		<-stopped
		if err := r.Stop(t); err != nil {
			t.Fatalf("round %d: producer failed: %v", round, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		pos, err := producer.ReadPosition(ctx, &cfg.Kafka.Config, cfg.Source.Name)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: stopped after %d changes at %v", round, r.P.Stats().Changes.Load(), pos)
		if pos != nil && pos.RowsDone > 0 {
			midTxn++
		}
	}
	if midTxn == 0 {
		t.Fatal("no stop landed inside a binlog transaction; the test did not exercise mid-transaction resume")
	}
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes, exactly once across 6 producer runs", n)
}

// TestAlterTable checks that each change carries the columns the row had when it
// was written, live and when the binlog is re-read from the start after the ALTERs.
func TestAlterTable(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, "CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(20), email VARCHAR(50))")
	m.Exec(t, "INSERT INTO shop.users VALUES (1, 'ann', 'ann@x')")
	cfg := cdctest.ProducerConfig(m, k, "alter-live")
	cfg.Tables.Include = []string{"shop.*"}
	r := cdctest.StartProducer(t, cfg)
	m.Exec(t, "ALTER TABLE shop.users ADD COLUMN age INT AFTER name")
	m.Exec(t, "INSERT INTO shop.users VALUES (2, 'bob', 30, 'bob@x')")
	m.Exec(t, "ALTER TABLE shop.users DROP COLUMN email")
	m.Exec(t, "INSERT INTO shop.users VALUES (3, 'cy', 40)")
	m.Exec(t, "UPDATE shop.users SET age = 41 WHERE id = 3")
	r.CaughtUp(t, m.DB())

	want := []map[string]any{
		{"id": int64(1), "name": "ann", "email": "ann@x"},
		{"id": int64(2), "name": "bob", "age": int64(30), "email": "bob@x"},
		{"id": int64(3), "name": "cy", "age": int64(40)},
		{"id": int64(3), "name": "cy", "age": int64(41)},
	}
	check := func(source string) {
		var got []map[string]any
		for _, rec := range cdctest.ReadAll(t, k.Brokers, `^kanal\.shop\.users$`, time.Minute) {
			if rec.Change != nil && rec.Change.Source.Name == source {
				got = append(got, rec.Change.After)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("source %s: rows\n got %v\nwant %v", source, got, want)
		}
	}
	check("alter-live")
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	// A second source re-reads the whole binlog now that the table has its final
	// shape: the old rows must keep their old columns.
	cfg2 := cdctest.ProducerConfig(m, k, "alter-replay")
	cfg2.Source.ServerID = 1002
	cfg2.Tables.Include = []string{"shop.*"}
	r2 := cdctest.StartProducer(t, cfg2)
	r2.CaughtUp(t, m.DB())
	check("alter-replay")
}

// TestBinlogPurged fails with a clear error when the stored position was purged,
// instead of silently skipping to the current position.
func TestBinlogPurged(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE p")
	m.Exec(t, "CREATE TABLE p.t (id INT PRIMARY KEY)")
	cfg := cdctest.ProducerConfig(m, k, "purged")
	r := cdctest.StartProducer(t, cfg)
	m.Exec(t, "INSERT INTO p.t VALUES (1)")
	r.CaughtUp(t, m.DB())
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	stored, err := producer.ReadPosition(ctx, &cfg.Kafka.Config, cfg.Source.Name)
	cancel()
	if err != nil || stored == nil {
		t.Fatalf("stored position: %v %v", stored, err)
	}
	m.Exec(t, "FLUSH BINARY LOGS")
	m.Exec(t, "INSERT INTO p.t VALUES (2)")
	m.Exec(t, "FLUSH BINARY LOGS")
	newest, _ := cdctest.MasterPos(t, m.DB())
	// PURGE skips files a dump thread still reads, and the stopped producer's
	// thread lingers until the server next writes to its socket (seconds on a
	// busy machine): end it, as an operator would.
	deadline := time.Now().Add(20 * time.Second)
	for {
		killDumpThreads(t, m.DB())
		m.Exec(t, "PURGE BINARY LOGS TO '"+newest+"'")
		var name string
		var size sql.RawBytes
		rows, err := m.DB().Query("SHOW BINARY LOGS")
		if err != nil {
			t.Fatal(err)
		}
		// Every file before newest must go, not only the stored one: the
		// error names the oldest file left, and a dump thread still reading
		// the file between them keeps it.
		oldest := ""
		for rows.Next() {
			cols, _ := rows.Columns()
			dest := []any{&name, &size}
			for len(dest) < len(cols) {
				dest = append(dest, new(sql.RawBytes))
			}
			if err := rows.Scan(dest...); err != nil {
				t.Fatal(err)
			}
			if oldest == "" {
				oldest = name
			}
		}
		rows.Close()
		if oldest == newest {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("binary logs before %s still not purged after 20s (oldest %s)", newest, oldest)
		}
		time.Sleep(100 * time.Millisecond)
	}

	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	var purged *producer.BinlogPurgedError
	if !errors.As(err, &purged) || !errors.Is(err, producer.ErrBinlogPurged) {
		t.Fatalf("got %v, want BinlogPurgedError", err)
	}
	if purged.Oldest != newest || purged.Want.File != stored.File {
		t.Errorf("error names %s/%s, want stored %s and oldest %s", purged.Want.File, purged.Oldest, stored.File, newest)
	}
	for _, s := range []string{stored.File, newest, "re-snapshot", "positions reset"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// killDumpThreads ends the server's binlog dump threads (replication
// connections of producers that are gone).
func killDumpThreads(t *testing.T, db *sql.DB) {
	t.Helper()
	rows, err := db.Query("SELECT id FROM information_schema.PROCESSLIST WHERE command LIKE 'Binlog Dump%'")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		// The thread may end on its own in between: ER_NO_SUCH_THREAD is fine.
		_, _ = db.Exec(fmt.Sprintf("KILL %d", id))
	}
}

// TestNoPrimaryKeyRefused stops with an error naming the table when the policy
// refuses tables without a primary key.
func TestNoPrimaryKeyRefused(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE np")
	m.Exec(t, "CREATE TABLE np.logs (msg VARCHAR(10))")
	m.Exec(t, "INSERT INTO np.logs VALUES ('x')")
	cfg := cdctest.ProducerConfig(m, k, "nopk")
	cfg.Source.NoPrimaryKey = "refuse"
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, producer.ErrNoPrimaryKey) || !strings.Contains(err.Error(), "np.logs") {
		t.Fatalf("got %v, want ErrNoPrimaryKey naming np.logs", err)
	}
}

// TestHeartbeats: an idle producer writes heartbeats, so consumers can tell a quiet
// source from a stuck pipeline.
func TestHeartbeats(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "hb")
	cfg.Source.HeartbeatInterval = 100 * time.Millisecond
	r := cdctest.StartProducer(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for r.P.Stats().Heartbeats.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 3 heartbeats in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\._heartbeats$`, time.Minute)
	if len(recs) < 3 {
		t.Fatalf("%d heartbeat records committed, want >= 3", len(recs))
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "producer tests failed; rerun with -v for the producer's logs")
	}
	os.Exit(code)
}

// TestCompactedTopicsKeepCurrentState: with the default cleanup policy (compact),
// after the broker has compacted the topics a reader from the earliest offset still
// rebuilds exactly the source tables, and deleted rows are gone.
func TestCompactedTopicsKeepCurrentState(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "compact")
	cfg.Kafka.CleanupPolicy = "compact"
	cfg.Kafka.MinCompactionLag = 0 // compact at once (kfake does not implement the lag)
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 99)
	r := cdctest.StartProducer(t, cfg)
	for i := 0; i < 300; i++ {
		w.Step(t)
	}
	r.CaughtUp(t, m.DB())
	written := int(r.P.Stats().Changes.Load())
	// Compaction runs in the background every 200ms; wait until it has visibly
	// dropped superseded changes.
	deadline := time.Now().Add(60 * time.Second)
	var recs []cdctest.Record
	for {
		recs = cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
		changes := 0
		for _, rec := range recs {
			if rec.Change != nil {
				changes++
			}
		}
		if changes < written {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topics not compacted after 60s (%d changes of %d written)", changes, written)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes written, %d records after compaction; replay equals the source", written, len(recs))
}

// TestCanalJSONFormat writes Canal FlatMessages instead of kanal JSON: a team moving
// off Canal keeps its consumers, and the records still replay to the source tables.
func TestCanalJSONFormat(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "canal")
	cfg.Kafka.Format = "canal-json"
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 5)
	r := cdctest.StartProducer(t, cfg)
	for i := 0; i < 100; i++ {
		w.Step(t)
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	cdctest.CheckTables(t, m.DB(), recs)
}

// TestSourceRestart kills and restarts MariaDB under the producer: it reconnects
// with backoff, resumes from its committed position, and loses or repeats nothing.
func TestSourceRestart(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "restart")
	cfg.Tables.Include = []string{"wl.*"}
	cfg.Kafka.FlushRecords = 60
	w := cdctest.NewWorkload(t, m.DB(), 11)
	r := cdctest.StartProducer(t, cfg)
	for round := 0; round < 3; round++ {
		for i := 0; i < 40; i++ {
			w.Step(t)
		}
		w.Bulk(t, 500)
		m.Kill()
		m.Restart(t)
	}
	for i := 0; i < 40; i++ {
		w.Step(t)
	}
	r.CaughtUp(t, m.DB())
	if r.P.Stats().Restarts.Load() == 0 {
		t.Error("the producer never reconnected, so the test proved nothing")
	}
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes exactly once across 3 source crashes (%d reconnects)", n, r.P.Stats().Restarts.Load())
}

// TestKafkaRestart stops the broker under a running producer and brings it back on
// the same port from its data directory: the producer retries with backoff, resumes
// from the committed position, and every change is still there exactly once.
func TestKafkaRestart(t *testing.T) {
	m := testenv.MariaDB(t)
	dataDir := t.TempDir()
	port := testenv.FreePort(t)
	k := testenv.Kafka(t, kfake.DataDir(dataDir), kfake.Ports(port))
	cfg := cdctest.ProducerConfig(m, k, "kafka-restart")
	cfg.Tables.Include = []string{"wl.*"}
	cfg.Kafka.FlushRecords = 60
	cfg.Kafka.TransactionTimeout = 10 * time.Second
	w := cdctest.NewWorkload(t, m.DB(), 21)
	r := cdctest.StartProducer(t, cfg)
	for round := 0; round < 2; round++ {
		for i := 0; i < 40; i++ {
			w.Step(t)
		}
		w.Bulk(t, 400)
		k.Cluster.Close()
		for i := 0; i < 20; i++ { // the source keeps writing while Kafka is down
			w.Step(t)
		}
		k = testenv.Kafka(t, kfake.DataDir(dataDir), kfake.Ports(port))
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes exactly once across 2 broker restarts (%d producer reconnects)", n, r.P.Stats().Restarts.Load())
}

// TestFencing starts a second producer with the same source name while the first
// is writing: the first stops with ErrFenced, the second carries on, and the topics
// still hold every change exactly once.
func TestFencing(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "fence")
	cfg.Tables.Include = []string{"wl.*"}
	cfg.Kafka.FlushRecords = 50
	w := cdctest.NewWorkload(t, m.DB(), 3)
	first := cdctest.StartProducer(t, cfg)
	for i := 0; i < 60; i++ {
		w.Step(t)
	}
	w.Bulk(t, 2000)
	cfg2 := cfg
	cfg2.Source.ServerID = 1002
	second := cdctest.StartProducer(t, cfg2)
	for i := 0; i < 60; i++ {
		w.Step(t)
	}
	if err := first.Wait(t, 60*time.Second); !errors.Is(err, producer.ErrFenced) {
		t.Fatalf("first producer stopped with %v, want ErrFenced", err)
	}
	second.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes exactly once across a takeover", n)
}

// TestPositionPassesExactMultipleTransaction: a transaction whose size is an exact
// multiple of flush_records ends with a mid-transaction commit; the stored position
// must still move past the transaction's end promptly (not at the next heartbeat).
func TestPositionPassesExactMultipleTransaction(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "exact-multiple")
	cfg.Tables.Include = []string{"wl.*"}
	cfg.Kafka.FlushRecords = 100
	cfg.Source.HeartbeatInterval = time.Hour // only the fix can move the position
	w := cdctest.NewWorkload(t, m.DB(), 8)
	r := cdctest.StartProducer(t, cfg)
	w.Bulk(t, 500)
	r.CaughtUp(t, m.DB())
}

// TestRecordMemoryReusedInFlight: with the default flush limits a Kafka
// transaction holds many generations of records, and an acknowledged one's
// memory is reused before the commit. Every record must still arrive as it was
// written: its value, key and headers agree with each other and with the
// source tables, each change exactly once.
func TestRecordMemoryReusedInFlight(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "reuse")
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 23)
	r := cdctest.StartProducer(t, cfg)
	for i := 0; i < 120; i++ {
		w.Step(t)
		if i%40 == 0 {
			w.Bulk(t, 6000)
		}
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	for _, rec := range recs {
		c := rec.Change
		if c == nil {
			continue
		}
		pos := fmt.Sprintf("%s:%d", c.Source.File, c.Source.Pos)
		if rec.Seq != c.Seq || rec.Op != string(c.Op) || rec.Headers[schemas.HeaderPos] != pos {
			t.Fatalf("%s/%d@%d: headers op %q seq %d pos %q, value op %q seq %d pos %q", rec.Topic, rec.Partition, rec.Offset,
				rec.Op, rec.Seq, rec.Headers[schemas.HeaderPos], c.Op, c.Seq, pos)
		}
	}
	t.Logf("%d changes, %d Kafka commits", n, r.P.Stats().Commits.Load())
}

// TestLargeTransactionDoesNotHoldEarlierOnes: complete binlog transactions in the
// open Kafka transaction are committed once a large one after them has been
// written for a while (SetHeldCommitAfter), not after flush_records of it.
func TestLargeTransactionDoesNotHoldEarlierOnes(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "held")
	cfg.Tables.Include = []string{"wl.*"}
	// Neither the interval nor an idle moment commits between the two
	// transactions: both are in the binlog before the producer starts.
	cfg.Kafka.FlushInterval = time.Minute
	cfg.Kafka.FlushIdle = 2 * time.Second
	w := cdctest.NewWorkload(t, m.DB(), 5)
	for i := 0; i < 5; i++ {
		w.Step(t)
	}
	w.Bulk(t, 2000) // well below flush_records (20000)
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	producer.SetHeldCommitAfter(p, 0)
	var mu sync.Mutex
	var inside []int // RowsDone of the positions committed inside a transaction
	producer.SetCommitHook(p, func(pos schemas.Position) {
		mu.Lock()
		defer mu.Unlock()
		if pos.RowsDone > 0 {
			inside = append(inside, pos.RowsDone)
		}
	})
	r := cdctest.StartProducerWith(t, cfg, p)
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	mu.Lock()
	defer mu.Unlock()
	if len(inside) != 1 || inside[0] != 256 {
		t.Fatalf("positions committed inside the large transaction: %v, want one after its 256th change", inside)
	}
}
