package essink_test

import (
	"context"
	"testing"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/internal/estest"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// TestConformance runs the consumertest suite against the in-test server (a fresh
// one per check): final state, batches applied twice, crashes mid-batch and
// replays, and older changes never overwriting newer ones — the cluster's
// external versioning refusing them.
func TestConformance(t *testing.T) {
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		srv := newESServer(t, false)
		h := newHandler(t, config(srv.URL, essink.TableConfig{Match: "ct.*"}))
		cl := estest.Cluster{URL: srv.URL}
		state := func(ctx context.Context) (map[string]map[string]string, error) {
			out := map[string]map[string]string{}
			for _, d := range cl.Search(t, "ct.items") {
				out["ct.items:"+d.ID] = render(t, d.Source, map[string]bool{"data": true})
			}
			return out, nil
		}
		return consumertest.Sink{Handler: h, State: state, Versioned: true}
	})
}
