package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
)

// noopHandler counts what it is handed and applies nothing.
type noopHandler struct {
	mu    sync.Mutex
	first time.Time
	n     atomic.Uint64
}

func (h *noopHandler) Name() string { return "noop" }

func (h *noopHandler) Handle(_ context.Context, b consumer.Batch) error {
	h.mu.Lock()
	if h.first.IsZero() {
		h.first = time.Now()
	}
	h.mu.Unlock()
	h.n.Add(uint64(len(b.Records)))
	return nil
}

// runnerCeiling runs a consumer.Runner with a handler that does nothing over the
// workload's topic: fetching, decoding and batching alone, the ceiling of every
// handler's rate in a Runner on this machine.
func runnerCeiling(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	if len(env.Brokers) == 0 {
		return 0, 0, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	h := &noopHandler{}
	env.groups++
	reg := consumer.NewRegistry()
	if err := reg.Register(h, consumer.Tables("bench.orders"), consumer.Group(fmt.Sprintf("bench-noop-%d", env.groups))); err != nil {
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
	for h.n.Load() < records {
		select {
		case err := <-done:
			return 0, 0, fmt.Errorf("runner stopped after %d of %d records: %v", h.n.Load(), records, err)
		case <-deadline:
			return 0, 0, fmt.Errorf("%d of %d records handled in 10 minutes", h.n.Load(), records)
		case <-time.After(2 * time.Millisecond):
		}
	}
	end := time.Now()
	cancel()
	<-done
	h.mu.Lock()
	defer h.mu.Unlock()
	return uint64(wl.RowChanges), end.Sub(h.first), nil
}
