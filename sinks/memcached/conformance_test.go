package memcachedsink_test

import (
	"context"
	"testing"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

// TestConformance runs the consumertest suite: final state, batches applied
// twice, crashes mid-batch and replays, and older changes never overwriting newer
// ones. Each check gets its own memcached (it starts in milliseconds); the state
// is every live row the server holds, keyed by record key.
func TestConformance(t *testing.T) {
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		srv := testenv.Memcached(t)
		h := newHandler(t, config(srv.Addr, memcachedsink.TableConfig{Match: "ct.*"}))
		state := func(ctx context.Context) (map[string]map[string]string, error) {
			return image(t, srv.Addr, "ct.items:", map[string]bool{"data": true}), nil
		}
		return consumertest.Sink{Handler: h, State: state, Versioned: true}
	})
}
