package kafkaconn

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProduceWait produces recs and waits for them until ctx ends, returning the
// first error. Unlike kgo's ProduceSync it gives up then: franz-go keeps
// retrying records it cannot deliver (an unreachable broker), and a stop must
// not wait for that.
func ProduceWait(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	done := make(chan error, len(recs))
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	}
	var first error
	for range recs {
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}
