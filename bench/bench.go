// Package bench is kanal's benchmark harness (cmd/kanal-bench, `make bench`): it starts
// private servers, generates one seeded workload, and measures on that same binlog,
// in one run, how fast go-mysql can merely decode it (the limit), how fast kanal's
// producer turns it into Kafka transactions, and how fast a hand-written canal +
// synchronous-produce loop does; then consumer apply rates, end-to-end latency at a
// steady rate, the producer's peak RSS on one huge transaction, and a backfill of
// existing rows against the raw scan of the same table. Figures are
// reported as ratios of runs taken back to back, because the build machines are
// small and noisy. See docs/bench.md.
package bench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// Options select sizes and outputs.
type Options struct {
	Quick bool `json:"quick"`
	// Rows is the number of row changes of the workload (default 1,000,000, quick 100,000).
	Rows int `json:"rows"`
	// Runs is the number of rounds of the throughput stages (default 5; the
	// naive baseline runs in the first three).
	Runs int `json:"runs"`
	// LatencyRate and LatencyDuration drive stage 5 (default 5,000 rows/s for 60s, quick 10s).
	LatencyRate     int           `json:"latency_rate"`
	LatencyDuration time.Duration `json:"latency_duration"`
	// BigTxnRows is the size of the single transaction of stage 6 (default 1M, quick 100k).
	BigTxnRows int `json:"big_txn_rows"`
	// SnapshotRows is the size of the table backfilled in stage 8 (default 1M, quick 100k).
	SnapshotRows int `json:"snapshot_rows"`
	// Seed of the workload.
	Seed uint64 `json:"seed"`
	// Stages selects what runs (nil: everything): "throughput" (rows 1–2),
	// "naive" (row 3, in the throughput rounds), "narrow" (rows 7), "apply"
	// (rows 4), "latency" (rows 5), "rss" (row 6), "snapshot" (rows 8), or one
	// apply stage by its ID ("4b"). The apply stages read the topic of the last
	// producer round, or of one unmeasured producer pass when "throughput" is
	// not selected. Partial runs are for working on one part; the full run is
	// the figure of record.
	Stages []string `json:"stages,omitempty"`
	// KanalBin is the kanal binary run as `dev-kafka` and, in stage 6, `produce`.
	KanalBin string `json:"-"`
	// CPUProfile, when set, receives a CPU profile of one extra, unmeasured producer pass.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// MemProfile, when set, receives the allocation profile of that pass (and
	// MemProfile+".base" the one from just before it).
	MemProfile string `json:"mem_profile,omitempty"`
	// ProfileStage is the stage the extra pass of CPUProfile/MemProfile repeats:
	// "" (the producer, default) or an apply stage's ID.
	ProfileStage string `json:"profile_stage,omitempty"`
	// Log receives progress lines (nil: discarded).
	Log io.Writer `json:"-"`
}

func (o *Options) defaults() {
	if o.Rows <= 0 {
		o.Rows = 1_000_000
		if o.Quick {
			o.Rows = 100_000
		}
	}
	if o.Runs <= 0 {
		o.Runs = 5
	}
	if o.LatencyRate <= 0 {
		o.LatencyRate = 5000
	}
	if o.LatencyDuration <= 0 {
		o.LatencyDuration = time.Minute
		if o.Quick {
			o.LatencyDuration = 10 * time.Second
		}
	}
	if o.BigTxnRows <= 0 {
		o.BigTxnRows = 1_000_000
		if o.Quick {
			o.BigTxnRows = 100_000
		}
	}
	if o.SnapshotRows <= 0 {
		o.SnapshotRows = 1_000_000
		if o.Quick {
			o.SnapshotRows = 100_000
		}
	}
	if o.Seed == 0 {
		o.Seed = 20240601
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// StageNames are the values of Options.Stages.
var StageNames = []string{"throughput", "naive", "narrow", "apply", "latency", "rss", "snapshot"}

// runs reports whether the stage is selected.
func (o *Options) runs(stage string) bool {
	return len(o.Stages) == 0 || slices.Contains(o.Stages, stage)
}

// Env is what stages get: the servers, the workload and where it ends in the binlog.
type Env struct {
	Opts     *Options
	MariaDB  *testenv.MariaDBServer
	Workload *Workload
	// Kafka holding the workload's topics as the last measured producer round wrote
	// them (kept running for the apply stages); "" if that round failed.
	Brokers []string
	// Topic is the workload table's topic in Brokers; Records the change records in it.
	Topic string
	// Narrow is the narrow-row workload, once the narrow stage generated it.
	Narrow *NarrowWorkload

	tmp       string
	t         *runT // what testenv starts the servers for, also under go test
	redis     *testenv.RedisServer
	pg        *testenv.PostgresServer
	target    *testenv.MariaDBServer // see MariaDBTarget
	rabbit    *testenv.RabbitMQServer
	memcached *testenv.MemcachedServer
	kafka     []*devKafka
	groups    int             // consumer groups made so far (each apply run gets a new one)
	samples   []sampled       // see sample
	last      map[int32]int64 // see lastOffsets
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.Opts.Log, "bench: "+format+"\n", args...)
}

// Redis starts (once) a private redis-server.
func (e *Env) Redis() (*testenv.RedisServer, error) {
	if e.redis != nil {
		return e.redis, nil
	}
	err := e.t.do(func() { e.redis = testenv.Redis(e.t) })
	return e.redis, err
}

// MariaDBTarget starts (once) a second private MariaDB, with a database
// "summaries", for the sinks that write to MySQL: a target of its own, as in
// production, so that their writes neither compete with nor enter the
// workload's binlog.
func (e *Env) MariaDBTarget() (*testenv.MariaDBServer, error) {
	if e.target != nil {
		return e.target, nil
	}
	err := e.t.do(func() {
		m := testenv.MariaDB(e.t, testenv.WithArgs("--innodb-buffer-pool-size=256M"))
		m.Exec(e.t, "CREATE DATABASE IF NOT EXISTS summaries")
		e.target = m
	})
	return e.target, err
}

// Postgres starts (once) a private Postgres with 256 MB of shared buffers, as
// the MariaDB target has a 256 MB buffer pool: the tests' 32 MB (below
// Postgres's own default of 128 MB) is smaller than the aggregator's state table
// and index at 1M rows, and the server then spends a seventh of its time
// copying pages from the OS cache (docs/bench.md, round 7).
func (e *Env) Postgres() (*testenv.PostgresServer, error) {
	if e.pg != nil {
		return e.pg, nil
	}
	err := e.t.do(func() { e.pg = testenv.Postgres(e.t, testenv.WithPostgresArgs("-c", "shared_buffers=256MB")) })
	return e.pg, err
}

// RabbitMQ starts (once) a private RabbitMQ node.
func (e *Env) RabbitMQ() (*testenv.RabbitMQServer, error) {
	if e.rabbit != nil {
		return e.rabbit, nil
	}
	err := e.t.do(func() { e.rabbit = testenv.RabbitMQ(e.t) })
	return e.rabbit, err
}

// Memcached starts (once) a private memcached.
func (e *Env) Memcached() (*testenv.MemcachedServer, error) {
	if e.memcached != nil {
		return e.memcached, nil
	}
	err := e.t.do(func() { e.memcached = testenv.Memcached(e.t) })
	return e.memcached, err
}

// Run runs every stage and returns the report; a stage that fails is reported as
// failed in its row, so one broken stage does not hide the others' figures. The
// error is non-nil only when the environment itself could not be set up.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.KanalBin == "" {
		return nil, fmt.Errorf("bench: the kanal binary is needed (Options.KanalBin)")
	}
	rep := &Report{Started: time.Now(), Options: opts, Machine: machine()}
	tmp, err := os.MkdirTemp("", "kanal-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	env := &Env{Opts: &opts, tmp: tmp, t: newRunT(opts.Log, tmp)}
	defer env.t.Close()
	defer env.stopKafkas()

	env.logf("starting MariaDB")
	err = env.t.do(func() {
		env.MariaDB = testenv.MariaDB(env.t, testenv.WithArgs(
			// The workload's table must stay in memory, or the generator and the
			// producer fight over disk reads instead of measuring the binlog path.
			"--innodb-buffer-pool-size=1G",
			"--innodb-log-file-size=256M",
			"--max-allowed-packet=64M",
		))
	})
	if err != nil {
		return nil, fmt.Errorf("start MariaDB: %w", err)
	}
	_ = env.MariaDB.DB().QueryRowContext(ctx, "SELECT VERSION()").Scan(&rep.Machine.MariaDB)

	wl := newWorkload(opts.Seed)
	rep.Workload = wl
	env.Workload = wl
	env.logf("generating %d row changes", opts.Rows)
	first, _, err := masterStatus(ctx, env.MariaDB.DB(), true)
	if err != nil {
		return nil, err
	}
	wl.FirstBinlog = first
	if err := wl.Generate(ctx, env.MariaDB.DB(), opts.Rows); err != nil {
		return nil, fmt.Errorf("generate workload: %w", err)
	}
	if wl.BinlogFile, wl.BinlogPos, err = masterStatus(ctx, env.MariaDB.DB(), false); err != nil {
		return nil, err
	}
	env.logf("workload: %d row changes in %.1fs, binlog ends at %s:%d", wl.RowChanges, wl.GenSeconds, wl.BinlogFile, wl.BinlogPos)

	if opts.runs("throughput") {
		rep.Rows = append(rep.Rows, throughputStages(ctx, env)...)
	}
	if opts.runs("narrow") {
		rep.Rows = append(rep.Rows, narrowStage(ctx, env)...)
		rep.Narrow = env.Narrow
	}
	if opts.wantApply() {
		if len(env.Brokers) == 0 && !opts.runs("throughput") {
			// No producer round ran: one unmeasured pass writes the topic the
			// apply stages read.
			env.logf("kanal producer: the workload topic for the apply stages (not measured)")
			if _, err := runProducer(ctx, env, "bench", 3000, true, nil); err != nil {
				env.logf("kanal: %v", err)
			}
		}
		rep.Rows = append(rep.Rows, applyStages(ctx, env)...)
	}
	if opts.runs("latency") {
		rep.Rows = append(rep.Rows, latencyStage(ctx, env)...)
	}
	if opts.runs("rss") {
		rep.Rows = append(rep.Rows, rssStage(ctx, env))
	}
	if opts.runs("snapshot") {
		rep.Rows = append(rep.Rows, snapshotStage(ctx, env)...)
	}
	if opts.CPUProfile != "" || opts.MemProfile != "" {
		env.logf("extra pass of stage %s with profiles → %s %s", cmp.Or(opts.ProfileStage, "producer"), opts.CPUProfile, opts.MemProfile)
		var err error
		if st := applyStage(opts.ProfileStage); st != nil {
			err = profileApply(ctx, env, st, opts.CPUProfile, opts.MemProfile)
		} else {
			err = profileProducer(ctx, env, opts.CPUProfile, opts.MemProfile)
		}
		if err != nil {
			env.logf("profile: %v", err)
		} else {
			rep.Profile = opts.CPUProfile
		}
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// masterStatus returns the first binlog file (first=true) or the current file and
// position.
func masterStatus(ctx context.Context, db *sql.DB, first bool) (string, uint32, error) {
	q := "SHOW MASTER STATUS"
	if first {
		q = "SHOW BINARY LOGS"
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return "", 0, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return "", 0, fmt.Errorf("%s: no rows (is the binlog on?)", q)
	}
	vals := make([]any, len(cols))
	var file string
	var pos uint64
	vals[0], vals[1] = &file, &pos
	for i := 2; i < len(vals); i++ {
		vals[i] = new(sql.RawBytes)
	}
	if err := rows.Scan(vals...); err != nil {
		return "", 0, err
	}
	return file, uint32(pos), nil
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "" where
// /proc/loadavg cannot be read.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
