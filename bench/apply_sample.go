package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// sampleSize is how many of the workload topic's change records the reference
// stages keep in memory and cycle through: their targets' cost depends on the
// sizes of keys and values, not on their being all different, and the full
// run's million records would not fit comfortably.
const sampleSize = 10_000

// sampled is one change record of the workload topic.
type sampled struct {
	key    string
	value  []byte // the kanal JSON envelope as the producer wrote it
	change *schemas.Change
}

// sample reads (once) up to sampleSize change records, tombstones left out,
// from the start of the workload topic.
func (e *Env) sample(ctx context.Context) ([]sampled, error) {
	if e.samples != nil {
		return e.samples, nil
	}
	if len(e.Brokers) == 0 {
		return nil, fmt.Errorf("no Kafka with the workload topic (the last producer round failed)")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ConsumeTopics(e.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	want := min(sampleSize, e.Workload.RowChanges)
	var out []sampled
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Topic, err)
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			if len(out) >= want || r.Value == nil || derr != nil || !isChange(r) {
				return
			}
			cs, err := schemas.Decode(schemas.FormatJSON, r.Value)
			if err != nil || len(cs) != 1 {
				derr = fmt.Errorf("decode %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
				return
			}
			out = append(out, sampled{key: string(r.Key), value: r.Value, change: cs[0]})
		})
		if derr != nil {
			return nil, derr
		}
	}
	e.samples = out
	return out, nil
}

// isChange reports whether r carries a row change (kanal.op c, u, d or r).
func isChange(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == schemas.HeaderOp {
			switch schemas.Op(h.Value) {
			case schemas.OpCreate, schemas.OpUpdate, schemas.OpDelete, schemas.OpRead:
				return true
			}
		}
	}
	return false
}
