package redissink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// WatermarkPrefix starts the keys of the partition watermarks: per handler name,
// instance, topic and partition, "<WatermarkPrefix><name>:<instance>:<topic>:<partition>"
// holds the offset of the next record of that partition the instance has not
// applied (see docs/redis.md).
const WatermarkPrefix = "__kanal:wm:"

// fenceAttempts bounds how often a batch is tried again when another writer moved
// the watermark between its read and the transaction (a rebalance, a replay group
// catching up): each attempt re-reads it and skips what the other one applied.
const fenceAttempts = 100

// fenced reports whether a batch comes from a Kafka partition in offset order (what
// the Runner delivers), so that the partition watermark can stand in for per-row
// version checks.
func fenced(b consumer.Batch) bool {
	if b.Topic == "" || b.Partition < 0 {
		return false
	}
	for i := 1; i < len(b.Records); i++ {
		if b.Records[i].Offset < b.Records[i-1].Offset {
			return false
		}
	}
	return true
}

// watermarkKey names the watermark of one partition on one instance.
func (h *Handler) watermarkKey(inst string, pk partKey) string {
	return WatermarkPrefix + h.r.cfg.Name + ":" + inst + ":" + pk.topic + ":" + strconv.FormatInt(int64(pk.partition), 10)
}

// applyFenced applies a batch of one partition with plain commands: per instance one
// MULTI/EXEC holding the rows' writes and the new watermark, run only if the
// watermark is still what was read (WATCH). Records below the watermark were
// applied before (a redelivery, a replay, another consumer of the partition) and
// are skipped; the rest are applied in order. So each instance's applied records
// are a prefix of the partition and a row never goes back to an older change.
//
// ops holds every change of the batch in order, superseded ones included: a row is
// written once, with its last change (which carries the whole row, and whose set
// moves start from the memberships Redis holds), but every record moves the
// watermark.
func (h *Handler) applyFenced(ctx context.Context, pk partKey, ops []op) error {
	// A lone tombstone goes through applyScript (in the same transaction): the row
	// it deletes may be in sets, and only the stored row knows which.
	slowKey := map[string]bool{}
	for i := range ops {
		if o := &ops[i]; o.rec.Tombstone {
			slowKey[o.key] = true
		}
	}
	byInst := map[string][]*op{}
	var order []string
	for i := range ops {
		o := &ops[i]
		o.slow = slowKey[o.key]
		if _, ok := byInst[o.inst]; !ok {
			order = append(order, o.inst)
		}
		byInst[o.inst] = append(byInst[o.inst], o)
	}
	if len(order) == 1 {
		return h.fenceInstance(ctx, order[0], pk, byInst[order[0]])
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, name := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.fenceInstance(ctx, name, pk, byInst[name])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if consumer.IsPermanent(err) {
			return err
		}
	}
	return errors.Join(errs...)
}

// failure is a record whose writes Redis rejected (a set key of another type, a
// corrupt "__sets"). The transaction ran, so the watermark is past the
// record: when the Runner hands it again (to isolate it for dead-lettering or
// halting) it would be skipped as applied, so failedBefore reports the error again.
type failure struct {
	offset int64
	err    error
}

// fenceInstance applies one instance's share of a batch (see applyFenced).
func (h *Handler) fenceInstance(ctx context.Context, name string, pk partKey, ops []*op) error {
	if err := h.failedBefore(pk, ops); err != nil {
		return err
	}
	cl := h.r.clients[name]
	wmKey := h.watermarkKey(name, pk)
	var n counts
	for attempt := 1; ; attempt++ {
		var perr error // a row Redis rejected
		var bad *op    // its change
		err := cl.Watch(ctx, func(tx *redis.Tx) error {
			wm, err := tx.Get(ctx, wmKey).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			n = counts{}
			var live []*op
			next := wm
			for _, o := range ops {
				if o.rec.Offset < wm {
					if !o.dropped {
						n.stale++
					}
					continue
				}
				live = append(live, o)
				next = max(next, o.rec.Offset+1)
			}
			if len(live) == 0 {
				return nil
			}
			var owners []*op              // the op of each queued command (nil: the watermark)
			var scripts, setCalls [][]*op // the rows of each applyScript and setsScript call
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				var slow, moves []*op
				for _, o := range live {
					switch {
					case o.dropped:
					case o.slow:
						slow = append(slow, o)
					case len(o.t.sets) > 0:
						moves = append(moves, o)
					}
				}
				// Set moves read the rows' stored memberships, so they go first.
				for len(moves) > 0 {
					k := min(len(moves), chunkRows)
					keys := make([]string, k)
					args := make([]any, 0, 2*k)
					for i, o := range moves[:k] {
						keys[i] = o.key
						layout := "h"
						if o.t.layout == 'j' {
							layout = "j"
						}
						args = append(args, layout, o.args[3])
					}
					p.Eval(ctx, setsScript, keys, args...)
					setCalls = append(setCalls, moves[:k])
					owners = append(owners, nil)
					moves = moves[k:]
				}
				for _, o := range live {
					if o.slow {
						continue
					}
					for range h.queueFast(ctx, p, o, &n) {
						owners = append(owners, o)
					}
				}
				for len(slow) > 0 {
					k := min(len(slow), chunkRows)
					keys, args := h.scriptCall(slow[:k])
					p.Eval(ctx, applyScript, keys, args...)
					scripts = append(scripts, slow[:k])
					owners = append(owners, nil)
					slow = slow[k:]
				}
				p.Set(ctx, wmKey, next, 0)
				owners = append(owners, nil)
				return nil
			})
			if errors.Is(err, redis.TxFailedErr) {
				return err
			}
			if err != nil && strings.HasPrefix(err.Error(), "EXECABORT") {
				// Redis refused to queue a command (OOM, for one): nothing ran and
				// the watermark did not move, so the batch is simply retried.
				return err
			}
			// The transaction ran (or never started): look at each command's result.
			si := 0
			for i, c := range cmds {
				if i >= len(owners) {
					break
				}
				if o := owners[i]; o != nil {
					if cerr := c.Err(); cerr != nil && perr == nil && isRedisError(cerr) {
						perr, bad = h.rejected(ctx, name, o, cerr), o
					}
					continue
				}
				ec, ok := c.(*redis.Cmd)
				if !ok {
					continue
				}
				res, _ := ec.Val().([]any)
				if len(setCalls) > 0 {
					rows := setCalls[0]
					setCalls = setCalls[1:]
					if cerr := ec.Err(); cerr != nil && perr == nil && isRedisError(cerr) {
						perr, bad = h.rejected(ctx, name, rows[0], cerr), rows[0]
					}
					for j, v := range res {
						if rerr, isErr := v.(error); isErr && j < len(rows) && perr == nil {
							perr, bad = h.rejected(ctx, name, rows[j], rerr), rows[j]
						}
					}
					continue
				}
				if cerr := ec.Err(); cerr != nil && perr == nil && isRedisError(cerr) {
					// The script failed as a whole (not a row it rejected).
					perr, bad = h.rejected(ctx, name, scripts[si][0], cerr), scripts[si][0]
				}
				for j, v := range res {
					if j >= len(scripts[si]) {
						break
					}
					switch v := v.(type) {
					case error:
						if perr == nil {
							perr, bad = h.rejected(ctx, name, scripts[si][j], v), scripts[si][j]
						}
					case int64:
						n.add(v)
					}
				}
				si++
			}
			if err != nil && perr == nil {
				return err
			}
			if perr != nil {
				h.mu.Lock()
				h.failed[pk] = append(h.failed[pk], failure{bad.rec.Offset, perr})
				h.mu.Unlock()
			}
			return nil
		}, wmKey)
		switch {
		case err == nil && perr != nil:
			h.addCounts(n)
			return perr
		case err == nil:
			h.addCounts(n)
			return nil
		case errors.Is(err, redis.TxFailedErr) && attempt < fenceAttempts:
			continue
		default:
			return fmt.Errorf("redis sink: instance %s: %s[%d], %d changes: %w", name, pk.topic, pk.partition, len(ops), err)
		}
	}
}

// isRedisError tells an error reply of a command from a connection failure.
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// rejected builds the permanent error for a row Redis refused.
func (h *Handler) rejected(ctx context.Context, inst string, o *op, err error) error {
	h.log.WarnContext(ctx, "row rejected by Redis", "table", o.table, "key", o.recKey, "offset", o.rec.Offset, "instance", inst, "err", err)
	return consumer.Permanent(fmt.Errorf("redis sink: instance %s: table %s, key %s, offset %d: %w", inst, o.table, o.recKey, o.rec.Offset, err))
}

// failedBefore returns the remembered error of a rejected record in ops, and forgets
// the rejected records the partition has moved past.
func (h *Handler) failedBefore(pk partKey, ops []*op) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := h.failed[pk]
	if len(fs) == 0 || len(ops) == 0 {
		return nil
	}
	first := ops[0].rec.Offset
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
	for _, o := range ops {
		for _, f := range kept {
			if f.offset == o.rec.Offset {
				return f.err
			}
		}
	}
	return nil
}

// counts are the outcomes of one instance's transaction, added to Stats once it ran.
type counts struct{ upserts, deletes, stale uint64 }

func (n *counts) add(scriptResult int64) {
	switch scriptResult {
	case 0:
		n.stale++
	case 1:
		n.upserts++
	case 2:
		n.deletes++
	}
}

func (h *Handler) addCounts(n counts) {
	h.upserts.Add(n.upserts)
	h.deletes.Add(n.deletes)
	h.stale.Add(n.stale)
}

// queueFast queues the plain commands of a row's last change in the batch and
// returns how many. An upsert replaces the row (DEL of the row and, for a create,
// its tombstone; then HSET or SET), so fields of columns that became NULL or are no
// longer stored go, also when the changes between the stored row and this one were
// compacted away. A delete removes the row and leaves its tombstone.
func (h *Handler) queueFast(ctx context.Context, p redis.Pipeliner, o *op, n *counts) int {
	if o.dropped {
		return 0
	}
	kind, ver := o.args[0].(string), o.args[1].(string)
	if kind == "d" {
		p.Del(ctx, o.key)
		p.Set(ctx, o.tomb, ver, h.r.cfg.TombstoneTTL)
		n.deletes++
		return 2
	}
	q := 0
	switch {
	case o.rec.Change.Op == schemas.OpCreate:
		p.Del(ctx, o.key, o.tomb)
		q++
	case o.t.layout != 'j':
		p.Del(ctx, o.key)
		q++
	}
	if o.t.layout == 'j' {
		p.Set(ctx, o.key, o.args[4], 0)
	} else {
		p.HSet(ctx, o.key, o.args[4:]...)
	}
	n.upserts++
	return q + 1
}

// scriptCall builds the keys and arguments of one applyScript call.
func (h *Handler) scriptCall(ops []*op) ([]string, []any) {
	keys := make([]string, 0, 2*len(ops))
	args := make([]any, 0, 1+6*len(ops))
	args = append(args, h.ttl)
	for _, o := range ops {
		keys = append(keys, o.key, o.tomb)
		args = append(args, o.args[:4]...)
		args = append(args, len(o.args)-4)
		args = append(args, o.args[4:]...)
	}
	return keys, args
}
