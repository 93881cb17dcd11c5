package bench

import (
	"context"
	"database/sql"
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
	child, err := startChildProducer(ctx, env, fmt.Sprintf("rss-%d", run), yaml)
	if err != nil {
		return 0, "", err
	}
	defer child.kill()
	// The producer has read the current position once it says so; the transaction
	// written after that is what it streams.
	if err := child.waitLog(ctx, "starting at the current binlog position", 30*time.Second); err != nil {
		return 0, "", err
	}
	began := time.Now()
	if err := bigTransaction(ctx, db, "bench.big", o.BigTxnRows); err != nil {
		return 0, "", err
	}
	inserted := time.Since(began)
	file, pos, err := masterStatus(ctx, db, false)
	if err != nil {
		return 0, "", err
	}
	kcfg := producer.DefaultConfig()
	kcfg.Kafka.Brokers = []string{k.Addr}
	kcfg.Source.Name = "benchrss"
	if err := child.waitPosition(ctx, &kcfg, file, pos, o.BigTxnRows); err != nil {
		return 0, "", err
	}
	total := time.Since(began)
	kib, ru, err := child.stop()
	if err != nil {
		return 0, "", err
	}
	mib := float64(kib) / 1024
	note := fmt.Sprintf("%d rows: INSERT…SELECT committed after %.1fs, all committed to Kafka after %.1fs; child CPU %.1fs user + %.1fs sys; "+
		"ru_maxrss %.0f MiB, which includes this bench process's own peak of %.0f MiB (vfork) (last run)",
		o.BigTxnRows, inserted.Seconds(), total.Seconds(),
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds(),
		float64(ru.Maxrss)/1024, float64(readHWM("self"))/1024)
	return mib, note, nil
}

// bigTransaction inserts rows rows into table (the orders shape) in one
// INSERT … SELECT: one binlog transaction.
func bigTransaction(ctx context.Context, db *sql.DB, table string, rows int) error {
	if _, err := db.ExecContext(ctx, bigInsert(table, rows)); err != nil {
		return fmt.Errorf("big transaction: %w", err)
	}
	return nil
}

// bigInsert is the statement of bigTransaction.
func bigInsert(table string, rows int) string {
	return fmt.Sprintf(`INSERT INTO %s (id,customer_id,sku,status,amount,qty,created_at,note,stamp_us)
SELECT seq, seq %% 5000000, CONCAT('SKU-', seq, '-größe'), ELT(1 + seq %% 4, 'new','paid','shipped','cancelled'),
  (seq %% 10000000) / 100, 1 + seq %% 20, TIMESTAMP('2024-01-01 00:00:00.000000') + INTERVAL seq * 1237 MICROSECOND,
  ELT(1 + seq %% 4, 'deliver to the back door', 'Grüße aus Köln — 価格 確認済み 🚚 📦', NULL, 'gift wrap please, call before arrival'),
  seq
FROM bench.seq_1_to_%d`, table, rows)
}

// childProducer is `kanal produce` running as a child process, its peak RSS
// watched from outside.
type childProducer struct {
	cmd     *exec.Cmd
	logPath string
	hwm     *hwmWatch
	exited  chan error
	stopped bool
}

// startChildProducer writes yaml as a configuration file and starts `kanal
// produce` with it; name tells its files apart.
func startChildProducer(ctx context.Context, env *Env, name, yaml string) (*childProducer, error) {
	cfgPath := filepath.Join(env.tmp, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	c := &childProducer{logPath: filepath.Join(env.tmp, name+"-produce.log"), exited: make(chan error, 1)}
	logf, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.cmd = exec.CommandContext(ctx, env.Opts.KanalBin, "produce", "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	c.hwm = watchHWM(c.cmd.Process.Pid)
	go func() {
		err := c.cmd.Wait()
		c.hwm.stop()
		c.exited <- err
	}()
	return c, nil
}

func (c *childProducer) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// waitLog waits until the child's log contains s.
func (c *childProducer) waitLog(ctx context.Context, s string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !strings.Contains(c.log(), s) {
		select {
		case err := <-c.exited:
			c.stopped = true
			return fmt.Errorf("kanal produce exited (%v): %s", err, tail(c.log()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kanal produce: no %q after %v: %s", s, limit, tail(c.log()))
		}
	}
	return nil
}

// waitPosition waits until the source's committed position is past file:pos, or
// inside the transaction there with rowsDone rows written (when the row count is
// a multiple of flush_records, the last Kafka commit is a mid-transaction one, and
// the position only moves past the transaction with the next commit: a
// heartbeat, up to 2×5s later).
func (c *childProducer) waitPosition(ctx context.Context, cfg *producer.Config, file string, pos uint32, rowsDone int) error {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		p, err := producer.ReadPosition(ctx, &cfg.Kafka.Config, cfg.Source.Name)
		if err == nil && p != nil && ((p.RowsDone == 0 && (p.File > file || (p.File == file && p.Pos >= pos))) || (rowsDone > 0 && p.RowsDone >= rowsDone)) {
			return nil
		}
		select {
		case err := <-c.exited:
			c.stopped = true
			return fmt.Errorf("kanal produce exited (%v): %s", err, tail(c.log()))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("producer did not commit past %s:%d within 15 minutes", file, pos)
		}
	}
}

// stop ends the child with SIGTERM and returns its peak RSS (KiB) and rusage.
func (c *childProducer) stop() (int64, *syscall.Rusage, error) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.stopped = true
	ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, nil, fmt.Errorf("no rusage for the child")
	}
	kib := c.hwm.peak()
	if kib == 0 {
		return 0, nil, fmt.Errorf("no VmHWM read from /proc/%d/status", c.cmd.Process.Pid)
	}
	return kib, ru, nil
}

// kill ends the child if it is still running.
func (c *childProducer) kill() {
	if !c.stopped {
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.stopped = true
	}
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
