package redissink_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

var conformanceDB atomic.Int32

// TestConformance runs the consumertest suite: final state, batches applied twice,
// crashes mid-batch and replays, and older changes never overwriting newer ones.
// Each check gets an empty Redis database (16 per server, reused round robin after
// a FLUSHDB).
func TestConformance(t *testing.T) {
	srv := startRedis(t)
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		db := int(conformanceDB.Add(1) % 16)
		cl := client(t, srv.Addr, db)
		if err := cl.FlushDB(ctxT(t)).Err(); err != nil {
			t.Fatal(err)
		}
		cfg := oneInstance(srv.Addr, redissink.TableConfig{Match: "ct.*"})
		cfg.Instances["main"] = redissink.InstanceConfig{Addr: srv.Addr, DB: db}
		h := newHandler(t, cfg)
		state := func(ctx context.Context) (map[string]map[string]string, error) {
			out := map[string]map[string]string{}
			iter := cl.Scan(ctx, 0, "ct.items:*", 1000).Iterator()
			for iter.Next(ctx) {
				m, err := cl.HGetAll(ctx, iter.Val()).Result()
				if err != nil {
					return nil, err
				}
				row, err := redissink.DecodeHash(m)
				if err != nil {
					return nil, err
				}
				r := map[string]string{}
				for c, v := range row.Values {
					if c == "data" {
						v = fmt.Sprintf("0x%x", []byte(v))
					}
					r[c] = v
				}
				for c := range row.Null {
					r[c] = "NULL"
				}
				out[strings.Clone(iter.Val())] = r
			}
			return out, iter.Err()
		}
		return consumertest.Sink{Handler: h, State: state, Versioned: true}
	})
}
