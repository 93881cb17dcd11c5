package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

const mirrorDDL = `CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(14,2), data bytea, ts timestamp(6),
	cnt bigint, grp int NOT NULL, _kanal_version bigint NOT NULL DEFAULT 0)`

// mirrorDiff compares the Postgres mirror of bf.items with the source.
func mirrorDiff(ctx context.Context, t *testing.T, m *testenv.MariaDBServer, dsn string) string {
	t.Helper()
	want := cdctest.SourceRows(t, m.DB(), "bf.items", func(r map[string]string) string { return r["id"] }, "data")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id::text, name, amount::text, '0x' || encode(data, 'hex'),
		to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), cnt::text, grp::text FROM items`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	got := map[string]map[string]string{}
	for rows.Next() {
		vals := make([]*string, 7)
		dest := make([]any, 7)
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range []string{"id", "name", "amount", "data", "ts", "cnt", "grp"} {
			if vals[i] == nil {
				row[c] = "NULL"
			} else {
				row[c] = *vals[i]
			}
		}
		got[row["id"]] = row
	}
	return testdiff.Rows(want, got)
}

var mismatchLine = regexp.MustCompile(`(?m)^  (missing|differs|extra|group)\s+(\S+)`)

// runVerify runs kanal verify and returns its output, exit code and the
// differences it listed ("kind key", sorted).
func runVerify(t *testing.T, env []string, args ...string) (string, int, []string) {
	t.Helper()
	began := time.Now()
	defer func() {
		t.Logf("kanal verify %v took %v", args[len(args)-1], time.Since(began).Round(time.Millisecond))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kanalBin, append([]string{"verify"}, args...)...)
	cmd.Env = append(cmd.Environ(), env...)
	b, err := cmd.CombinedOutput()
	out := string(b)
	if ctx.Err() != nil {
		t.Fatalf("kanal verify %v did not end within 3 minutes:\n%s", args, out)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range mismatchLine.FindAllStringSubmatch(out, -1) {
		found = append(found, m[1]+" "+m[2])
	}
	sort.Strings(found)
	return out, code, found
}

// TestVerifyAndRepair: after `source.start: snapshot` brought the existing rows
// to a Redis copy, a Postgres mirror and a summary, the test corrupts them behind
// the pipeline's back while a writer keeps changing the source. `kanal verify`
// lists exactly the corrupted keys and summary rows (exit 3), and --repair makes
// every target equal to the source again.
func TestVerifyAndRepair(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	rs := testenv.Redis(t)
	pg := testenv.Postgres(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	const n = 3000
	cdctest.PreloadBF(t, m.DB(), n)
	// Rows the writer never touches (it works on ids up to 1.2n): these get
	// corrupted. Group 100 is theirs alone.
	m.Exec(t, `INSERT INTO bf.items VALUES (1000001, 'q1', 1.00, X'01', '2024-01-01 00:00:00', 1, 6),
		(1000002, 'q2', 2.00, X'02', '2024-01-01 00:00:00', 2, 6), (1000003, 'q3', 3.00, NULL, '2024-01-01 00:00:00', 3, 6),
		(1000004, 'q4', 4.00, X'', '2024-01-01 00:00:00', 4, 6), (1000005, 'q5', 5.00, X'05', '2024-01-01 00:00:00', 5, 100),
		(1000006, 'q6', 6.00, X'06', '2024-01-01 00:00:00', 6, 100)`)
	ctx := context.Background()
	pgc, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pgc.Close(ctx)
	if _, err := pgc.Exec(ctx, mirrorDDL); err != nil {
		t.Fatal(err)
	}
	cfgPath := snapshotConfig(t, m, k, rs, pg, "snapshot", fmt.Sprintf(`    - handler: sqlmirror
      name: bf-mirror
      tables: ["bf.items"]
      options: {dialect: postgres, dsn: "%s"}
`, pg.DSN))
	// Before the producer's first position, the status says the initial
	// snapshot is coming (a watcher started with the producer waits for it).
	if out, err := kanalRunEnv(t, env, "snapshot", "status", "--config", cfgPath); err != nil || !strings.Contains(out, "waiting for the producer") {
		t.Fatalf("snapshot status before the producer started: %v\n%s", err, out)
	}
	p := startKanal(t, env, "produce", "--config", cfgPath)
	cons := startKanal(t, env, "consume", "--config", cfgPath)
	out, err := kanalRunEnv(t, env, "snapshot", "status", "--config", cfgPath, "--watch")
	if err != nil {
		t.Fatalf("initial snapshot: %v\n%s\n%s", err, out, p.output())
	}
	if st := backfillProgress(t, k.Brokers); st == nil || len(st.Tables) != 0 || len(st.Finished) != 2 {
		t.Fatalf("snapshot status --watch returned before the initial snapshot ended: %+v\n%s", st, out)
	}
	for _, table := range []string{"bf.items", "bf.pairs"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(table) + ` +done `).MatchString(out) {
			t.Fatalf("snapshot status --watch did not show %s done:\n%s", table, out)
		}
	}
	t.Logf("initial snapshot done:\n%s", out)
	waitTargets(t, m, rs, pg, cons)
	t.Logf("targets equal")
	deadline := time.Now().Add(time.Minute)
	for d := mirrorDiff(ctx, t, m, pg.DSN); d != ""; d = mirrorDiff(ctx, t, m, pg.DSN) {
		if time.Now().After(deadline) {
			t.Fatalf("mirror differs from the source:\n%s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}

	w := cdctest.StartBFWriter(t, m.DB(), n, 31)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rc.Close()
	for _, cmd := range [][]any{
		{"HSET", "bf:bf.items:1000001", "name", "corrupt"},
		{"DEL", "bf:bf.items:1000002"},
		{"HSET", "bf:bf.items:9999999", "id", "9999999", "__v", "1"},
	} {
		if err := rc.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		"UPDATE items SET amount = amount + 1 WHERE id = 1000003",
		"DELETE FROM items WHERE id = 1000004",
		"INSERT INTO items (id, grp, _kanal_version) VALUES (9999998, 1, 1)",
		"UPDATE bf_grp SET total = total + 100 WHERE grp = 6",
		"DELETE FROM bf_grp WHERE grp = 100",
	} {
		if _, err := pgc.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	for _, tc := range []struct {
		handler string
		want    []string
	}{
		{"bf-redis", []string{"differs bf.items:1000001", "extra bf.items:9999999", "missing bf.items:1000002"}},
		{"bf-mirror", []string{"differs bf.items:1000003", "extra bf.items:9999998", "missing bf.items:1000004"}},
		{"bf-summary", []string{"group 6", "group 0x"}},
	} {
		out, code, found := runVerify(t, env, "--config", cfgPath, "--handler", tc.handler)
		if code != 3 {
			t.Fatalf("verify %s: exit %d, want 3:\n%s", tc.handler, code, out)
		}
		if tc.handler == "bf-summary" {
			// The group without a summary row is named by its hash.
			for i, f := range found {
				if strings.HasPrefix(f, "group 0x") {
					found[i] = "group 0x"
				}
			}
			sort.Strings(tc.want)
		}
		if strings.Join(found, "; ") != strings.Join(tc.want, "; ") {
			t.Fatalf("verify %s listed %v, want exactly %v:\n%s", tc.handler, found, tc.want, out)
		}
		t.Logf("verify %s:\n%s", tc.handler, out)
		out, code, _ = runVerify(t, env, "--config", cfgPath, "--handler", tc.handler, "--repair")
		if code != 0 || !strings.Contains(out, "after the repair:") || !strings.HasSuffix(strings.TrimSpace(out), "OK: the target equals the source") {
			t.Fatalf("verify --repair %s: exit %d:\n%s", tc.handler, code, out)
		}
	}
	if out, code, _ := runVerify(t, env, "--config", cfgPath, "--handler", "no-such"); code != 2 || !strings.Contains(out, "no-such") {
		t.Errorf("verify of an unknown handler: exit %d\n%s", code, out)
	}
	w.Stop(t)
	waitTargets(t, m, rs, pg, cons)
	if d := mirrorDiff(ctx, t, m, pg.DSN); d != "" {
		t.Errorf("mirror differs from the source after the repair:\n%s", d)
	}
	if out, code, found := runVerify(t, env, "--config", cfgPath, "--handler", "bf-summary"); code != 0 {
		t.Errorf("verify after the repair: exit %d, %v\n%s", code, found, out)
	}
}
