package redissink

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
)

// The applyScript results of one row: see applyScript.
const (
	resultStale   int64 = 0 // not newer than what Redis holds: nothing written
	resultUpsert  int64 = 1
	resultDeleted int64 = 2
)

// counts are the outcomes of one instance's transaction, added to Stats once it ran.
type counts struct{ upserts, deletes, stale uint64 }

// add counts one applyScript result.
func (n *counts) add(scriptResult int64) {
	switch scriptResult {
	case resultStale:
		n.stale++
	case resultUpsert:
		n.upserts++
	case resultDeleted:
		n.deletes++
	}
}

// count counts a row written with plain commands.
func (n *counts) count(o *op) {
	if o.kind == opUpsert {
		n.upserts++
	} else {
		n.deletes++
	}
}

func (h *Handler) addCounts(n counts) {
	h.upserts.Add(n.upserts)
	h.deletes.Add(n.deletes)
	h.stale.Add(n.stale)
}

// replies is what the replies of a fenced transaction that ran say.
type replies struct {
	counts
	// perr is the error of the first rows Redis rejected, bad those rows.
	perr error
	bad  []*op
	// newer counts the version-checked upserts Redis held an older row (or none)
	// for, notNewer the version-checked changes it held the same or a newer
	// version for: a lost watermark is found again after a batch with newer
	// upserts and nothing not newer (deletes are no evidence: deleting a row
	// that is not there succeeds whatever Redis held before).
	newer, notNewer int
}

// clean reports whether the batch may end the lost state of a watermark.
func (r *replies) clean() bool { return r.perr == nil && r.newer > 0 && r.notNewer == 0 }

// readReplies reads the replies of a fenced transaction that ran: cmds[i] is the
// reply of slots[i]. A connection failure is returned as the error; rows Redis
// rejected are in the result.
func (h *Handler) readReplies(ctx context.Context, inst string, pk partKey, slots []slot, cmds []redis.Cmder) (replies, error) {
	var r replies
	reject := func(rows []*op, cerr error) {
		if r.perr == nil {
			r.perr, r.bad = h.rejected(ctx, inst, pk, rows, cerr), rows
		}
	}
	for i, s := range slots {
		c := cmds[i]
		cerr := c.Err()
		if cerr != nil && !isRedisError(cerr) {
			return r, cerr
		}
		switch s.kind {
		case slotWrite:
			if cerr != nil {
				reject(s.rows, cerr)
			}
			r.count(s.rows[0])
		case slotDel:
			if cerr != nil {
				reject(s.rows, cerr)
			}
		case slotMoves, slotScript:
			if cerr != nil {
				// The script failed as a whole: which of its rows were
				// applied is not known, so every one of them is reported.
				reject(s.rows, cerr)
				continue
			}
			rc, _ := c.(*redis.Cmd)
			if rc == nil {
				continue
			}
			res, _ := rc.Val().([]any)
			for j, v := range res {
				if j >= len(s.rows) {
					break
				}
				switch v := v.(type) {
				case error:
					reject(s.rows[j:j+1], v)
				case int64:
					if s.kind != slotScript {
						continue
					}
					r.add(v)
					switch {
					case !s.rows[j].checked:
					case v == resultStale:
						r.notNewer++
					case v == resultUpsert:
						r.newer++
					}
				}
			}
		}
	}
	return r, nil
}

// isRedisError tells an error reply of a command from a connection failure.
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// rejected builds the permanent error for rows Redis refused: one row is named by
// table, key and offset; several (a script call that failed as a whole) by their
// tables, first and last key and offsets.
func (h *Handler) rejected(ctx context.Context, inst string, pk partKey, rows []*op, err error) error {
	what := describeRows(pk, rows)
	h.log.WarnContext(ctx, "row rejected by Redis", "instance", inst, "topic", pk.topic, "partition", pk.partition,
		"rows", what, "err", err)
	return consumer.Permanent(fmt.Errorf("redis sink: instance %s: %s: %s: %w", inst, partName(pk), what, err))
}
