package redissink

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
)

// The fenced path: a batch from the Runner is applied per instance in one
// MULTI/EXEC under WATCH of the partition's watermark. Its jobs live in their own
// files: the watermark (watermark.go), sorting the row changes against it
// (sort.go), queueing the transaction (pipeline.go), reading its replies
// (replies.go), remembering rejected records (failures.go) and resetting
// watermarks (reset.go).

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

// applyFenced applies a batch of one partition: per instance one MULTI/EXEC
// holding the rows' writes and the new watermark, run only if the watermark is
// still what was read (WATCH). Records below the watermark were applied before (a
// redelivery, a replay, another consumer of the partition) and are skipped; the
// rest are applied in order, with plain commands, or through the version-checked
// script while the watermark says Redis may hold newer rows (it was lost, or a
// replay after kanal offsets reset). So each instance's applied records are a
// prefix of the partition and a row never goes back to an older change.
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
	all := make([]*op, len(ops))
	for i := range ops {
		all[i] = &ops[i]
		all[i].slow = slowKey[ops[i].key]
	}
	insts, shares := byInstance(all)
	return each(len(insts), 0, func(i int) error { return h.fenceInstance(ctx, insts[i], pk, shares[i]) })
}

// fence is one instance's share of a fenced batch.
type fence struct {
	h    *Handler
	inst string
	pk   partKey
	// conn is one connection of the instance's pool for the whole batch: WATCH
	// holds for the connection it was sent on.
	conn  *redis.Conn
	wmKey string
	ops   []*op
}

// outcome is what an attempt of a fence's transaction did.
type outcome struct {
	replies
	// found is set when a lost watermark may be found again: the value the
	// transaction wrote, and the watermark to write in its place.
	found *string
	next  watermark
}

// fenceInstance applies one instance's share of a batch (see applyFenced), trying
// again while other writers move the watermark.
func (h *Handler) fenceInstance(ctx context.Context, name string, pk partKey, ops []*op) error {
	f := &fence{h: h, inst: name, pk: pk, conn: h.r.clients[name].Conn(), wmKey: h.watermarkKey(name, pk), ops: ops}
	defer f.conn.Close()
	for attempt := 1; ; attempt++ {
		out, err := f.attempt(ctx)
		switch {
		case err == nil:
			h.addCounts(out.counts)
			if out.found != nil {
				// On the batch's connection: with a pool of one, another
				// would wait for this one.
				h.findWatermark(ctx, f.conn, name, pk, f.wmKey, *out.found, out.next)
			}
			if out.perr != nil {
				h.rememberFailure(pk, out.bad, out.perr)
				return out.perr
			}
			return nil
		case errors.Is(err, redis.TxFailedErr) && attempt < fenceAttempts:
			continue
		case errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("redis sink: instance %s: %s, %s: the watermark was moved by other writers %d times in a row: %w",
				name, partName(pk), offsetRange(ops), fenceAttempts, err)
		default:
			return fmt.Errorf("redis sink: instance %s: %s, %s: %w", name, partName(pk), offsetRange(ops), err)
		}
	}
}

// attempt reads the watermark under WATCH and runs the transaction that applies
// the records at or above it and moves it past them: two round trips, WATCH with
// GET, then MULTI … EXEC, which also ends the WATCH.
func (f *fence) attempt(ctx context.Context) (outcome, error) {
	var get *redis.StringCmd
	var watch *redis.Cmd
	_, err := f.conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		watch = p.Do(ctx, "watch", f.wmKey)
		get = p.Get(ctx, f.wmKey)
		return nil
	})
	switch {
	case watch.Err() != nil:
		return outcome{}, watch.Err()
	case err != nil && !errors.Is(err, redis.Nil) && !isRedisError(err):
		// No connection (go-redis then leaves the commands' errors unset).
		return outcome{}, err
	}
	// Where no EXEC follows, UNWATCH ends the WATCH: the connection goes back to
	// the pool, and another batch's EXEC on it would fail for this key.
	unwatch := func() error { return f.conn.Process(ctx, redis.NewStatusCmd(ctx, "unwatch")) }
	w, err := f.h.readWatermark(ctx, get, f.inst, f.pk, f.wmKey)
	if err != nil {
		_ = unwatch()
		return outcome{}, err
	}
	s := sortOps(f.ops, w)
	if len(s.live) == 0 {
		if err := unwatch(); err != nil {
			return outcome{}, err
		}
		return outcome{replies: replies{counts: counts{stale: s.stale}}}, nil
	}
	// Written as lost when lost: whether the batch was clean is only known from
	// the script's replies.
	next := w.after(s.live, false)
	var slots []slot
	cmds, err := f.conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		slots = f.h.queueFenced(ctx, p, &s, f.wmKey, next)
		return nil
	})
	if errors.Is(err, redis.TxFailedErr) || err != nil && !isRedisError(err) {
		// Another writer moved the watermark, or the connection failed.
		return outcome{}, err
	}
	if len(cmds) == 0 || cmds[len(cmds)-1].Err() != nil {
		// The watermark did not move: EXEC was refused as a whole (EXECABORT,
		// OOM, READONLY), the connection failed, or the SET failed. Nothing is
		// lost by applying the batch again: plain writes of the same records give
		// the same rows, the others are version-checked.
		if err == nil {
			err = cmds[len(cmds)-1].Err()
		}
		return outcome{}, err
	}
	r, err := f.h.readReplies(ctx, f.inst, f.pk, slots, cmds)
	if err != nil {
		return outcome{}, err
	}
	r.stale += s.stale
	out := outcome{replies: r, next: next}
	if next.lost && r.clean() {
		v := next.String()
		out.found = &v
		out.next = w.after(s.live, true)
	}
	return out, nil
}
