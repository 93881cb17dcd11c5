package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kanal-cdc/kanal/producer"
)

// rssStage runs `kanal produce` as a child process, writes one transaction of
// BigTxnRows rows, waits until the producer has committed a position past it, stops
// the producer and reads its peak RSS: the high-water mark of the child's own address
// space (VmHWM in /proc/<pid>/status), polled until it exits.
//
// Not getrusage's ru_maxrss: Go starts children with vfork (CLONE_VM), so at exec
// the kernel folds the high-water mark of the address space being left — this bench
// process's, grown by the in-process stages before — into the child's ru_maxrss
// (fs/exec.c, setmax_mm_hiwater_rss). After the quick stages that made the child
// "peak" at the parent's ~250 MiB in every run, whatever the producer did.
func rssStage(ctx context.Context, env *Env) *Row {
	o := env.Opts
	row := &Row{ID: "6", Measure: fmt.Sprintf("kanal produce peak RSS streaming one %d-row transaction (child process, VmHWM)", o.BigTxnRows),
		Unit: "MiB", Goal: "≤ 256 MiB"}
	// Peak RSS depends on how far the client's buffer fills while the broker is slow
	// and on GC pacing, so it is taken Runs times and the goal applies to the worst.
	var vals []float64
	for run := range o.Runs {
		env.logf("peak RSS %d/%d: one %d-row transaction", run+1, o.Runs, o.BigTxnRows)
		mib, note, err := measureRSS(ctx, env, run)
		if err != nil {
			setStatus(row, err)
			return row
		}
		vals = append(vals, mib)
		row.Note = note
	}
	row.Value = spreadOf(vals)
	row.Status = goalStatus(row.Value.Max <= 256)
	row.Goal = "≤ 256 MiB (max of runs)"
	return row
}

func measureRSS(ctx context.Context, env *Env, run int) (float64, string, error) {
	o := env.Opts
	db := env.MariaDB.DB()
	for _, q := range []string{"DROP TABLE IF EXISTS bench.big", strings.Replace(ordersDDL, "bench.orders", "bench.big", 1)} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return 0, "", fmt.Errorf("%s: %w", q, err)
		}
	}
	k, err := env.startKafka(ctx)
	if err != nil {
		return 0, "", err
	}
	defer k.stop()
	m := env.MariaDB
	cfgPath := filepath.Join(env.tmp, fmt.Sprintf("rss-%d.yaml", run))
	yaml := fmt.Sprintf(`source:
  name: benchrss
  addr: %s
  user: %s
  password: %s
  server_id: 6000
  start: current
kafka:
  brokers: [%q]
  cleanup_policy: delete
tables:
  include: ["bench.big"]
log:
  level: info
`, m.Addr(), m.User, m.Password, k.Addr)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return 0, "", err
	}
	logPath := filepath.Join(env.tmp, fmt.Sprintf("rss-produce-%d.log", run))
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, "", err
	}
	defer logf.Close()
	cmd := exec.Command(o.KanalBin, "produce", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, "", err
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
	// The producer has read the current position once it says so; the transaction
	// written after that is what it streams.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "starting at the current binlog position") {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			return 0, "", fmt.Errorf("kanal produce exited (%v): %s", err, tail(string(b)))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("kanal produce not started after 30s: %s", tail(string(b)))
		}
	}
	began := time.Now()
	q := fmt.Sprintf(`INSERT INTO bench.big (id,customer_id,sku,status,amount,qty,created_at,note,stamp_us)
SELECT seq, seq %% 5000000, CONCAT('SKU-', seq, '-größe'), ELT(1 + seq %% 4, 'new','paid','shipped','cancelled'),
  (seq %% 10000000) / 100, 1 + seq %% 20, TIMESTAMP('2024-01-01 00:00:00.000000') + INTERVAL seq * 1237 MICROSECOND,
  ELT(1 + seq %% 4, 'deliver to the back door', 'Grüße aus Köln — 価格 確認済み 🚚 📦', NULL, 'gift wrap please, call before arrival'),
  seq
FROM bench.seq_1_to_%d`, o.BigTxnRows)
	if _, err := db.ExecContext(ctx, q); err != nil {
		return 0, "", fmt.Errorf("big transaction: %w", err)
	}
	inserted := time.Since(began)
	file, pos, err := masterStatus(ctx, db, false)
	if err != nil {
		return 0, "", err
	}
	kcfg := producer.DefaultConfig().Kafka
	kcfg.Brokers = []string{k.Addr}
	deadline = time.Now().Add(15 * time.Minute)
	for {
		p, err := producer.ReadPosition(ctx, &kcfg.Config, "benchrss")
		// Done when the position is past the transaction, or inside it with every
		// row written: when the row count is a multiple of flush_records, the last
		// Kafka commit is the mid-transaction one, and the position only moves past
		// the transaction with the next commit (a heartbeat, up to 2×5s later).
		if err == nil && p != nil && ((p.RowsDone == 0 && (p.File > file || (p.File == file && p.Pos >= pos))) || p.RowsDone >= o.BigTxnRows) {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			b, _ := os.ReadFile(logPath)
			return 0, "", fmt.Errorf("kanal produce exited (%v): %s", err, tail(string(b)))
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("producer did not commit past %s:%d within 15 minutes", file, pos)
		}
	}
	total := time.Since(began)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	stopped = true
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, "", fmt.Errorf("no rusage for the child")
	}
	kib := hwm.peak()
	if kib == 0 {
		return 0, "", fmt.Errorf("no VmHWM read from /proc/%d/status", cmd.Process.Pid)
	}
	mib := float64(kib) / 1024
	note := fmt.Sprintf("%d rows: INSERT…SELECT committed after %.1fs, all committed to Kafka after %.1fs; child CPU %.1fs user + %.1fs sys; "+
		"ru_maxrss %.0f MiB, which includes this bench process's own peak of %.0f MiB (vfork) (last run)",
		o.BigTxnRows, inserted.Seconds(), total.Seconds(),
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(),
		float64(ru.Maxrss)/1024, float64(readHWM("self"))/1024)
	return mib, note, nil
}

// hwmWatch polls a process's VmHWM until stopped; the value only grows, so the last
// read before the process exits is its peak (the final shutdown commit aside,
// which runs after the measured transaction).
type hwmWatch struct {
	mu   sync.Mutex
	kib  int64
	done chan struct{}
	once sync.Once
}

func watchHWM(pid int) *hwmWatch {
	w := &hwmWatch{done: make(chan struct{})}
	proc := strconv.Itoa(pid)
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := readHWM(proc); v > 0 {
				w.mu.Lock()
				w.kib = max(w.kib, v)
				w.mu.Unlock()
			}
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *hwmWatch) stop() { w.once.Do(func() { close(w.done) }) }

func (w *hwmWatch) peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kib
}

// readHWM returns VmHWM of /proc/<proc>/status in KiB, 0 when unreadable.
func readHWM(proc string) int64 {
	b, err := os.ReadFile("/proc/" + proc + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
