package cdctest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
)

// Runner is a consumer.Runner a test started, standing for one consumer
// process: Stop ends it as a clean shutdown does, Kill as a crash does.
type Runner struct {
	name    string
	net     *NetCut
	cancel  context.CancelFunc
	done    chan error
	timeout time.Duration
	once    sync.Once
}

// StartRunner runs a consumer.Runner of cfg and reg until Stop, Kill or the end
// of the test. Its Kafka connections go through a NetCut (see Kill), with a
// short heartbeat interval so that rebalances are quick. name labels its logs
// and errors; timeout bounds how long stopping may take.
func StartRunner(t testing.TB, name string, cfg consumer.Config, reg *consumer.Registry, log *slog.Logger, timeout time.Duration) *Runner {
	t.Helper()
	rr := &Runner{name: name, net: &NetCut{}, done: make(chan error, 1), timeout: timeout}
	r, err := consumer.NewRunner(cfg, reg, log,
		consumer.WithKafkaOptions(kgo.Dialer(rr.net.Dial), kgo.HeartbeatInterval(300*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr.cancel = cancel
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.Stop(t) })
	return rr
}

// Stop shuts the runner down gracefully (in-flight batches finish, offsets are
// committed, the group is left); an error Run returns fails the test.
func (rr *Runner) Stop(t testing.TB) {
	t.Helper()
	rr.stop(t, false)
}

// Kill makes the runner vanish as a killed process would: its network is cut
// before it is cancelled, so nothing more is committed and the group is not
// left (its partitions move after the session timeout). A handler that must
// stop applying at once is stopped by the caller first.
func (rr *Runner) Kill(t testing.TB) {
	t.Helper()
	rr.stop(t, true)
}

func (rr *Runner) stop(t testing.TB, kill bool) {
	t.Helper()
	rr.once.Do(func() {
		if kill {
			rr.net.Cut()
		}
		rr.cancel()
		select {
		case err := <-rr.done:
			if err != nil && !errors.Is(err, context.Canceled) && !kill {
				t.Errorf("runner %s: %v", rr.name, err)
			}
		case <-time.After(rr.timeout):
			t.Errorf("runner %s did not stop within %v", rr.name, rr.timeout)
		}
	})
}
