package redissink

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ResetOffsets implements consumer.OffsetResetter, so that `kanal offsets reset
// --config …` of the handler's group also resets its partition watermarks on every
// instance: each given partition's watermark moves to the new offset, and the
// records up to the highest sequence the partition wrote are version-checked
// when they come again. So a replay from earliest re-applies what Redis lost (a
// restart without fsync, a failover to a replica that lagged) and keeps the rows
// Redis holds at newer versions. A watermark of unknown sequence is marked lost
// (every record version-checked). The watermarks belong to the handler name, so
// this affects every group running the handler under that name; group is not used.
func (h *Handler) ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	var pks []partKey
	for topic, ps := range offsets {
		for p := range ps {
			pks = append(pks, partKey{topic, p})
		}
	}
	if len(pks) == 0 {
		return nil
	}
	h.mu.Lock()
	for _, pk := range pks {
		delete(h.failed, pk)
		delete(h.parts, pk)
	}
	h.mu.Unlock()
	names := make([]string, 0, len(h.r.clients))
	for name := range h.r.clients {
		names = append(names, name)
	}
	var errs []error
	for _, name := range names {
		if err := h.resetInstance(ctx, name, pks, offsets); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// resetInstance resets the watermarks of pks on one instance, in one transaction
// under WATCH of them (a writer still running is either before or after it).
func (h *Handler) resetInstance(ctx context.Context, name string, pks []partKey, offsets map[string]map[int32]int64) error {
	cl := h.r.clients[name]
	keys := make([]string, len(pks))
	for i, pk := range pks {
		keys[i] = h.watermarkKey(name, pk)
	}
	for attempt := 1; ; attempt++ {
		err := cl.Watch(ctx, func(tx *redis.Tx) error {
			vals, err := tx.MGet(ctx, keys...).Result()
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for i, v := range vals {
					s, ok := v.(string)
					if !ok {
						continue // no watermark: the partition never wrote here, or it is lost already
					}
					w, ok := parseWatermark(s)
					at := offsets[pks[i].topic][pks[i].partition]
					switch {
					case !ok || w.lost || w.seq == 0:
						w = watermark{next: at, lost: true}
					default:
						w = watermark{next: at, seq: w.seq, check: w.seq}
					}
					p.Set(ctx, keys[i], w.String(), 0)
				}
				return nil
			})
			return err
		}, keys...)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, redis.TxFailedErr) && attempt < fenceAttempts:
			continue
		default:
			return fmt.Errorf("redis sink: instance %s: reset the watermarks of %d partitions: %w", name, len(pks), err)
		}
	}
}
