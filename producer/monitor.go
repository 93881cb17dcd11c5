package producer

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

// binlogFile is one row of SHOW BINARY LOGS.
type binlogFile struct {
	name string
	size int64
}

// binlogSizes lists the binlog files the server still has, oldest first, with
// their sizes (the last one's is where the server writes next).
func binlogSizes(ctx context.Context, db *sql.DB) ([]binlogFile, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if len(cols) < 2 {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %d columns, want name and size", len(cols))
	}
	var files []binlogFile
	for rows.Next() {
		var f binlogFile
		vals := []any{&f.name, &f.size}
		for len(vals) < len(cols) {
			vals = append(vals, new(sql.RawBytes))
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
		}
		files = append(files, f)
	}
	return files, rows.Err()
}

// bytesBehind is how much binlog the server has written beyond file:pos, or -1
// when file is not among files.
func bytesBehind(files []binlogFile, file string, pos uint32) int64 {
	for i, f := range files {
		if f.name != file {
			continue
		}
		n := max(0, f.size-int64(pos))
		for _, later := range files[i+1:] {
			n += later.size
		}
		return n
	}
	return -1
}

// retention is how far the committed position's binlog file is from being
// purged: the number and size of the files older than it (the server purges
// oldest first). files < 0: the file is no longer on the server.
type retention struct {
	files  int
	bytes  int64
	newest bool // the file is the one the server writes to, which it never purges
}

func retentionMargin(files []binlogFile, committed string) retention {
	var older int64
	for i, f := range files {
		if f.name == committed {
			return retention{files: i, bytes: older, newest: i == len(files)-1}
		}
		older += f.size
	}
	return retention{files: -1, bytes: -1}
}

// warn reports whether the retention guard should warn with a threshold of
// warnFiles files.
func (r retention) warn(warnFiles int) bool {
	return r.files < 0 || r.files < warnFiles && !r.newest
}

// startMonitor lists the source's binlog files now (so the retention guard
// judges the position about to be resumed before anything is read) and then
// every admin.poll_interval until the returned function is called. It also
// logs the progress line while the producer is behind.
func (p *Producer) startMonitor(ctx context.Context, db *sql.DB, start schemas.Position) (stop func()) {
	p.live.start(start)
	m := &monitor{p: p, db: db, warnFiles: p.cfg.Admin.RetentionWarnFiles}
	m.poll(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.run(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}

type monitor struct {
	p         *Producer
	db        *sql.DB
	warnFiles int
	warning   retention // the margin last warned about; files == 0 && !warned: none
	warned    bool
	failed    bool // the last listing failed (logged once)

	// The previous progress sample.
	lastAt      time.Time
	lastChanges uint64
	lastBinlogB uint64
}

func (m *monitor) run(ctx context.Context) {
	poll := time.NewTicker(m.p.cfg.Admin.PollInterval)
	defer poll.Stop()
	var progress <-chan time.Time
	if iv := m.p.cfg.Admin.ProgressInterval; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		progress = t.C
	}
	m.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			m.poll(ctx)
		case <-progress:
			m.progress()
		}
	}
}

// poll lists the binlog files and updates the bytes behind, the caught-up
// time and the retention margin.
func (m *monitor) poll(ctx context.Context) {
	at := time.Now()
	qctx, cancel := context.WithTimeout(ctx, m.p.cfg.Source.ConnectTimeout)
	files, err := binlogSizes(qctx, m.db)
	cancel()
	if err != nil {
		if !m.failed && ctx.Err() == nil {
			m.p.log.Warn("cannot list the source's binlog files; bytes behind and the retention guard are not updated", "err", err)
		}
		m.failed = true
		return
	}
	m.failed = false
	l := m.p.live
	// Read after the listing: whatever was read by now is at least what the
	// server had written when it answered.
	pr := l.snapshot()
	behind := bytesBehind(files, pr.ReadFile, pr.ReadPos)
	committed := ""
	if pr.Committed != nil {
		committed = pr.Committed.File
	}
	r := retentionMargin(files, committed)
	l.mu.Lock()
	l.poll = binlogPoll{at: at, bytesBehind: behind, marginFiles: r.files, marginBytes: r.bytes, binlogs: len(files)}
	if behind == 0 {
		l.caughtUp = at
	}
	l.mu.Unlock()
	m.guard(r, pr.Committed, files)
}

// guard is the retention guard: it warns when the committed position is in
// the oldest binlog files, once per margin it sees, and says when the margin
// is back.
func (m *monitor) guard(r retention, committed *schemas.Position, files []binlogFile) {
	if committed == nil || len(files) == 0 {
		return
	}
	switch {
	case r.warn(m.warnFiles) && (!m.warned || r != m.warning):
		m.warned, m.warning = true, r
		if r.files < 0 {
			m.p.log.Error("binlog retention: the committed position's binlog file is no longer on the server; "+
				"a restart cannot resume from it (see BinlogPurgedError)",
				"position", committed.String(), "oldest_binlog", files[0].name)
			return
		}
		m.p.log.Warn("binlog retention: the committed position is in one of the oldest binlog files on the server; "+
			"once the server purges it, changes are lost to kanal. Keep binlogs longer (binlog_expire_logs_seconds, expire_logs_days) "+
			"or let the producer catch up",
			"position", committed.String(), "older_files", r.files, "older_bytes", r.bytes,
			"oldest_binlog", files[0].name, "warn_below_files", m.warnFiles)
	case !r.warn(m.warnFiles) && m.warned:
		m.warned = false
		m.p.log.Info("binlog retention: the committed position is clear of the oldest binlog files again",
			"position", committed.String(), "older_files", r.files)
	}
}

func (m *monitor) sample() {
	m.lastAt = time.Now()
	m.lastChanges = m.p.stats.Changes.Load()
	m.lastBinlogB = m.p.live.binlogB.Load()
}

// progress logs where the producer is while it is further behind than
// admin.progress_interval.
func (m *monitor) progress() {
	now := time.Now()
	dt := now.Sub(m.lastAt).Seconds()
	changes, binlogB := m.p.stats.Changes.Load(), m.p.live.binlogB.Load()
	rows := float64(changes-m.lastChanges) / dt
	rate := float64(binlogB-m.lastBinlogB) / dt
	m.sample()
	pr := m.p.live.snapshot()
	lag, ok := pr.Lag(now)
	if !ok || lag < m.p.cfg.Admin.ProgressInterval || !pr.Streaming {
		return
	}
	args := []any{"position", pr.ReadFile + ":" + strconv.FormatUint(uint64(pr.ReadPos), 10),
		"lag", lag.Round(time.Second).String(), "rows_per_s", int64(rows), "binlog_mib_per_s", float64(int64(rate/(1<<20)*100)) / 100}
	if pr.BytesBehind >= 0 {
		args = append(args, "bytes_behind", pr.BytesBehind)
		if rate > 0 {
			args = append(args, "eta", time.Duration(float64(pr.BytesBehind)/rate*float64(time.Second)).Round(time.Second).String())
		}
	}
	m.p.log.Info("catching up", args...)
}
