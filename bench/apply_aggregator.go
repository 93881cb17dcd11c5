package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // checkSummary's "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // checkSummary's "pgx"

	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/consumer"
)

// pgAggregator is aggregator with a private Postgres as the target.
func pgAggregator(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	pg, err := env.Postgres()
	if err != nil {
		return 0, 0, err
	}
	return aggregator(ctx, env, aggTarget{id: "4c", driver: aggregators.DriverPostgres, dsn: pg.DSN, sqlDriver: "pgx",
		pid: pg.Pid(), server: "Postgres"})
}

// mysqlAggregator is aggregator with a private MariaDB of its own as the target
// (not the workload's source server).
func mysqlAggregator(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	m, err := env.MariaDBTarget()
	if err != nil {
		return 0, 0, err
	}
	return aggregator(ctx, env, aggTarget{id: "4m", driver: aggregators.DriverMySQL, dsn: m.DSN("summaries"), sqlDriver: "mysql",
		pid: m.Pid(), server: "MariaDB"})
}

// aggTarget is the database an aggregator stage writes to.
type aggTarget struct {
	id, driver, dsn, sqlDriver string
	pid                        int    // the server's process (its children count too)
	server                     string // its name in notes
}

// aggregator runs the aggregator (aggregators/) in a consumer.Runner over the
// workload's topic: one summary of bench.orders, count and sum(amount) (a
// DECIMAL) per status, with the aggregator's own offsets (consumer.OffsetStore).
// Each run uses a new group, summary table and offsets table, so it starts from
// an empty summary and the topic's beginning. The time runs from the first batch
// handed to the handler to the last record handled. Afterwards the summary is
// compared with MariaDB's GROUP BY of bench.orders.
func aggregator(ctx context.Context, env *Env, tg aggTarget) (uint64, time.Duration, error) {
	if len(env.Brokers) == 0 {
		return 0, 0, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	env.groups++
	n := env.groups
	cfg := aggregators.DefaultConfig()
	cfg.Name = fmt.Sprintf("bench-agg-%d", n)
	cfg.Target.Driver, cfg.Target.DSN = tg.driver, tg.dsn
	cfg.OffsetsTable = fmt.Sprintf("bench_offsets_%d", n)
	cfg.Summaries = []aggregators.SummaryConfig{{
		Table:    fmt.Sprintf("bench_orders_by_status_%d", n),
		Source:   "bench.orders",
		GroupBy:  []string{"status"},
		Measures: []string{"count AS orders", "sum(amount) AS total"},
	}}
	agg, err := aggregators.New(cfg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	defer agg.Close()
	if err := agg.Setup(ctx); err != nil {
		return 0, 0, fmt.Errorf("aggregator setup: %w", err)
	}
	h := &timedAggregator{Aggregator: agg}
	reg := consumer.NewRegistry()
	if err := reg.Register(h, consumer.Tables(agg.Tables()...)); err != nil {
		return 0, 0, err
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka.Brokers = env.Brokers
	ccfg.Heartbeats = false
	ccfg.MetadataMaxAge = time.Second
	r, err := consumer.NewRunner(ccfg, reg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	// CPU over the run (the clock starts at the first batch; the Runner's
	// start-up is a small part of it): this process (Runner and handler),
	// the target server with its backends, and the Kafka holding the topic.
	var kafkaPid int
	for _, k := range env.kafka {
		if k.Addr == env.Brokers[0] && k.cmd.Process != nil {
			kafkaPid = k.cmd.Process.Pid
		}
	}
	self0, srv0, kafka0 := procCPU(0), processTreeCPU(tg.pid), procCPU(kafkaPid)
	go func() { done <- r.Run(runCtx) }()
	wl := env.Workload
	records := int64(wl.RowChanges + wl.Deletes) // a tombstone follows each delete
	st := agg.Stats()
	deadline := time.After(10 * time.Minute)
	for h.handled() < records {
		select {
		case err := <-done:
			return 0, 0, fmt.Errorf("runner stopped after %d of %d records: %v", h.handled(), records, err)
		case <-deadline:
			return 0, 0, fmt.Errorf("%d of %d records applied in 10 minutes (%d applied, %d stale)", h.handled(), records, st.Applied.Load(), st.Stale.Load())
		case <-time.After(2 * time.Millisecond):
		}
	}
	end := time.Now()
	self, srvCPU, kafkaCPU := procCPU(0)-self0, processTreeCPU(tg.pid)-srv0, procCPU(kafkaPid)-kafka0
	if kafkaPid == 0 {
		kafkaCPU = 0
	}
	cancel()
	<-done
	h.mu.Lock()
	first, batches, busy := h.first, h.batches, h.busy
	var spans []string
	for p := int32(0); p < int32(len(h.spans)); p++ {
		sp := h.spans[p]
		spans = append(spans, fmt.Sprintf("%d: %.1f–%.1f s", p, sp[0].Sub(first).Seconds(), sp[1].Sub(first).Seconds()))
	}
	h.mu.Unlock()
	env.logf("%s: partitions handled %s", tg.id, strings.Join(spans, ", "))
	perRow := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(records) }
	env.logf("%s: CPU per record: this process (Runner + handler) %.1f µs, %s %.1f µs, dev-kafka %.1f µs",
		tg.id, perRow(self), tg.server, perRow(srvCPU), perRow(kafkaCPU))
	// Where the time went: batch sizes show how much the Runner hands over at
	// once, Handle's share of the wall time whether the handler is the limit.
	env.logf("%s: %d records in %d batches (%.0f per batch), Handle busy %.1f s of %.1f s wall, summed over partitions",
		tg.id, records, batches, float64(records)/float64(max(batches, 1)), busy.Seconds(), end.Sub(first).Seconds())
	// Outside the timed window: the summary must be the source table's.
	if err := checkSummary(ctx, env, tg, cfg.Summaries[0].Table); err != nil {
		return 0, 0, err
	}
	return uint64(wl.RowChanges), end.Sub(first), nil
}

// checkSummary compares the summary table with the same aggregate computed by
// MariaDB over bench.orders (which holds the state the topic ends in).
func checkSummary(ctx context.Context, env *Env, tg aggTarget, table string) error {
	want := map[string][2]string{}
	rows, err := env.MariaDB.DB().QueryContext(ctx, "SELECT CAST(status AS CHAR), COUNT(*), SUM(amount) FROM bench.orders GROUP BY status")
	if err != nil {
		return fmt.Errorf("source aggregate: %w", err)
	}
	for rows.Next() {
		var k, c, s string
		if err := rows.Scan(&k, &c, &s); err != nil {
			rows.Close()
			return err
		}
		want[k] = [2]string{c, s}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	db, err := sql.Open(tg.sqlDriver, tg.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	q := "SELECT status::text, orders::text, total::text FROM " + table
	if tg.driver == aggregators.DriverMySQL {
		q = "SELECT CAST(status AS CHAR), CAST(orders AS CHAR), CAST(total AS CHAR) FROM " + table
	}
	prows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	got := map[string][2]string{}
	for prows.Next() {
		var k, c, s string
		if err := prows.Scan(&k, &c, &s); err != nil {
			prows.Close()
			return err
		}
		got[k] = [2]string{c, s}
	}
	prows.Close()
	if err := prows.Err(); err != nil {
		return err
	}
	same := func(a, b string) bool {
		x, ok1 := new(big.Rat).SetString(a)
		y, ok2 := new(big.Rat).SetString(b)
		return ok1 && ok2 && x.Cmp(y) == 0
	}
	ok := len(got) == len(want)
	for k, w := range want {
		g, found := got[k]
		ok = ok && found && same(g[0], w[0]) && same(g[1], w[1])
	}
	if !ok {
		return fmt.Errorf("summary %s differs from bench.orders: got %v, want %v (status: [count sum])", table, got, want)
	}
	return nil
}

// timedAggregator notes when the first batch arrives and counts the records of the
// batches that committed. It embeds the aggregator, so the Runner still sees its
// consumer.OffsetStore.
type timedAggregator struct {
	*aggregators.Aggregator
	mu      sync.Mutex
	first   time.Time
	n       int64
	batches int64
	busy    time.Duration // summed over partitions handled concurrently
	// spans are each partition's first batch start and last batch end.
	spans map[int32][2]time.Time
}

func (t *timedAggregator) Handle(ctx context.Context, b consumer.Batch) error {
	began := time.Now()
	t.mu.Lock()
	if t.first.IsZero() {
		t.first = began
	}
	t.mu.Unlock()
	if err := t.Aggregator.Handle(ctx, b); err != nil {
		return err
	}
	t.mu.Lock()
	t.n += int64(len(b.Records))
	t.batches++
	end := time.Now()
	t.busy += end.Sub(began)
	if t.spans == nil {
		t.spans = map[int32][2]time.Time{}
	}
	sp, ok := t.spans[b.Partition]
	if !ok {
		sp[0] = began
	}
	sp[1] = end
	t.spans[b.Partition] = sp
	t.mu.Unlock()
	return nil
}

func (t *timedAggregator) handled() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// processTreeCPU is the CPU time used so far by pid, its running children and
// the children it has waited for (Postgres: the postmaster and its backends).
func processTreeCPU(pid int) time.Duration {
	var total int64
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(pid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i >= 0 {
			st = st[i+2:]
		}
		f := strings.Fields(st)
		if len(f) < 15 || (e.Name() != self && f[1] != self) {
			continue
		}
		last := 12 // utime, stime
		if e.Name() == self {
			last = 14 // and cutime, cstime
		}
		for i := 11; i <= last; i++ {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			total += v
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}
