package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// binlogs returns the server's binlog files and sizes, oldest first.
func binlogs(t *testing.T, db *sql.DB) (names []string, sizes []int64) {
	t.Helper()
	rows, err := db.Query("SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		var name string
		var size int64
		vals := []any{&name, &size}
		for len(vals) < len(cols) {
			vals = append(vals, new(sql.RawBytes))
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		names, sizes = append(names, name), append(sizes, size)
	}
	return names, sizes
}

// committedRecords reads every committed record of the topics; keyed by topic.
func committedRecords(t *testing.T, brokers []string, topics ...string) map[string][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]map[int32]kgo.Offset{}
	want := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			if parts[o.Topic] == nil {
				parts[o.Topic] = map[int32]kgo.Offset{}
			}
			parts[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
			want[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
		}
	})
	out := map[string][]*kgo.Record{}
	if len(want) == 0 {
		return out
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %v: timed out", topics)
		}
		fs.EachRecord(func(r *kgo.Record) {
			tp := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			if r.Offset >= want[tp]-1 {
				delete(want, tp)
			}
			if !r.Attrs.IsControl() {
				out[r.Topic] = append(out[r.Topic], r)
			}
		})
	}
	return out
}

// TestProduceMetrics runs `kanal produce` with its admin endpoint, makes a
// known set of changes, and checks /metrics against them and against what is
// in Kafka: changes, bytes, transactions, commit latencies, the committed
// position, bytes behind, the retention margin, and a lag that stays small
// while the source is idle.
func TestProduceMetrics(t *testing.T) {
	m := testenv.MariaDB(t)
	// No compaction: every position record stays, one per Kafka transaction.
	k := testenv.Kafka(t, kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "3600000"}))
	db := m.DB()
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.m (id INT PRIMARY KEY, v VARCHAR(20))")
	m.Exec(t, "FLUSH BINARY LOGS")
	m.Exec(t, "FLUSH BINARY LOGS")
	// Heartbeats off: once caught up, the producer commits nothing more, so a
	// scrape and a read of the topics see the same transactions.
	cfgPath := writeConfig(t, m, k.Brokers, "metrics", `admin:
  listen: 127.0.0.1:0
  poll_interval: 200ms
`)
	cfgText := strings.Replace(mustReadFile(t, cfgPath), "heartbeat_interval: 200ms", "heartbeat_interval: 0s", 1)
	rewriteFile(t, cfgPath, cfgText)
	c := startKanal(t, []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}, "produce", "--config", cfgPath)
	addr := c.adminAddr(t)

	// 100 inserts in one statement, 30 updates, 10 deletes: 140 changes.
	var vals []string
	for i := 1; i <= 100; i++ {
		vals = append(vals, fmt.Sprintf("(%d,'v%d')", i, i))
	}
	m.Exec(t, "INSERT INTO wl.m VALUES "+strings.Join(vals, ","))
	m.Exec(t, "UPDATE wl.m SET v = CONCAT(v, '!') WHERE id <= 30")
	m.Exec(t, "DELETE FROM wl.m WHERE id > 90")
	const wantChanges = 140
	waitCaughtUp(t, m, &producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}, "metrics", c)
	lastEvent := time.Now()

	// Wait until the source has been idle for a while: an honest lag stays
	// near zero although the last binlog event keeps getting older.
	var ms metricSet
	for {
		ms = scrape(t, addr)
		if time.Since(lastEvent) > 4*time.Second && ms["kanal_producer_binlog_bytes_behind"] == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lag := ms.get(t, "kanal_producer_source_lag_seconds"); lag > time.Since(lastEvent).Seconds()-1 {
		t.Errorf("source lag %.1fs while the source is idle and read to its end (last change %.1fs ago): it should not grow with idleness",
			lag, time.Since(lastEvent).Seconds())
	}

	// Every topic the producer writes in its transactions.
	topics := []string{schemas.TopicName("kanal", "wl", "m"), schemas.PositionsTopic("kanal"), schemas.HeartbeatsTopic("kanal"),
		schemas.SchemaChangesTopic("kanal"), schemas.SchemasTopic("kanal")}
	recs := committedRecords(t, k.Brokers, topics...)
	var bytes int
	changes, positions := 0, 0
	var last schemas.Position
	for topic, rs := range recs {
		for _, r := range rs {
			if topic == schemas.PositionsTopic("kanal") && string(r.Key) != "metrics" {
				continue
			}
			bytes += len(r.Key) + len(r.Value)
			switch {
			case topic == schemas.PositionsTopic("kanal"):
				positions++
				p, err := schemas.DecodePosition(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				last = p
			case topic == schemas.TopicName("kanal", "wl", "m") && r.Value != nil:
				changes++
			}
		}
	}
	if changes != wantChanges {
		t.Fatalf("the topic holds %d changes, want %d", changes, wantChanges)
	}
	names, sizes := binlogs(t, db)
	var older int64
	for _, s := range sizes[:len(sizes)-1] {
		older += s
	}
	fileNo, _ := strconv.Atoi(last.File[strings.LastIndexByte(last.File, '.')+1:])
	for _, want := range []struct {
		key  string
		want float64
	}{
		{"kanal_producer_changes_total", wantChanges},
		{"kanal_producer_bytes_total", float64(bytes)},
		{"kanal_producer_kafka_transactions_total", float64(positions)},
		{"kanal_producer_commit_seconds_count", float64(positions)},
		{"kanal_producer_committed_seq", float64(last.Seq)},
		{"kanal_producer_committed_file_number", float64(fileNo)},
		{"kanal_producer_committed_position_bytes", float64(last.Pos)},
		{"kanal_producer_binlog_bytes_behind", 0},
		{"kanal_binlog_files", float64(len(names))},
		{"kanal_binlog_retention_margin_files", float64(len(names) - 1)},
		{"kanal_binlog_retention_margin_bytes", float64(older)},
		{"kanal_producer_role{role=active}", 1},
		{"kanal_producer_role{role=standby}", 0},
		{"kanal_producer_streaming", 1},
		{"kanal_producer_reconnects_total", 0},
		{"kanal_producer_fenced_total", 0},
		{"kanal_producer_heartbeats_total", 0},
		{"kanal_producer_invalid_text_total", 0},
		{"kanal_producer_oversize_skipped_total", 0},
		{"kanal_producer_leadership_changes_total{kind=acquired}", 1},
	} {
		if got := ms.get(t, want.key); got != want.want {
			t.Errorf("%s = %v, want %v", want.key, got, want.want)
		}
	}
	if last.Seq != wantChanges {
		t.Errorf("last committed seq %d, want %d", last.Seq, wantChanges)
	}
	if ms.get(t, "kanal_producer_binlog_transactions_total") < 3 {
		t.Errorf("kanal_producer_binlog_transactions_total = %v, want at least the 3 of the test", ms["kanal_producer_binlog_transactions_total"])
	}
	if got := ms.get(t, "kanal_producer_binlog_bytes_read_total"); got <= 0 {
		t.Errorf("kanal_producer_binlog_bytes_read_total = %v", got)
	}
	resp, err := httpClient.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz answered %d", resp.StatusCode)
	}
	t.Logf("%d changes, %d bytes in %d Kafka transactions; %d binlog files", changes, bytes, positions, len(names))
}

// TestRetentionGuard: with the committed position in the oldest binlog file
// left on the server, the producer warns (log and
// kanal_binlog_retention_margin_files 0) and still resumes without loss; once
// that file is purged too, it stops with BinlogPurgedError.
func TestRetentionGuard(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	kcfg := &producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.r (id INT PRIMARY KEY)")
	m.Exec(t, "FLUSH BINARY LOGS")
	// A poll interval longer than the test: the guard's gauge keeps what it
	// saw when the producer started.
	cfgPath := writeConfig(t, m, k.Brokers, "guard", `admin:
  listen: 127.0.0.1:0
  poll_interval: 1h
`)
	stop := func(c *child) {
		t.Helper()
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-c.done; err != nil {
			t.Fatalf("kanal produce did not stop cleanly: %v\n%s", err, c.output())
		}
		c.done <- nil
	}
	c := startKanal(t, env, "produce", "--config", cfgPath)
	m.Exec(t, "INSERT INTO wl.r VALUES (1)")
	waitCaughtUp(t, m, kcfg, "guard", c)
	stop(c)
	pos, err := producer.ReadPosition(context.Background(), &kcfg.Config, "guard")
	if err != nil || pos == nil {
		t.Fatalf("committed position: %v %v", pos, err)
	}
	for i := 2; i <= 3; i++ {
		m.Exec(t, fmt.Sprintf("INSERT INTO wl.r VALUES (%d)", i))
		m.Exec(t, "FLUSH BINARY LOGS")
	}
	purgeTo(t, m, pos.File)

	c = startKanal(t, env, "produce", "--config", cfgPath)
	addr := c.adminAddr(t)
	var ms metricSet
	for deadline := time.Now().Add(time.Minute); ; {
		ms = scrape(t, addr)
		if _, ok := ms["kanal_binlog_retention_margin_files"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retention margin within a minute:%s\n%s", ms, c.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := ms.get(t, "kanal_binlog_retention_margin_files"); got != 0 {
		t.Errorf("kanal_binlog_retention_margin_files = %v, want 0 (the position is in the oldest binlog)", got)
	}
	if got := ms.get(t, "kanal_binlog_retention_margin_bytes"); got != 0 {
		t.Errorf("kanal_binlog_retention_margin_bytes = %v, want 0", got)
	}
	waitCaughtUp(t, m, kcfg, "guard", c)
	if out := c.output(); !strings.Contains(out, "binlog retention: the committed position is in one of the oldest binlog files") ||
		!strings.Contains(out, "oldest_binlog="+pos.File) {
		t.Errorf("no retention warning naming %s in the log:\n%s", pos.File, out)
	}
	stop(c)
	recs := committedRecords(t, k.Brokers, schemas.TopicName("kanal", "wl", "r"))
	if n := len(recs[schemas.TopicName("kanal", "wl", "r")]); n != 3 {
		t.Errorf("%d changes in the topic, want 3", n)
	}

	// Past the position: the file it is in is gone.
	pos, _ = producer.ReadPosition(context.Background(), &kcfg.Config, "guard")
	m.Exec(t, "INSERT INTO wl.r VALUES (4)")
	m.Exec(t, "FLUSH BINARY LOGS")
	names, _ := binlogs(t, m.DB())
	purgeTo(t, m, names[len(names)-1])
	c = startKanal(t, env, "produce", "--config", cfgPath)
	select {
	case err := <-c.done:
		c.done <- nil
		out := c.output()
		if err == nil || !strings.Contains(out, "is no longer on the server") || !strings.Contains(out, pos.File) {
			t.Errorf("want an exit with BinlogPurgedError naming %s, got %v:\n%s", pos.File, err, out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("kanal produce still running a minute after its position was purged:\n%s", c.output())
	}
}

// purgeTo purges the binlogs before file. MariaDB keeps a file while InnoDB
// may still need it for crash recovery (until its binlog checkpoint moves on),
// so the purge is repeated until the file is the oldest.
func purgeTo(t *testing.T, m *testenv.MariaDBServer, file string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		m.Exec(t, "PURGE BINARY LOGS TO '"+file+"'")
		names, _ := binlogs(t, m.DB())
		if names[0] == file {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("binlogs after PURGE BINARY LOGS TO '%s': %v", file, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func rewriteFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
