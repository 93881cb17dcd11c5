package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// redisMaterialiser runs the Redis materialiser (sinks/redis, hash layout) in a
// consumer.Runner over the workload's topic, from an empty Redis and a new group,
// until every record is accounted for. The time runs from the first batch handed to
// the handler (group join and assignment excluded) to the last.
func redisMaterialiser(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	if len(env.Brokers) == 0 {
		return 0, 0, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	srv, err := env.Redis()
	if err != nil {
		return 0, 0, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	err = rdb.FlushAll(ctx).Err()
	rdb.Close()
	if err != nil {
		return 0, 0, err
	}
	scfg := redissink.DefaultConfig()
	scfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}
	scfg.Tables = []redissink.TableConfig{{Match: "bench.orders"}}
	h, err := redissink.New(scfg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	timed := &timedRedis{Handler: h}
	env.groups++
	reg := consumer.NewRegistry()
	if err := reg.Register(timed, consumer.Tables(h.TablePatterns()...), consumer.Group(fmt.Sprintf("bench-redis-%d", env.groups))); err != nil {
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
	go func() { done <- r.Run(runCtx) }()
	wl := env.Workload
	records := uint64(wl.RowChanges + wl.Deletes) // a tombstone follows each delete
	accounted := func() uint64 {
		s := h.Stats()
		return s.Upserts + s.Deletes + s.Stale + s.Skipped
	}
	deadline := time.After(10 * time.Minute)
	for accounted() < records {
		select {
		case err := <-done:
			return 0, 0, fmt.Errorf("runner stopped after %d of %d records: %v", accounted(), records, err)
		case <-deadline:
			return 0, 0, fmt.Errorf("%d of %d records applied in 10 minutes (%+v)", accounted(), records, h.Stats())
		case <-time.After(2 * time.Millisecond):
		}
	}
	end := time.Now()
	cancel()
	<-done
	return uint64(wl.RowChanges), end.Sub(timed.started()), nil
}

// timedRedis notes when the first batch arrives. It embeds the handler, so the
// Runner still sees what it implements besides Handle (consumer.UpdateBeforeUser).
type timedRedis struct {
	*redissink.Handler
	mu    sync.Mutex
	first time.Time
}

func (t *timedRedis) Handle(ctx context.Context, b consumer.Batch) error {
	t.mu.Lock()
	if t.first.IsZero() {
		t.first = time.Now()
	}
	t.mu.Unlock()
	return t.Handler.Handle(ctx, b)
}

func (t *timedRedis) started() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first
}
