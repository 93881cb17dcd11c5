package producer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// testSignalTable is the watermark table of the table-watermark tests.
const testSignalTable = "kanal_meta.kanal_watermarks"

// useTableWatermark makes cfg's backfills use the table watermark (MySQL's
// way) on the tests' MariaDB, which would otherwise use its snapshot position.
func useTableWatermark(cfg *producer.Config) {
	cfg.Source.SnapshotWatermark = "table"
	cfg.Source.SignalTable = testSignalTable
}

// chunks is how many chunks the finished backfills of st emitted.
func chunks(st *schemas.SnapshotState) int {
	n := 0
	for _, b := range st.Finished {
		n += int(b.Chunks)
	}
	return n
}

// checkWatermarks checks that the source of cfg wrote at least n watermarks:
// the backfill really went through the table.
func checkWatermarks(t *testing.T, m *testenv.MariaDBServer, cfg producer.Config, n int) {
	t.Helper()
	var marks int
	if err := m.DB().QueryRow("SELECT marks FROM "+testSignalTable+" WHERE source_name = ?", cfg.Source.Name).Scan(&marks); err != nil {
		t.Fatalf("the watermark row of %s: %v", cfg.Source.Name, err)
	}
	if marks < n {
		t.Fatalf("%d watermarks written for %d chunks", marks, n)
	}
	t.Logf("%d watermarks for %d chunks", marks, n)
}

// TestSnapshotTableWatermarkNeverCaptured: with every table captured (no
// tables.include), the watermark table's rows and DDL reach no topic, and a
// backfill of it is refused as not captured.
func TestSnapshotTableWatermarkNeverCaptured(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cdctest.PreloadBF(t, m.DB(), 1500)
	cfg := cdctest.ProducerConfig(m, k, "hidden")
	cfg.Source.Start = "current"
	useTableWatermark(&cfg)
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := producer.CheckSnapshotRequest(ctx, &cfg, nil, []string{testSignalTable}, ""); !errors.Is(err, producer.ErrSnapshotRequest) ||
		!strings.Contains(err.Error(), "not captured") {
		t.Errorf("a backfill of the watermark table: %v, want refused as not captured", err)
	}
	if _, err := producer.CheckSnapshotRequest(ctx, &cfg, nil, []string{"kanal_meta.*"}, ""); err == nil {
		t.Error("the pattern kanal_meta.* matched the watermark table")
	}
	requestSnapshot(t, cfg, schemas.Signal{Tables: []string{"bf.items"}, ChunkSize: 100})
	w := cdctest.StartBFWriter(t, m.DB(), 1500, 3)
	st := waitSnapshots(t, r, 1, 2*time.Minute)
	w.Stop(t)
	r.CaughtUp(t, m.DB())
	if b := finished(t, st, "bf.items"); b.State != schemas.BackfillDone {
		t.Fatalf("backfill: %+v", b)
	}
	checkWatermarks(t, m, cfg, chunks(st)+1)

	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.(_schema_changes|[^_].*)$`, time.Minute)
	reads := 0
	for _, rec := range recs {
		if strings.Contains(rec.Topic, "kanal_meta") || strings.Contains(rec.Key, "kanal_watermarks") || strings.Contains(string(rec.Value), "kanal_watermarks") {
			t.Fatalf("the watermark table reached Kafka: topic %s key %s", rec.Topic, rec.Key)
		}
		if rec.Op == "r" {
			reads++
		}
	}
	if reads == 0 {
		t.Fatal("no reads in the topics: the test checked nothing")
	}
	cdctest.CheckBF(t, m.DB(), onlyTopic(recs, "kanal.bf.items"), false)
}

func onlyTopic(recs []cdctest.Record, topic string) []cdctest.Record {
	var out []cdctest.Record
	for _, rec := range recs {
		if rec.Topic == topic {
			out = append(out, rec)
		}
	}
	return out
}

// TestSnapshotTableWatermarkPrivileges: a user that may not create the
// watermark table, or may not write it, stops the producer at start with an
// error that names the table, the privilege and the GRANT.
func TestSnapshotTableWatermarkPrivileges(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE kanal_meta")
	for _, host := range []string{"%", "127.0.0.1"} {
		acct := "'wmuser'@'" + host + "'"
		m.Exec(t, "CREATE USER "+acct+" IDENTIFIED BY 'wm-pass'")
		m.Exec(t, "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO "+acct)
		m.Exec(t, "GRANT SELECT ON kanal_meta.* TO "+acct)
	}
	cfg := cdctest.ProducerConfig(m, k, "wmpriv")
	cfg.Source.User, cfg.Source.Password = "wmuser", "wm-pass"
	cfg.Source.Start = "current"
	useTableWatermark(&cfg)
	run := func(want ...string) {
		t.Helper()
		p, err := producer.New(cfg, cdctest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = p.Run(ctx)
		if !errors.Is(err, producer.ErrServerConfig) {
			t.Fatalf("producer: %v, want a configuration error", err)
		}
		for _, w := range append(want, testSignalTable, "GRANT SELECT, INSERT, UPDATE, CREATE ON `kanal_meta`.* TO 'wmuser'@") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the error does not say %q: %v", w, err)
			}
		}
		t.Log(err)
	}
	// No table, no CREATE.
	run("lacks CREATE")
	// The table exists; no INSERT or UPDATE.
	m.Exec(t, "CREATE TABLE "+testSignalTable+" (source_name VARCHAR(200) CHARACTER SET ascii PRIMARY KEY, marks BIGINT UNSIGNED NOT NULL, updated_at DATETIME(6) NOT NULL)")
	run("lacks INSERT and UPDATE")
}
