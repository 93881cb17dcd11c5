package consumer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Abort simulates a crash of r: partitions are dropped at once, nothing more is
// committed and the group is not left. Tests cut the client's network first so
// that nothing the client still has in flight reaches the broker.
func Abort(r *Runner) {
	for _, g := range r.groups {
		g.abort()
	}
}

// RecordDecoder exposes a worker's record decoder to benchmarks.
type RecordDecoder struct{ d recordDecoder }

// NewRecordDecoder returns a worker's record decoder; skipUpdateBefore as a
// group whose handlers read no update's before image.
func NewRecordDecoder(skipUpdateBefore bool) *RecordDecoder {
	return &RecordDecoder{recordDecoder{dec: newDecoder(nil, skipUpdateBefore)}}
}

// Decode appends kr's records to dst, as a worker does.
func (d *RecordDecoder) Decode(dst []Record, kr *kgo.Record) ([]Record, error) {
	return d.d.decode(context.Background(), dst, kr)
}
