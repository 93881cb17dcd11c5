package bench

import (
	"context"
	"time"

	"github.com/kanal-cdc/kanal/internal/estest"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

// esBulkEncode runs the Elasticsearch sink (one index, external versions, the
// default bulk size) in a consumer.Runner over the workload's topic, against
// the in-test server answering every bulk action with 201 without parsing or
// storing the documents: no Elasticsearch can run here, so what this measures
// is the sink's side — building the actions, encoding the NDJSON, HTTP,
// decoding the per-item answers — with the server's work reduced to splitting
// lines, in the bench process on the same cores.
func esBulkEncode(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv := estest.NewServer(true)
	defer srv.Close()
	cfg := essink.DefaultConfig()
	cfg.URLs = []string{srv.URL}
	cfg.Tables = []essink.TableConfig{{Match: "bench.orders"}}
	h, err := essink.New(cfg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	return timeHandler(ctx, env, "elasticsearch", h)
}
