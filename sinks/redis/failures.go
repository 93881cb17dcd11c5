package redissink

import (
	"github.com/kanal-cdc/kanal/consumer"
)

// failure is a record whose writes Redis rejected (a set key of another type, a
// corrupt "__sets"). The transaction ran, so the watermark is past the record:
// when the Runner hands it again (to isolate it for dead-lettering or halting) it
// would be skipped as applied, so Handle reports the error again (see
// rememberedFailure).
type failure struct {
	offset int64
	err    error
}

// rememberedFailure forgets the rejected records of the partition the batch
// starts after (the Runner dead-lettered them and went on, or halted and was
// moved on), and returns the remembered error of a record the batch holds. It runs
// once per batch, before the instances' transactions, so a record is remembered
// whichever instance rejected it. h.mu must be held.
func (h *Handler) rememberedFailure(pk partKey, recs []consumer.Record) error {
	fs := h.failed[pk]
	if len(fs) == 0 {
		return nil
	}
	first, last := recs[0].Offset, recs[len(recs)-1].Offset
	kept := fs[:0]
	for _, f := range fs {
		if f.offset >= first {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		delete(h.failed, pk)
		return nil
	}
	h.failed[pk] = kept
	for _, f := range kept {
		if f.offset > last {
			continue
		}
		for i := range recs {
			if recs[i].Offset == f.offset {
				return f.err
			}
		}
	}
	return nil
}

// rememberFailure remembers that Redis rejected the records of rows with err.
func (h *Handler) rememberFailure(pk partKey, rows []*op, err error) {
	h.mu.Lock()
	for _, o := range rows {
		h.failed[pk] = append(h.failed[pk], failure{o.rec.Offset, err})
	}
	h.mu.Unlock()
}
