package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// snapshotStage measures a backfill (docs/snapshots.md): a `kanal produce` child
// process that starts at the current position backfills bench.snap
// (SnapshotRows rows of the orders shape, written before it started) into a
// dev-kafka. Per round: the raw scan rate of the same table by the `mariadb`
// client (`--quick`, rows to /dev/null), then the backfill, from request to its
// end as the producer records it, with the child's peak RSS and the latency of
// a live stream (a probe row inserted every 10 ms into bench.probe, stamped,
// until visible to a read_committed consumer) while it runs.
func snapshotStage(ctx context.Context, env *Env) []*Row {
	o := env.Opts
	rows := []*Row{
		{ID: "8", Measure: fmt.Sprintf("backfill of %d existing rows into Kafka by kanal produce (kanal snapshot), rows/s", o.SnapshotRows),
			Unit: "rows/s", Goal: "≥ 150,000 rows/s", RatioOf: "8b", Note: ""},
		{ID: "8b", Measure: "raw scan of the same table: mariadb --quick -e 'SELECT * …' > /dev/null, rows/s", Unit: "rows/s"},
		{ID: "8c", Measure: "kanal produce peak RSS during the backfill (VmHWM)", Unit: "MiB", Goal: "≤ 256 MiB (max of runs)"},
		{ID: "8d", Measure: "live stream during the backfill: insert → visible to a read_committed consumer, p99", Unit: "ms"},
		{ID: "8e", Measure: "kanal produce CPU (user+system) per backfilled row, from the request to the end", Unit: "µs/row"},
	}
	fail := func(err error) []*Row {
		for _, r := range rows {
			setStatus(r, err)
		}
		return rows
	}
	db := env.MariaDB.DB()
	env.logf("backfill: writing %d rows into bench.snap", o.SnapshotRows)
	for _, q := range []string{"DROP TABLE IF EXISTS bench.snap", strings.Replace(ordersDDL, "bench.orders", "bench.snap", 1),
		"DROP TABLE IF EXISTS bench.probe", "CREATE TABLE bench.probe (id BIGINT NOT NULL PRIMARY KEY, stamp_us BIGINT NOT NULL)",
		fmt.Sprintf(`INSERT INTO bench.snap (id,customer_id,sku,status,amount,qty,created_at,note,stamp_us)
SELECT seq, seq %% 5000000, CONCAT('SKU-', seq, '-größe'), ELT(1 + seq %% 4, 'new','paid','shipped','cancelled'),
  (seq %% 10000000) / 100, 1 + seq %% 20, TIMESTAMP('2024-01-01 00:00:00.000000') + INTERVAL seq * 1237 MICROSECOND,
  ELT(1 + seq %% 4, 'deliver to the back door', 'Grüße aus Köln — 価格 確認済み 🚚 📦', NULL, 'gift wrap please, call before arrival'),
  seq
FROM bench.seq_1_to_%d`, o.SnapshotRows)} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fail(fmt.Errorf("%.60s: %w", q, err))
		}
	}
	var snap, raw, ratio, rss, p99, cpu, broker, server []float64
	var note string
	for run := range o.Runs {
		env.logf("backfill %d/%d: raw scan, then kanal snapshot of bench.snap", run+1, o.Runs)
		rawRate, err := rawScan(ctx, env)
		if err != nil {
			return fail(err)
		}
		res, err := measureBackfill(ctx, env, run)
		if err != nil {
			return fail(err)
		}
		env.logf("backfill %d/%d: %.0f rows/s, %.2f× the raw scan's %.0f rows/s, CPU µs/row %.2f (dev-kafka %.2f, mariadbd %.2f), peak RSS %.1f MiB, live p99 %.0f ms",
			run+1, o.Runs, res.rate, res.rate/rawRate, rawRate, res.cpuPerRow, res.brokerPerRow, res.serverPerRow, res.rssMiB, res.p99)
		snap, raw, ratio = append(snap, res.rate), append(raw, rawRate), append(ratio, res.rate/rawRate)
		rss, p99, cpu = append(rss, res.rssMiB), append(p99, res.p99), append(cpu, res.cpuPerRow)
		broker, server = append(broker, res.brokerPerRow), append(server, res.serverPerRow)
		note = res.note
	}
	rows[0].Value, rows[0].Ratio = spreadOf(snap), spreadOf(ratio)
	rows[0].Status = goalStatus(rows[0].Value.Median >= 150_000 && rows[0].Ratio.Median >= 0.5)
	rows[0].Goal = "≥ 150,000 rows/s and ≥ 0.5× the raw scan (medians)"
	rows[0].Note = note
	rows[1].Value = spreadOf(raw)
	rows[2].Value = spreadOf(rss)
	rows[2].Status = goalStatus(rows[2].Value.Max <= 256)
	rows[3].Value = spreadOf(p99)
	rows[4].Value = spreadOf(cpu)
	rows[4].Note = fmt.Sprintf("meanwhile dev-kafka %.2f and mariadbd %.2f µs CPU per row (medians; the raw scan needs only mariadbd and the client)",
		spreadOf(broker).Median, spreadOf(server).Median)
	return rows
}

// rawScan times the mariadb client streaming the table to /dev/null.
func rawScan(ctx context.Context, env *Env) (float64, error) {
	m := env.MariaDB
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	client, err := exec.LookPath("mariadb")
	if err != nil {
		return 0, fmt.Errorf("the mariadb client is needed for the raw scan: %w", err)
	}
	cmd := exec.CommandContext(ctx, client, "--no-defaults", "--quick", "--batch", "--skip-column-names",
		"--protocol=tcp", "-h", m.Host, "-P", fmt.Sprint(m.Port), "-u", m.User, "-e", "SELECT * FROM bench.snap")
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+m.Password)
	cmd.Stdout = null
	var stderr strings.Builder
	cmd.Stderr = &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("mariadb --quick: %v: %s", err, stderr.String())
	}
	return float64(env.Opts.SnapshotRows) / time.Since(began).Seconds(), nil
}

type backfillResult struct {
	rate, rssMiB, p99, cpuPerRow float64
	// brokerPerRow and serverPerRow: dev-kafka's and mariadbd's CPU per row
	// meanwhile (the raw scan needs only the server and the client).
	brokerPerRow, serverPerRow float64
	note                       string
}

func measureBackfill(ctx context.Context, env *Env, run int) (*backfillResult, error) {
	o := env.Opts
	k, err := env.startKafka(ctx)
	if err != nil {
		return nil, err
	}
	defer k.stop()
	m := env.MariaDB
	source := fmt.Sprintf("benchsnap%d", run)
	cfgPath := filepath.Join(env.tmp, fmt.Sprintf("snap-%d.yaml", run))
	yaml := fmt.Sprintf(`source:
  name: %s
  addr: %s
  user: %s
  password: %s
  server_id: %d
  start: current
kafka:
  brokers: [%q]
  cleanup_policy: delete
tables:
  include: ["bench.snap", "bench.probe"]
log:
  level: info
`, source, m.Addr(), m.User, m.Password, 7000+run, k.Addr)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(env.tmp, fmt.Sprintf("snap-produce-%d.log", run))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(o.KanalBin, "produce", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	hwm := watchHWM(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		hwm.stop()
		exited <- err
	}()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	logTail := func() string { b, _ := os.ReadFile(logPath); return tail(string(b)) }
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "starting at the current binlog position") {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			return nil, fmt.Errorf("kanal produce exited (%v): %s", err, logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kanal produce not started after 30s: %s", logTail())
		}
	}
	brokers := []string{k.Addr}
	probeTopic := schemas.TopicName("kanal", "bench", "probe")
	if err := createTopic(ctx, brokers, probeTopic, 6, "delete"); err != nil {
		return nil, err
	}

	// The live stream: probe rows while the backfill runs.
	pctx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	var mu sync.Mutex
	var lat []float64
	var wg sync.WaitGroup
	probeErr := make(chan error, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(probeTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for pctx.Err() == nil {
			fs := cl.PollFetches(pctx)
			now := time.Now().UnixMicro()
			fs.EachRecord(func(r *kgo.Record) {
				c, err := schemas.Decode("json", r.Value)
				if err != nil || len(c) != 1 {
					return
				}
				if stamp, ok := c[0].After["stamp_us"].(int64); ok {
					mu.Lock()
					lat = append(lat, float64(now-stamp)/1000)
					mu.Unlock()
				}
			})
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for id := int64(1); ; id++ {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
			if _, err := env.MariaDB.DB().ExecContext(pctx, "INSERT INTO bench.probe VALUES (?, ?)", id+int64(run)<<40, time.Now().UnixMicro()); err != nil {
				if pctx.Err() == nil {
					probeErr <- fmt.Errorf("probe insert: %w", err)
				}
				return
			}
		}
	}()

	kcfg := producer.DefaultConfig().Kafka
	kcfg.Brokers = brokers
	sig := schemas.Signal{ID: fmt.Sprintf("bench-%d", run), Source: source, Action: schemas.SignalSnapshot, Tables: []string{"bench.snap"}, By: "kanal-bench"}
	began, cpu0 := time.Now(), procCPU(cmd.Process.Pid)
	broker0, server0 := procCPU(k.cmd.Process.Pid), procCPU(m.Pid())
	if err := producer.SendSignal(ctx, &kcfg.Config, sig); err != nil {
		return nil, err
	}
	var done *schemas.Backfill
	for deadline := time.Now().Add(15 * time.Minute); done == nil; {
		pos, err := producer.ReadPosition(ctx, &kcfg.Config, source)
		if err == nil && pos != nil && pos.Snapshot != nil {
			for i := range pos.Snapshot.Finished {
				if b := &pos.Snapshot.Finished[i]; b.ID == sig.ID {
					done = b
				}
			}
		}
		select {
		case err := <-exited:
			stopped = true
			return nil, fmt.Errorf("kanal produce exited (%v): %s", err, logTail())
		case err := <-probeErr:
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("backfill not done within 15 minutes")
		}
	}
	wall, cpu := time.Since(began), procCPU(cmd.Process.Pid)-cpu0
	broker, server := procCPU(k.cmd.Process.Pid)-broker0, procCPU(m.Pid())-server0
	stopProbe()
	wg.Wait()
	if done.State != schemas.BackfillDone {
		return nil, fmt.Errorf("backfill ended %s: %s", done.State, done.Error)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	stopped = true
	secs := float64(done.FinishedMs-done.StartedMs) / 1000
	res := &backfillResult{rate: float64(done.Rows) / secs, rssMiB: float64(hwm.peak()) / 1024,
		cpuPerRow: cpu.Seconds() * 1e6 / float64(max(done.Rows, 1)), brokerPerRow: broker.Seconds() * 1e6 / float64(max(done.Rows, 1)),
		serverPerRow: server.Seconds() * 1e6 / float64(max(done.Rows, 1))}
	mu.Lock()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p99 = lat[min(len(lat)-1, int(0.99*float64(len(lat))))]
	}
	n := len(lat)
	mu.Unlock()
	res.note = fmt.Sprintf("%d rows in %d chunks: %.1fs from the backfill's start to its end (%.1fs from the request); %d probe rows during it (last run)",
		done.Rows, done.Chunks, secs, wall.Seconds(), n)
	return res, nil
}
