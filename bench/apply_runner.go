package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
)

// noopHandler applies nothing.
type noopHandler struct{}

func (noopHandler) Name() string                                 { return "noop" }
func (noopHandler) Handle(context.Context, consumer.Batch) error { return nil }

// runnerCeiling runs a consumer.Runner with a handler that does nothing over the
// workload's topic: fetching, decoding and batching alone, the ceiling of every
// handler's rate in a Runner on this machine.
func runnerCeiling(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	return timeHandler(ctx, env, "noop", noopHandler{})
}

// timeHandler runs h in a consumer.Runner (default settings, a new group) over
// the workload's topic until h has returned without error for every record
// (the changes and a tombstone per delete), and returns the workload's row
// changes and the time from the first batch handed to h to the return of the
// last one: joining the group and the assignment are left out. Sink stages use
// it, so they all measure the same way.
func timeHandler(ctx context.Context, env *Env, group string, h consumer.Handler) (uint64, time.Duration, error) {
	if len(env.Brokers) == 0 {
		return 0, 0, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	var (
		mu          sync.Mutex
		handled     atomic.Uint64
		first, last time.Time
	)
	timed := consumer.Wrap(h, func(ctx context.Context, b consumer.Batch) error {
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
		if err := h.Handle(ctx, b); err != nil {
			return err
		}
		mu.Lock()
		last = time.Now()
		mu.Unlock()
		handled.Add(uint64(len(b.Records)))
		return nil
	})
	env.groups++
	reg := consumer.NewRegistry()
	if err := reg.Register(timed, consumer.Tables("bench.orders"), consumer.Group(fmt.Sprintf("bench-%s-%d", group, env.groups))); err != nil {
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
	deadline := time.After(10 * time.Minute)
	for handled.Load() < records {
		select {
		case err := <-done:
			return 0, 0, fmt.Errorf("runner stopped after %d of %d records: %v", handled.Load(), records, err)
		case <-deadline:
			return 0, 0, fmt.Errorf("%d of %d records handled in 10 minutes", handled.Load(), records)
		case <-time.After(2 * time.Millisecond):
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return uint64(wl.RowChanges), last.Sub(first), nil
}
