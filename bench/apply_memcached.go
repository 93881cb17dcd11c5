package bench

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

// memcachedSets is memcached's own rate for the sink's writes: the workload's
// row count of plain sets (no version guard, no read) of rows as JSON — the
// sampled changes' rows, cycled — over as many connections as the sink's
// default concurrency, with gomemcache, the client the sink uses. The sink
// does a gets and a cas (or add) per row; memcached answers one command per
// round trip, so this is its ceiling.
func memcachedSets(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := env.Memcached()
	if err != nil {
		return 0, 0, err
	}
	samples, err := env.sample(ctx)
	if err != nil {
		return 0, 0, err
	}
	values := make([][]byte, len(samples))
	for i, s := range samples {
		row := s.change.After
		if row == nil {
			row = s.change.Before
		}
		if values[i], err = json.Marshal(row); err != nil {
			return 0, 0, err
		}
	}
	workers := memcachedsink.DefaultConfig().Concurrency
	mc := memcache.New(srv.Addr)
	mc.MaxIdleConns = workers + 2
	mc.Timeout = memcachedsink.DefaultConfig().Timeout
	defer mc.Close()
	if err := mc.FlushAll(); err != nil {
		return 0, 0, err
	}
	total := env.Workload.RowChanges
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	began := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				s := i % len(samples)
				if err := mc.Set(&memcache.Item{Key: "plain:" + samples[s].key, Value: values[s]}); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	dur := time.Since(began)
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return 0, 0, err
	}
	return uint64(total), dur, nil
}

// memcachedSink runs the memcached sink (default settings: version-guarded
// gets + cas/add, 16 rows at once) in a consumer.Runner over the workload's
// topic, into an emptied memcached.
func memcachedSink(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := env.Memcached()
	if err != nil {
		return 0, 0, err
	}
	mc := memcache.New(srv.Addr)
	err = mc.FlushAll()
	mc.Close()
	if err != nil {
		return 0, 0, err
	}
	cfg := memcachedsink.DefaultConfig()
	cfg.Servers = []string{srv.Addr}
	cfg.Tables = []memcachedsink.TableConfig{{Match: "bench.orders"}}
	h, err := memcachedsink.New(cfg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	return timeHandler(ctx, env, "memcached", h)
}
