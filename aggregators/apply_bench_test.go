package aggregators

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// The columns of bench.orders (bench/workload.go) as the producer describes them.
var ordersCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "customer_id", Type: "int unsigned"},
	{Name: "sku", Type: "varchar"},
	{Name: "status", Type: "enum"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "qty", Type: "int unsigned"},
	{Name: "created_at", Type: "datetime(6)"},
	{Name: "note", Type: "text"},
	{Name: "stamp_us", Type: "bigint"},
}

const (
	benchTopic      = "kanal.bench.orders"
	benchPartitions = 6
)

// ordersWorkload builds the records `make bench` row 4c applies: the bench
// workload's bench.orders changes (about 60% inserts, 30% updates of status,
// amount and qty, 10% deletes, each delete followed by a tombstone), keyed like
// the producer keys them and spread over 6 partitions by key, in batches of up
// to the aggregator's batch bound (Config.BatchMaxRecords) per partition, as
// the Runner hands them over while it is behind. live returns the final source
// rows (the reference for the check).
func ordersWorkload(n int, seed uint64) (batches [][]consumer.Batch, live map[string]Row) {
	rng := rand.New(rand.NewPCG(seed, 42))
	statuses := []string{"new", "paid", "shipped", "cancelled"}
	live = map[string]Row{}
	var ids []int64
	nextID := int64(1)
	var seq uint64
	offsets := make([]int64, benchPartitions)
	parts := make([][]consumer.Record, benchPartitions)
	partOf := func(k string) int32 {
		h := fnv.New32a()
		h.Write([]byte(k))
		return int32(h.Sum32() % benchPartitions)
	}
	add := func(r consumer.Record) {
		p := partOf(r.Key)
		r.Topic, r.Partition, r.Offset, r.Table = benchTopic, p, offsets[p], "bench.orders"
		offsets[p]++
		parts[p] = append(parts[p], r)
	}
	amount := func() schemas.Decimal {
		return schemas.Decimal(strconv.Itoa(rng.IntN(100000)) + "." + fmt.Sprintf("%02d", rng.IntN(100)))
	}
	now := time.Now().UnixMicro()
	for range n {
		seq++
		x := rng.IntN(100)
		switch {
		case x < 60 || len(ids) < 100:
			id := nextID
			nextID++
			row := Row{"id": id, "customer_id": uint64(rng.Uint32N(5_000_000)), "sku": "SKU-" + strconv.Itoa(rng.IntN(100000)),
				"status": statuses[rng.IntN(4)], "amount": amount(), "qty": uint64(1 + rng.IntN(9)),
				"created_at": "2024-06-01 12:00:00.000000", "note": "deliver to the back door", "stamp_us": now}
			k := "bench.orders:" + strconv.FormatInt(id, 10)
			live[k] = row
			ids = append(ids, id)
			c := &schemas.Change{Op: schemas.OpCreate, Seq: seq, Columns: ordersCols, After: row}
			add(consumer.Record{Key: k, Op: c.Op, Seq: seq, Change: c})
		case x < 90:
			id := ids[rng.IntN(len(ids))]
			k := "bench.orders:" + strconv.FormatInt(id, 10)
			before := live[k]
			after := Row{}
			for c, v := range before {
				after[c] = v
			}
			after["status"] = statuses[rng.IntN(4)]
			after["amount"] = amount()
			after["qty"] = before["qty"].(uint64) + 1
			live[k] = after
			c := &schemas.Change{Op: schemas.OpUpdate, Seq: seq, Columns: ordersCols, Before: before, After: after}
			add(consumer.Record{Key: k, Op: c.Op, Seq: seq, Change: c})
		default:
			i := rng.IntN(len(ids))
			id := ids[i]
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			k := "bench.orders:" + strconv.FormatInt(id, 10)
			c := &schemas.Change{Op: schemas.OpDelete, Seq: seq, Columns: ordersCols, Before: live[k]}
			delete(live, k)
			add(consumer.Record{Key: k, Op: c.Op, Seq: seq, Change: c})
			add(consumer.Record{Key: k, Op: schemas.OpDelete, Seq: seq, Tombstone: true})
		}
	}
	benchBatch := DefaultConfig().BatchMaxRecords
	batches = make([][]consumer.Batch, benchPartitions)
	for p, recs := range parts {
		for start := 0; start < len(recs); start += benchBatch {
			batches[p] = append(batches[p], consumer.Batch{Group: "kanal-bench", Topic: benchTopic, Partition: int32(p),
				Records: recs[start:min(len(recs), start+benchBatch)]})
		}
	}
	return batches, live
}

// treeCPU is the CPU time (user + system) used so far by pid, its children
// still running, and the children it has waited for: a Postgres server's own
// work, backends included.
func treeCPU(pid int) time.Duration {
	var total int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			s = s[i+2:]
		}
		f := strings.Fields(s)
		if len(f) < 15 {
			continue
		}
		self := e.Name() == strconv.Itoa(pid)
		if ppid, _ := strconv.Atoi(f[1]); !self && ppid != pid {
			continue
		}
		last := 12 // utime, stime
		if self {
			last = 14 // and cutime, cstime
		}
		for i := 11; i <= last; i++ {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			total += v
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyPostgres reports the rate at which the aggregator alone applies
// `make bench` row 4c's workload (b.N bench.orders changes plus a tombstone per
// delete; one summary: count and sum(amount) by status) to a private Postgres:
// batches of up to Config.BatchMaxRecords records straight into Handle, the 6
// partitions concurrently as the Runner does, no Kafka. Besides rows/s it reports the CPU per row change of
// Postgres (server and backends) and of this process. After the clock stops
// the summary is checked against the final rows. A figure, not a test: nothing
// is asserted about speed. Run with -benchtime=100000x for the bench's size.
func BenchmarkApplyPostgres(b *testing.B) {
	pg := testenv.Postgres(b)
	benchmarkApply(b, &targetEnv{driver: DriverPostgres, dsn: pg.DSN, db: cdctest.OpenDB(b, "pgx", pg.DSN)}, pg.Pid(), "pg")
}

// BenchmarkApplyMariaDB is BenchmarkApplyPostgres with a MariaDB target.
func BenchmarkApplyMariaDB(b *testing.B) {
	m := testenv.MariaDB(b)
	m.Exec(b, "CREATE DATABASE IF NOT EXISTS summaries")
	dsn := m.DSN("summaries")
	benchmarkApply(b, &targetEnv{driver: DriverMySQL, dsn: dsn, db: cdctest.OpenDB(b, "mysql", dsn)}, m.Pid(), "mariadb")
}

func benchmarkApply(b *testing.B, te *targetEnv, serverPid int, server string) {
	cfg := te.config("bench")
	cfg.Target.MaxConns = DefaultConfig().Target.MaxConns
	cfg.Summaries = []SummaryConfig{{Table: "orders_by_status", Source: "bench.orders",
		GroupBy: []string{"status"}, Measures: []string{"count AS orders", "sum(amount) AS total"}}}
	a, err := New(cfg, cdctest.Logger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	if err := a.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	batches, live := ordersWorkload(b.N, 20240601)
	b.ResetTimer()
	srv0, go0, began := treeCPU(serverPid), selfCPU(), time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, benchPartitions)
	for p := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, bt := range batches[p] {
				if err := a.Handle(ctx, bt); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(began)
	srvCPU, goCPU := treeCPU(serverPid)-srv0, selfCPU()-go0
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	n := float64(b.N)
	b.ReportMetric(n/wall.Seconds(), "rows/s")
	b.ReportMetric(float64(srvCPU.Microseconds())/n, server+"-µs/row")
	b.ReportMetric(float64(goCPU.Microseconds())/n, "go-µs/row")
	b.ReportMetric(0, "ns/op")
	a.Close() // Postgres backends exit and flush their statistics

	if te.driver == DriverPostgres {
		// How Postgres reached the state rows: a sequential scan per batch
		// means a plan went wrong.
		time.Sleep(500 * time.Millisecond) // the exiting backends' statistics
		var upd, hot, pages, seqScans, seqRows int64
		if err := te.db.QueryRow(`SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size(relid) / 8192, seq_scan, seq_tup_read
			FROM pg_stat_user_tables WHERE relname = 'orders_by_status_kanal_rows'`).Scan(&upd, &hot, &pages, &seqScans, &seqRows); err == nil {
			b.Logf("state table: %d pages; %d updates, %d HOT; %d sequential scans read %d rows", pages, upd, hot, seqScans, seqRows)
		}
	}
	// Outside the clock: the summary must be the final rows' aggregate.
	s, err := cfg.Summaries[0].Compile()
	if err != nil {
		b.Fatal(err)
	}
	if d := testdiff.Diff(wantSummary(b, &s, live), readSummary(b, te, &s)); d != "" {
		b.Fatalf("summary differs from the final rows:\n%s", d)
	}
}
