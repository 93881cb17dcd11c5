package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ApplyStage is one consumer-side measurement of stage 4. Adding a handler's figure
// is one entry here: a Run that applies the workload's topic (Env.Brokers/Env.Topic,
// Env.Workload.RowChanges changes plus a tombstone per delete) to its sink and returns
// how many rows it applied in how long.
type ApplyStage struct {
	ID      string
	Measure string
	// Run measures one pass; nil means the handler does not exist yet and the row
	// says "not yet built".
	Run func(ctx context.Context, env *Env) (rows uint64, dur time.Duration, err error)
	// Setup, when set, runs before each pass outside its measurement (the pass's
	// CPU per row): emptying a server of the previous stage's rows is not the
	// stage's cost.
	Setup func(ctx context.Context, env *Env) error
	// RatioOf is the ID of an earlier stage in this list whose rate (same round) is
	// the denominator of this one's ratio.
	RatioOf string
	Goal    string
	// Met says whether the median rate (and ratio, if any) meets Goal.
	Met func(rate, ratio float64) bool
	// Pending is the status while Run is nil (default "not yet built").
	Pending string
}

// ApplyStages is the list stage 4 runs, in order, Runs rounds.
var ApplyStages = []ApplyStage{
	{
		ID:      "4r",
		Measure: "reference: consumer.Runner with a handler that does nothing (fetch, decode, batching), the ceiling of the rows below",
		Run:     runnerCeiling,
	},
	{
		ID:      "4s",
		Measure: "reference: redis-server's ceiling, the same HSETs from redis-benchmark (C client, 50 connections, pipelines of 1,000)",
		Run:     redisServerCeiling,
		Setup:   emptyRedis,
	},
	{
		ID:      "4a",
		Measure: "reference: redis-server's own rate, HSET of the workload's rows via go-redis pipelines of 1,000",
		Run:     redisHSETReference,
		Setup:   emptyRedis,
	},
	{
		ID:      "4b",
		Measure: "Redis materialiser (sinks/redis, hash layout) in a consumer.Runner applying the workload topic",
		RatioOf: "4a",
		Goal:    "≥ 0.7 × 4a",
		Met:     func(_, ratio float64) bool { return ratio >= 0.7 },
		Run:     redisMaterialiser,
		Setup:   emptyRedis,
	},
	{
		ID:      "4b2",
		Measure: "the Redis materialiser of 4b in 2 consumer.Runners of one group (each its own Kafka client and handler), from the first batch of either",
		RatioOf: "4b",
		Goal:    "≥ 0.9 × 4b",
		Met:     func(_, ratio float64) bool { return ratio >= 0.9 },
		Run:     redisMembersOf(2),
		Setup:   emptyRedis,
	},
	{
		ID:      "4b4",
		Measure: "the same in 4 consumer.Runners of one group (6 partitions: 2, 2, 1, 1)",
		RatioOf: "4b",
		Goal:    "≥ 0.9 × 4b",
		Met:     func(_, ratio float64) bool { return ratio >= 0.9 },
		Run:     redisMembersOf(4),
		Setup:   emptyRedis,
	},
	{
		ID:      "4c",
		Measure: "Postgres aggregator (aggregators/, count + sum(amount) per status) in a consumer.Runner applying the workload topic",
		Goal:    "≥ 200k rows/s",
		Met:     func(rate, _ float64) bool { return rate >= 200_000 },
		Run:     pgAggregator,
	},
	{
		ID:      "4m",
		Measure: "the aggregator of 4c with a MariaDB target (a second private server, not the source)",
		RatioOf: "4c",
		Run:     mysqlAggregator,
	},
	{
		ID:      "4d",
		Measure: "Elasticsearch sink (sinks/elasticsearch, one index, external versions) in a consumer.Runner applying the workload topic to the in-test server acknowledging every action (bulk encode: one document per change)",
		RatioOf: "4r",
		Goal:    "≥ 100k rows/s",
		Met:     func(rate, _ float64) bool { return rate >= 100_000 },
		Run:     esBulkEncode,
	},
	{
		ID:      "4e",
		Measure: "reference: RabbitMQ's own rate, a plain amqp091 publisher with confirms (persistent, mandatory, windows of 1,000, one channel per partition) sending the workload's changes",
		Run:     amqpPlain,
	},
	{
		ID:      "4f",
		Measure: "RabbitMQ sink (sinks/rabbitmq, kanal JSON, persistent, confirms) in a consumer.Runner applying the workload topic",
		RatioOf: "4e",
		Goal:    "≥ 30k rows/s",
		Met:     func(rate, _ float64) bool { return rate >= 30_000 },
		Run:     rabbitmqSink,
	},
	{
		ID:      "4g",
		Measure: "reference: memcached's own rate, plain sets of the workload's rows as JSON via gomemcache over 16 connections",
		Run:     memcachedSets,
	},
	{
		ID:      "4h",
		Measure: "memcached sink (sinks/memcached, version-guarded gets + cas/add, 16 rows at once) in a consumer.Runner applying the workload topic",
		RatioOf: "4g",
		Goal:    "≥ 50k rows/s",
		Met:     func(rate, _ float64) bool { return rate >= 50_000 },
		Run:     memcachedSink,
	},
}

// applyStage returns the apply stage with this ID, or nil.
func applyStage(id string) *ApplyStage {
	for i := range ApplyStages {
		if ApplyStages[i].ID == id {
			return &ApplyStages[i]
		}
	}
	return nil
}

func applyStages(ctx context.Context, env *Env) []*Row {
	n := len(ApplyStages)
	rates := make([][]float64, n)
	ratios := make([][]float64, n)
	costs := make([][]passCost, n)
	errs := make([]error, n)
	index := map[string]int{}
	for i, st := range ApplyStages {
		index[st.ID] = i
	}
	for round := range env.Opts.Runs {
		this := make([]float64, n)
		for i, st := range ApplyStages {
			if st.Run == nil || !env.Opts.want(st.ID) {
				continue
			}
			env.logf("round %d/%d: %s", round+1, env.Opts.Runs, st.ID)
			if st.Setup != nil {
				if err := st.Setup(ctx, env); err != nil {
					errs[i] = err
					env.logf("%s: %v", st.ID, err)
					continue
				}
			}
			m := env.meterPass()
			rows, dur, err := st.Run(ctx, env)
			if err != nil {
				errs[i] = err
				env.logf("%s: %v", st.ID, err)
				continue
			}
			costs[i] = append(costs[i], m.stop(rows))
			this[i] = float64(rows) / dur.Seconds()
			rates[i] = append(rates[i], this[i])
			if j, ok := index[st.RatioOf]; ok && this[j] > 0 {
				ratios[i] = append(ratios[i], this[i]/this[j])
			}
		}
	}
	var out []*Row
	for i, st := range ApplyStages {
		if !env.Opts.want(st.ID) {
			continue
		}
		row := &Row{ID: st.ID, Measure: st.Measure, Unit: "rows/s", Goal: st.Goal, Value: spreadOf(rates[i]), Ratio: spreadOf(ratios[i]),
			Note: costNote(costs[i])}
		if row.Ratio != nil {
			row.RatioOf = st.RatioOf
		}
		switch {
		case st.Run == nil:
			row.Status = "not yet built"
			if st.Pending != "" {
				row.Status = st.Pending
			}
		case errs[i] != nil:
			setStatus(row, errs[i])
		case st.Met != nil && row.Value != nil:
			ratio := 0.0
			if row.Ratio != nil {
				ratio = row.Ratio.Median
			}
			row.Status = goalStatus(st.Met(row.Value.Median, ratio))
		}
		out = append(out, row)
	}
	return out
}

// redisHSETReference writes one hash per workload row (its nine columns) with go-redis
// pipelines of 1,000 commands: what redis-server itself sustains here, the ceiling of
// any Redis materialiser.
func redisHSETReference(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := env.Redis()
	if err != nil {
		return 0, 0, err
	}
	// go-redis v9.11's fixed 4 KiB buffers, as in every round before 7f: the
	// reference stays comparable (v9.12's 256 KiB default lowered this rate ~10 %:
	// Redis waits until a whole pipeline is encoded).
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, WriteBufferSize: 4096, ReadBufferSize: 4096})
	defer rdb.Close()
	total := env.Workload.RowChanges
	// The values are built before the clock starts: this measures the server.
	wl := newWorkload(env.Workload.Seed + 1)
	rows := make([][]any, 0, 1000)
	keys := make([]string, 0, 1000)
	var dur time.Duration
	for done := 0; done < total; {
		rows, keys = rows[:0], keys[:0]
		for i := 0; i < 1000 && done+i < total; i++ {
			id := int64(done + i + 1)
			keys = append(keys, "bench.orders:"+strconv.FormatInt(id, 10))
			rows = append(rows, wl.hsetFields(id))
		}
		began := time.Now()
		pipe := rdb.Pipeline()
		for i := range rows {
			pipe.HSet(ctx, keys[i], rows[i]...)
		}
		cmds, err := pipe.Exec(ctx)
		dur += time.Since(began)
		if err != nil {
			return 0, 0, fmt.Errorf("HSET pipeline: %w", err)
		}
		done += len(cmds)
	}
	return uint64(total), dur, nil
}

// emptyRedis is the Setup of the Redis stages: every pass starts from an empty
// server.
func emptyRedis(ctx context.Context, env *Env) error {
	srv, err := env.Redis()
	if err != nil {
		return err
	}
	return flushRedis(ctx, srv.Addr)
}

// flushRedis empties the bench's Redis before a stage writes to it. After a full
// round it holds a million hashes, whose freeing takes seconds on a busy machine:
// longer than go-redis's default read timeout (3 s), after which every later
// command of the stage would wait behind the flush too.
func flushRedis(ctx context.Context, addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 5 * time.Minute})
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("empty Redis: %w", err)
	}
	return nil
}

// redisServerCeiling is redis-server's own ceiling for the same writes: Redis's C
// benchmark client (redis-benchmark, shipped with redis-server on Debian) sending
// pipelines of 1,000 HSETs of one workload row's nine fields to random keys over 50
// connections, so that the server never waits for a client. It shows how much of
// 4a is the Go client's cost and round trips rather than the server's.
func redisServerCeiling(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := env.Redis()
	if err != nil {
		return 0, 0, err
	}
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return 0, 0, fmt.Errorf("redis-benchmark not found (Debian package redis-tools, installed with redis-server): %w", err)
	}
	total := env.Workload.RowChanges
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port), "-n", strconv.Itoa(total), "-P", "1000",
		"-c", "50", "-r", strconv.Itoa(total), "--csv", "HSET", "bench.ceiling:__rand_int__"}
	for _, f := range newWorkload(env.Workload.Seed + 2).hsetFields(1) {
		args = append(args, fmt.Sprint(f))
	}
	began := time.Now()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	wall := time.Since(began)
	if err != nil {
		return 0, 0, fmt.Errorf("redis-benchmark: %w", err)
	}
	// --csv: a header line, then "HSET …","<requests per second>",…
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(line, `","`)
		if len(fields) < 2 || !strings.HasPrefix(line, `"HSET`) {
			continue
		}
		rps, err := strconv.ParseFloat(strings.Trim(fields[1], `"`), 64)
		if err != nil || rps <= 0 {
			return 0, 0, fmt.Errorf("redis-benchmark: cannot read the rate in %q", line)
		}
		return uint64(total), time.Duration(float64(total) / rps * float64(time.Second)), nil
	}
	return 0, 0, fmt.Errorf("redis-benchmark: no HSET result in its output (%v, %d bytes)", wall.Round(time.Millisecond), len(out))
}
