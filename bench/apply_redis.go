package bench

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// redisMaterialiser runs the Redis materialiser (sinks/redis, hash layout) in a
// consumer.Runner over the workload's topic, from an empty Redis (Setup) and a new group,
// until every record is applied. The time runs from the first batch handed to the
// handler (group join and assignment excluded) to the last.
func redisMaterialiser(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	return redisMembers(ctx, env, 1)
}

// redisMembersOf returns the stage run of n Runners in one group.
func redisMembersOf(n int) func(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	return func(ctx context.Context, env *Env) (uint64, time.Duration, error) { return redisMembers(ctx, env, n) }
}

// redisMembers runs the Redis materialiser in n consumer.Runners of one new group
// (each with its own Kafka client and handler, as n processes would be) over the
// workload's topic, from an empty Redis (Setup), until every partition's last record is
// applied. The time runs from the first batch any member handles to the last, so
// the members' joins and the rebalances they cause after the first batch count.
// Afterwards the rows in Redis are counted against bench.orders.
func redisMembers(ctx context.Context, env *Env, n int) (uint64, time.Duration, error) {
	if len(env.Brokers) == 0 {
		return 0, 0, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	last, err := env.lastOffsets(ctx)
	if err != nil {
		return 0, 0, err
	}
	srv, err := env.Redis()
	if err != nil {
		return 0, 0, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return 0, 0, err
	}
	scfg := redissink.DefaultConfig()
	scfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}
	scfg.Tables = []redissink.TableConfig{{Match: "bench.orders"}}
	env.groups++
	group := fmt.Sprintf("bench-redis-%d", env.groups)
	tr := &groupTracker{next: map[int32]int64{}, started: make([]time.Time, n)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	for m := range n {
		h, err := redissink.New(scfg, discardLog)
		if err != nil {
			return 0, 0, err
		}
		defer h.Close()
		reg := consumer.NewRegistry()
		if err := reg.Register(&timedRedis{Handler: h, tr: tr, member: m}, consumer.Tables(h.TablePatterns()...), consumer.Group(group)); err != nil {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(runCtx); err != nil || runCtx.Err() == nil {
				done <- fmt.Errorf("member %d stopped: %v", m, err)
			}
		}()
	}
	deadline := time.After(10 * time.Minute)
	for !tr.reached(last) {
		select {
		case err := <-done:
			return 0, 0, err
		case <-deadline:
			return 0, 0, fmt.Errorf("not every record applied in 10 minutes (applied up to %v of %v)", tr.progress(), last)
		case <-time.After(2 * time.Millisecond):
		}
	}
	end := time.Now()
	cancel()
	wg.Wait()
	first, allIn, idle := tr.window()
	env.logf("4b, members %d: redis-server time by command: %s", n, commandTimes(ctx, rdb, float64(env.Workload.RowChanges+env.Workload.Deletes)))
	if n > 1 {
		env.logf("4b, members %d: the last member's first batch %.0f ms after the first; %d members handled nothing", n, allIn.Sub(first).Seconds()*1000, idle)
	}
	// Outside the timed window: as many rows in Redis as in bench.orders.
	if err := checkRedisRows(ctx, env, rdb, scfg.TombstonePrefix); err != nil {
		return 0, 0, err
	}
	return uint64(env.Workload.RowChanges), end.Sub(first), nil
}

// groupTracker follows, over the members of a group, the offset after the last
// batch applied per partition, and when each member handled its first batch.
type groupTracker struct {
	mu      sync.Mutex
	next    map[int32]int64
	started []time.Time
}

// reached reports whether every partition is applied past its last record.
func (g *groupTracker) reached(last map[int32]int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, off := range last {
		if g.next[p] <= off {
			return false
		}
	}
	return true
}

func (g *groupTracker) progress() map[int32]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.next)
}

// window returns the first batch's time, when the last member handled its first
// batch, and how many members handled none (the others had applied everything
// before they were assigned partitions).
func (g *groupTracker) window() (first, allIn time.Time, idle int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.started {
		switch {
		case t.IsZero():
			idle++
			continue
		case first.IsZero() || t.Before(first):
			first = t
		}
		if t.After(allIn) {
			allIn = t
		}
	}
	return first, allIn, idle
}

// timedRedis reports a member's batches to the tracker. It embeds the handler,
// so the Runner still sees what it implements besides Handle
// (consumer.UpdateBeforeUser).
type timedRedis struct {
	*redissink.Handler
	tr     *groupTracker
	member int
}

func (t *timedRedis) Handle(ctx context.Context, b consumer.Batch) error {
	now := time.Now()
	t.tr.mu.Lock()
	if t.tr.started[t.member].IsZero() {
		t.tr.started[t.member] = now
	}
	t.tr.mu.Unlock()
	if err := t.Handler.Handle(ctx, b); err != nil {
		return err
	}
	t.tr.mu.Lock()
	t.tr.next[b.Partition] = max(t.tr.next[b.Partition], b.NextOffset())
	t.tr.mu.Unlock()
	return nil
}

// checkRedisRows compares the number of rows in Redis with bench.orders's.
func checkRedisRows(ctx context.Context, env *Env, rdb *redis.Client, tombPrefix string) error {
	var want int64
	if err := env.MariaDB.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM bench.orders").Scan(&want); err != nil {
		return fmt.Errorf("count bench.orders: %w", err)
	}
	var got int64
	iter := rdb.Scan(ctx, 0, "bench.orders:*", 10000).Iterator()
	for iter.Next(ctx) {
		got++
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("count rows in Redis: %w", err)
	}
	if got != want {
		return fmt.Errorf("redis holds %d rows of bench.orders, the table %d", got, want)
	}
	return nil
}

// commandTimes summarises INFO commandstats: each command's calls and server
// time per record, the costliest first.
func commandTimes(ctx context.Context, rdb *redis.Client, records float64) string {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return err.Error()
	}
	type stat struct {
		name        string
		calls, usec float64
	}
	var stats []stat
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		st := stat{name: strings.TrimPrefix(name, "cmdstat_")}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				st.calls = f
			case "usec":
				st.usec = f
			}
		}
		stats = append(stats, st)
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].usec > stats[j].usec })
	var parts []string
	for _, st := range stats[:min(len(stats), 6)] {
		parts = append(parts, fmt.Sprintf("%s %.2f µs (%.2f calls)", st.name, st.usec/records, st.calls/records))
	}
	return strings.Join(parts, ", ") + " per record"
}
