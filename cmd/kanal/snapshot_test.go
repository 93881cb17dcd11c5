package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// snapshotConfig writes a configuration for the bf tables: a producer that
// starts at the current position (existing rows arrive only through backfills),
// a Redis copy of both tables and a per-grp summary of bf.items in Postgres.
func snapshotConfig(t *testing.T, m *testenv.MariaDBServer, k *testenv.KafkaCluster, r *testenv.RedisServer, pg *testenv.PostgresServer, start string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanal.yaml")
	cfg := fmt.Sprintf(`source:
  name: bf
  addr: %s
  user: %s
  password: ${KANAL_TEST_DB_PASSWORD}
  server_id: 1001
  start: %s
  snapshot_chunk_size: 200
  heartbeat_interval: 200ms
kafka:
  brokers: [%s]
  partitions: 3
  cleanup_policy: delete
  flush_records: 40
tables:
  include: ["bf.*"]
log:
  level: info
consumers:
  commit_interval: 200ms
  session_timeout: 6s
  metrics_addr: 127.0.0.1:%d
  handlers:
    - handler: redis
      name: bf-redis
      tables: ["bf.*"]
      options:
        instances: {main: {addr: "%s"}}
        key_prefix: "bf:"
        tables: [{match: "bf.*"}]
    - handler: aggregate
      name: bf-summary
      tables: ["bf.items"]
      options:
        target: {driver: postgres, dsn: "%s"}
        summaries:
          - table: bf_grp
            source: bf.items
            group_by: [grp]
            measures: ["count AS n", "sum(amount) AS total"]
`, m.Addr(), m.User, start, strings.Join(k.Brokers, ","), testenv.FreePort(t), r.Addr, pg.DSN) + strings.Join(extra, "")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// redisDiff compares the Redis copy of the bf tables with the source ("" when equal).
func redisDiff(ctx context.Context, t *testing.T, db *sql.DB, addr string) string {
	t.Helper()
	cfg := redissink.DefaultConfig()
	cfg.Name = "check"
	cfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: addr}}
	cfg.KeyPrefix = "bf:"
	cfg.Tables = []redissink.TableConfig{{Match: "bf.*"}}
	rd, err := redissink.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	want := map[string]map[string]string{}
	for _, q := range []struct{ table, key string }{
		{"bf.items", "CONCAT('bf.items:', id)"},
		{"bf.pairs", `CONCAT('bf.pairs:', a, ',', REPLACE(REPLACE(b, '\\', '\\\\'), ',', '\\,'))`},
	} {
		rows, err := db.QueryContext(ctx, "SELECT "+q.key+", t.* FROM "+q.table+" t")
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := map[string]string{}
			for i := 1; i < len(cols); i++ {
				if vals[i] == nil {
					row[cols[i]] = "NULL"
				} else {
					row[cols[i]] = string(vals[i])
				}
			}
			want[string(vals[0])] = row
		}
		rows.Close()
	}
	got := map[string]map[string]string{}
	for key := range want {
		r, ok, err := rd.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		row := map[string]string{}
		for c, v := range r.Values {
			row[c] = v
		}
		for c := range r.Null {
			row[c] = "NULL"
		}
		got[key] = row
	}
	insts, err := rd.Instances("bf.items")
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range insts {
		keys, err := cl.Keys(ctx, "bf:bf.*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if _, ok := want[strings.TrimPrefix(k, "bf:")]; !ok {
				got[strings.TrimPrefix(k, "bf:")] = map[string]string{"extra": "key"}
			}
		}
	}
	return testdiff.Rows(want, got)
}

// summaryDiff compares the bf_grp summary with the source's GROUP BY.
func summaryDiff(ctx context.Context, t *testing.T, db *sql.DB, dsn string) string {
	t.Helper()
	want := map[string]map[string]string{}
	rows, err := db.QueryContext(ctx, "SELECT grp, COUNT(*), SUM(amount) FROM bf.items GROUP BY grp")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g, n, total string
		if err := rows.Scan(&g, &n, &total); err != nil {
			t.Fatal(err)
		}
		want[g] = map[string]string{"n": n, "total": total}
	}
	rows.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	got := map[string]map[string]string{}
	prows, err := conn.Query(ctx, "SELECT grp::text, n::text, total::text FROM bf_grp")
	if err != nil {
		return "summary table not readable: " + err.Error()
	}
	for prows.Next() {
		var g, n, total string
		if err := prows.Scan(&g, &n, &total); err != nil {
			t.Fatal(err)
		}
		got[g] = map[string]string{"n": n, "total": total}
	}
	prows.Close()
	return testdiff.Rows(want, got)
}

// waitTargets waits until Redis and the summary equal the source (the writer
// has stopped), failing with the differences after two minutes.
func waitTargets(t *testing.T, m *testenv.MariaDBServer, r *testenv.RedisServer, pg *testenv.PostgresServer, c *child) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rd, sd := redisDiff(ctx, t, m.DB(), r.Addr), summaryDiff(ctx, t, m.DB(), pg.DSN)
		if rd == "" && sd == "" {
			return
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("kanal consume exited (%v):\n%s", err, c.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets differ from the source after 2 minutes:\nredis:\n%s\nsummary:\n%s\nconsumer log:\n%s", rd, sd, c.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// backfillProgress reads the committed state of the source's backfills.
func backfillProgress(t *testing.T, brokers []string) *schemas.SnapshotState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pos, err := producer.ReadPosition(ctx, &kafkaconn.Config{Brokers: brokers, TopicPrefix: "kanal"}, "bf")
	if err != nil {
		t.Fatal(err)
	}
	if pos == nil {
		return nil
	}
	return pos.Snapshot
}

// rowsDone counts the rows every backfill of st has read.
func rowsDone(st *schemas.SnapshotState) uint64 {
	if st == nil {
		return 0
	}
	var n uint64
	for _, list := range [][]schemas.Backfill{st.Tables, st.Finished} {
		for _, b := range list {
			n += b.Rows
		}
	}
	return n
}

// TestSnapshotCrashExactlyOnce asks a real `kanal produce` for a backfill with
// `kanal snapshot`, and SIGKILLs the producer again and again while it
// backfills and a writer changes the tables: every row is read at most once per
// backfill, none is missing, the topics replay to the tables, and a Redis copy
// and a summary fed by `kanal consume` from the beginning equal the source.
func TestSnapshotCrashExactlyOnce(t *testing.T) { testSnapshotCrashExactlyOnce(t, "current") }

// TestSnapshotCrashExactlyOnceTableWatermark is TestSnapshotCrashExactlyOnce with
// the table watermark (source.snapshot_watermark: table), MySQL's way, on MariaDB.
func TestSnapshotCrashExactlyOnceTableWatermark(t *testing.T) {
	testSnapshotCrashExactlyOnce(t, "current\n  snapshot_watermark: table\n  signal_table: kanal_meta.kanal_watermarks")
}

// testSnapshotCrashExactlyOnce runs the test with start as source.start (and
// any further source settings after it).
func testSnapshotCrashExactlyOnce(t *testing.T, start string) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	rs := testenv.Redis(t)
	pg := testenv.Postgres(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	n := cdctest.SnapshotRows(t)
	cdctest.PreloadBF(t, m.DB(), n)
	cfgPath := snapshotConfig(t, m, k, rs, pg, start)
	rng := rand.New(rand.NewPCG(7, 8))

	p := startKanal(t, env, "produce", "--config", cfgPath)
	kcfg := producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}
	waitCaughtUp(t, m, &kcfg, "bf", p)
	cons := startKanal(t, env, "consume", "--config", cfgPath)
	w := cdctest.StartBFWriter(t, m.DB(), n, 21)
	out, err := kanalRunEnv(t, env, "snapshot", "--config", cfgPath, "--tables", "bf.items,bf.pairs")
	if err != nil {
		t.Fatalf("kanal snapshot: %v\n%s", err, out)
	}

	kills := 0
	for kills < 6 {
		// Kill once this run has committed at least one more chunk.
		before := rowsDone(backfillProgress(t, k.Brokers))
		deadline := time.Now().Add(time.Minute)
		for {
			st := backfillProgress(t, k.Brokers)
			if st != nil && len(st.Tables) == 0 && len(st.Finished) >= 2 {
				break // done
			}
			if rowsDone(st) > before {
				break
			}
			select {
			case err := <-p.done:
				t.Fatalf("kanal produce exited on its own: %v\n%s", err, p.output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no backfill progress within a minute:\n%s", p.output())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if st := backfillProgress(t, k.Brokers); st != nil && len(st.Tables) == 0 {
			break
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		p.done <- nil
		kills++
		p = startKanal(t, env, "produce", "--config", cfgPath)
	}
	if kills < 3 {
		t.Fatalf("the backfill ended after %d SIGKILLs; the test needs at least 3 (more rows: KANAL_SNAPSHOT_ROWS)", kills)
	}
	out, err = kanalRunEnv(t, env, "snapshot", "--config", cfgPath, "--wait", "--timeout", "3m")
	if err == nil || !strings.Contains(out, "--tables is required") {
		t.Errorf("kanal snapshot without --tables: %v\n%s", err, out)
	}
	// Follow the backfills to their end the way a user would.
	out, err = kanalRunEnv(t, env, "snapshot", "status", "--config", cfgPath, "--watch")
	if err != nil {
		t.Fatalf("kanal snapshot status --watch: %v\n%s", err, out)
	}
	st := backfillProgress(t, k.Brokers)
	if len(st.Tables) != 0 || len(st.Finished) != 2 {
		t.Fatalf("backfills after status --watch returned: %+v", st)
	}
	for _, b := range st.Finished {
		if b.State != schemas.BackfillDone || !strings.Contains(out, b.Table) {
			t.Fatalf("backfill %+v (status printed:\n%s)", b, out)
		}
	}
	w.Stop(t)
	waitCaughtUp(t, m, &kcfg, "bf", p)

	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.bf\.`, cdctest.ReadTimeout(n))
	cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckBF(t, m.DB(), recs, true)
	waitTargets(t, m, rs, pg, cons)
	t.Logf("%d SIGKILLs during the backfill of %d rows; %d writer transactions", kills, n, w.Stmts.Load())
	if strings.Contains(start, "signal_table") {
		var marks int
		if err := m.DB().QueryRow("SELECT marks FROM kanal_meta.kanal_watermarks WHERE source_name = 'bf'").Scan(&marks); err != nil || marks == 0 {
			t.Fatalf("the backfill wrote no watermark: %d, %v", marks, err)
		}
		t.Logf("%d watermarks", marks)
	}
}

func kanalRunEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kanalBin, args...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}
