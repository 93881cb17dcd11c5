package redissink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
)

// WatermarkPrefix starts the keys of the partition watermarks: per handler name,
// instance, topic and partition, "<WatermarkPrefix><name>:<instance>:<topic>:<partition>"
// holds "<next> <seq> <check>": the offset of the next record of that partition the
// instance has not applied, the highest change sequence the partition wrote there,
// and up to which sequence records are version-checked (see docs/redis.md).
const WatermarkPrefix = "__kanal:wm:"

// fenceAttempts bounds how often a batch is tried again when another writer moved
// the watermark between its read and the transaction (a rebalance, a replay group
// catching up): each attempt re-reads it and skips what the other one applied.
const fenceAttempts = 100

// delChunk bounds the keys of one DEL in a fenced transaction: the rows' DELs are
// sent as a few multi-key commands instead of one per row, which saves Redis a
// command dispatch per row.
const delChunk = 512

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

// watermark is what an instance knows of one partition, stored in its watermark
// key as "<next> <seq> <check>" ("?" for check when lost; an older release
// stored "<next>" alone).
type watermark struct {
	// next is the offset of the next record to apply: the records below it were
	// applied (or skipped) and are not applied again.
	next int64
	// seq is the highest change sequence the partition's records wrote on the
	// instance: no row of the partition there holds a newer version. 0: unknown.
	seq uint64
	// check is set by ResetOffsets (kanal offsets reset) to seq: the replayed
	// records up to it are older than or as old as rows Redis may hold, so they go
	// through the version-checked script; later ones are newer than anything
	// stored and take the plain path again. 0: nothing to check.
	check uint64
	// lost: the key was missing (evicted, deleted, the handler renamed, the
	// instance flushed) or unreadable, so nothing is known of what the instance
	// holds: every record is version-checked until a batch finds no row that
	// Redis holds at the same or a newer version.
	lost bool
}

// parseWatermark reads a watermark value; ok is false when it is not one.
func parseWatermark(s string) (w watermark, ok bool) {
	f := strings.Fields(s)
	if len(f) != 1 && len(f) != 3 {
		return watermark{}, false
	}
	var err error
	if w.next, err = strconv.ParseInt(f[0], 10, 64); err != nil || w.next < 0 {
		return watermark{}, false
	}
	if len(f) == 1 {
		return w, true // an older release's watermark: sequence unknown, nothing to check
	}
	if w.seq, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return watermark{}, false
	}
	if f[2] == "?" {
		w.lost = true
		return w, true
	}
	if w.check, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return watermark{}, false
	}
	return w, true
}

// String renders the watermark as its key stores it.
func (w watermark) String() string {
	b := strconv.AppendInt(make([]byte, 0, 48), w.next, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, w.seq, 10)
	b = append(b, ' ')
	if w.lost {
		return string(append(b, '?'))
	}
	return string(strconv.AppendUint(b, w.check, 10))
}

// checks reports whether o must go through the version-checked script: the
// instance may hold its row at the same or a newer version.
func (w watermark) checks(o *op) bool {
	return w.lost || w.check > 0 && o.low <= w.check
}

// after returns the watermark once the live records of a batch are applied. A
// lost watermark stays lost (clean says whether it may be found again, see
// fenceInstance).
func (w watermark) after(live []*op, clean bool) watermark {
	var top uint64
	for _, o := range live {
		w.next = max(w.next, o.rec.Offset+1)
		top = max(top, o.rec.Seq)
	}
	if w.lost {
		if clean {
			// Nothing in the batch was older than what Redis holds: take the
			// batch's newest change as the instance's highest version.
			return watermark{next: w.next, seq: top}
		}
		return watermark{next: w.next, lost: true}
	}
	w.seq = max(w.seq, top)
	if top > w.check {
		// The partition is in sequence order: every later record is newer than
		// anything the instance held when the check began.
		w.check = 0
	}
	return w
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
// corrupt "__sets"). The transaction ran, so the watermark is past the record:
// when the Runner hands it again (to isolate it for dead-lettering or halting) it
// would be skipped as applied, so Handle reports the error again (see
// rememberedFailure).
type failure struct {
	offset int64
	err    error
}

// slot is what one queued command of a fenced transaction applies, so that its
// reply can be matched with the rows.
type slot struct {
	kind byte // 'r' one row's write, 'd' a DEL of rows, 's' setsScript, 'a' applyScript
	o    *op  // kind 'r'
	rows []*op
}

// fenceInstance applies one instance's share of a batch (see applyFenced).
func (h *Handler) fenceInstance(ctx context.Context, name string, pk partKey, ops []*op) error {
	cl := h.r.clients[name]
	wmKey := h.watermarkKey(name, pk)
	var n counts
	for attempt := 1; ; attempt++ {
		var perr error    // a row Redis rejected
		var bad []*op     // the rows it concerns
		var found *string // set when a lost watermark may be found again: the value written
		var next watermark
		err := cl.Watch(ctx, func(tx *redis.Tx) error {
			perr, bad, found = nil, nil, nil
			w, err := h.readWatermark(ctx, tx, name, pk, wmKey)
			if err != nil {
				return err
			}
			n = counts{}
			var live []*op
			for _, o := range ops {
				if o.rec.Offset < w.next {
					if !o.dropped {
						n.stale++
					}
					continue
				}
				live = append(live, o)
			}
			if len(live) == 0 {
				return nil
			}
			var plain, moves, scripted []*op
			for _, o := range live {
				o.checked = false
				switch {
				case o.dropped:
				case w.checks(o):
					o.checked = true
					scripted = append(scripted, o)
				case o.slow:
					scripted = append(scripted, o)
				default:
					plain = append(plain, o)
					if len(o.t.sets) > 0 {
						moves = append(moves, o)
					}
				}
			}
			// Written as lost when lost: whether the batch was clean is only known
			// from the script's replies.
			next = w.after(live, false)
			var slots []slot
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				// Set moves read the rows' stored memberships, so they go first.
				for rest := moves; len(rest) > 0; {
					k := min(len(rest), chunkRows)
					keys := make([]string, k)
					args := make([]any, 0, 2*k)
					for i, o := range rest[:k] {
						keys[i] = o.key
						layout := "h"
						if o.t.layout == 'j' {
							layout = "j"
						}
						args = append(args, layout, o.args[3])
					}
					p.Eval(ctx, setsScript, keys, args...)
					slots = append(slots, slot{kind: 's', rows: rest[:k]})
					rest = rest[k:]
				}
				// Then the rows' old keys and tombstones go, in a few DELs.
				for rest := plain; len(rest) > 0; {
					keys := make([]string, 0, min(delChunk, 2*len(rest)))
					k := 0
					for k < len(rest) && len(keys) < delChunk {
						keys = appendDelKeys(keys, rest[k])
						k++
					}
					if len(keys) > 0 {
						p.Del(ctx, keys...)
						slots = append(slots, slot{kind: 'd', rows: rest[:k]})
					}
					rest = rest[k:]
				}
				for _, o := range plain {
					h.queueWrite(ctx, p, o)
					slots = append(slots, slot{kind: 'r', o: o})
				}
				for _, c := range h.scriptCalls(scripted, h.checkedArgs) {
					p.Eval(ctx, applyScript, c.keys, c.args...)
					slots = append(slots, slot{kind: 'a', rows: c.rows})
				}
				p.Set(ctx, wmKey, next.String(), 0)
				return nil
			})
			if errors.Is(err, redis.TxFailedErr) {
				return err
			}
			if len(cmds) == 0 || cmds[len(cmds)-1].Err() != nil {
				// The watermark did not move: EXEC was refused as a whole (EXECABORT,
				// OOM, READONLY), the connection failed, or the SET failed. Nothing
				// is lost by applying the batch again: plain writes of the same
				// records give the same rows, the others are version-checked.
				if err == nil {
					err = cmds[len(cmds)-1].Err()
				}
				return err
			}
			// The transaction ran: look at each command's result. newer counts the
			// version-checked upserts Redis held an older row (or none) for, notNewer
			// the version-checked changes it held the same or a newer version for.
			var newer, notNewer int
			reject := func(rows []*op, cerr error) {
				if perr == nil {
					perr, bad = h.rejected(ctx, name, pk, rows, cerr), rows
				}
			}
			for i, s := range slots {
				c := cmds[i]
				cerr := c.Err()
				if cerr != nil && !isRedisError(cerr) {
					return cerr
				}
				switch s.kind {
				case 'r':
					if cerr != nil {
						reject([]*op{s.o}, cerr)
					}
					n.count(s.o)
				case 'd':
					if cerr != nil {
						reject(s.rows, cerr)
					}
				case 's', 'a':
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
							if s.kind == 'a' {
								n.add(v)
								switch {
								case !s.rows[j].checked:
								case v == 0:
									notNewer++
								case v == 1:
									newer++
								}
							}
						}
					}
				}
			}
			if next.lost && perr == nil && newer > 0 && notNewer == 0 {
				// A clean batch: found again (deletes are no evidence: deleting a
				// row that is not there succeeds whatever Redis held before).
				v := next.String()
				found = &v
				next = w.after(live, true)
			}
			return nil
		}, wmKey)
		switch {
		case err == nil:
			h.addCounts(n)
			if found != nil {
				h.findWatermark(ctx, cl, name, pk, wmKey, *found, next)
			}
			if perr != nil {
				h.mu.Lock()
				for _, o := range bad {
					h.failed[pk] = append(h.failed[pk], failure{o.rec.Offset, perr})
				}
				h.mu.Unlock()
				return perr
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

// readWatermark reads the watermark inside the transaction's WATCH. A missing or
// unreadable one is lost: the batch is then version-checked.
func (h *Handler) readWatermark(ctx context.Context, tx *redis.Tx, inst string, pk partKey, key string) (watermark, error) {
	v, err := tx.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return watermark{lost: true}, nil
	case err != nil && !isRedisError(err):
		return watermark{}, err
	case err != nil && !strings.HasPrefix(err.Error(), "WRONGTYPE"):
		return watermark{}, err
	}
	w, ok := parseWatermark(v)
	if err != nil || !ok {
		// Someone wrote the key: treat it as lost (the version-checked path is
		// correct whatever Redis holds); the transaction overwrites it.
		h.log.WarnContext(ctx, "unreadable partition watermark: version-checking the batch", "instance", inst,
			"topic", pk.topic, "partition", pk.partition, "key", key)
		return watermark{lost: true}, nil
	}
	return w, nil
}

// findWatermark ends the lost state of a watermark after a clean batch (every
// version-checked row was newer than what Redis held): if no other writer changed
// it since (written is what the batch's transaction stored), the fast path resumes
// with the next batch. Failing is harmless: the next batch is checked again.
func (h *Handler) findWatermark(ctx context.Context, cl *redis.Client, inst string, pk partKey, key, written string, w watermark) {
	err := cl.Eval(ctx, casScript, []string{key}, written, w.String()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		h.log.WarnContext(ctx, "partition watermark stays lost", "instance", inst, "topic", pk.topic,
			"partition", pk.partition, "err", err)
	}
}

// casScript sets KEYS[1] to ARGV[2] if it holds ARGV[1].
const casScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end return 1`

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

// partName names a partition in errors.
func partName(pk partKey) string {
	if pk.topic == "" {
		return "batch without Kafka coordinates"
	}
	return "topic " + pk.topic + " partition " + strconv.FormatInt(int64(pk.partition), 10)
}

// offsetRange names the offsets of ops in errors.
func offsetRange(ops []*op) string {
	if len(ops) == 0 {
		return "no changes"
	}
	a, b := ops[0].rec.Offset, ops[len(ops)-1].rec.Offset
	if a == b {
		return fmt.Sprintf("offset %d (%d changes)", a, len(ops))
	}
	return fmt.Sprintf("offsets %d-%d (%d changes)", a, b, len(ops))
}

// describeRows names rows in errors: "table t, key k, offset o" for one;
// "tables t, u, keys k … l, offsets o-p (n rows)" for several. Offsets are left
// out for a batch without Kafka coordinates.
func describeRows(pk partKey, rows []*op) string {
	if len(rows) == 0 {
		return "no rows"
	}
	if len(rows) == 1 {
		o := rows[0]
		if pk.topic == "" {
			return fmt.Sprintf("table %s, key %s", o.table, o.recKey)
		}
		return fmt.Sprintf("table %s, key %s, offset %d", o.table, o.recKey, o.rec.Offset)
	}
	var tables []string
	for _, o := range rows {
		if !slices.Contains(tables, o.table) {
			tables = append(tables, o.table)
		}
	}
	first, last := rows[0], rows[len(rows)-1]
	label := "table"
	if len(tables) > 1 {
		label = "tables"
	}
	if pk.topic == "" {
		return fmt.Sprintf("%s %s, keys %s … %s (%d rows)", label, strings.Join(tables, ", "), first.recKey, last.recKey, len(rows))
	}
	return fmt.Sprintf("%s %s, keys %s … %s, offsets %d-%d (%d rows)", label, strings.Join(tables, ", "),
		first.recKey, last.recKey, first.rec.Offset, last.rec.Offset, len(rows))
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

// count counts a row written with plain commands.
func (n *counts) count(o *op) {
	if o.args[0].(string) == "d" {
		n.deletes++
	} else {
		n.upserts++
	}
}

func (h *Handler) addCounts(n counts) {
	h.upserts.Add(n.upserts)
	h.deletes.Add(n.deletes)
	h.stale.Add(n.stale)
}

// appendDelKeys adds the keys a row's plain write removes first: an upsert
// replaces the row (the hash is deleted so that fields of columns that became
// NULL or are no longer stored go; a JSON SET replaces the value by itself) and
// removes its tombstone, whether the change is a create or an update — after a
// compacted-away re-create, an update is the first change of the row since its
// delete; a delete removes the row and then writes the tombstone.
func appendDelKeys(keys []string, o *op) []string {
	switch {
	case o.args[0].(string) == "d":
		return append(keys, o.key)
	case o.t.layout == 'j':
		return append(keys, o.tomb)
	default:
		return append(keys, o.key, o.tomb)
	}
}

// queueWrite queues the one plain command that writes a row's last change in the
// batch, after its DEL (see appendDelKeys): HSET or SET of the row, or SET of the
// tombstone of a delete.
func (h *Handler) queueWrite(ctx context.Context, p redis.Pipeliner, o *op) {
	switch {
	case o.args[0].(string) == "d":
		p.Set(ctx, o.tomb, o.args[1], h.r.cfg.TombstoneTTL)
	case o.t.layout == 'j':
		p.Set(ctx, o.key, o.args[4], 0)
	default:
		p.HSet(ctx, o.key, o.args[4:]...)
	}
}

// checkedArgs returns a row's applyScript header and values. A lone tombstone
// without a change after it in the batch ("x": delete whatever the row holds) is
// right after every earlier record of the partition was applied, but not when
// version-checking: Redis may hold a newer row. Its delete is newer than every
// change before it in the partition, so it is versioned with the newest of those
// the handler saw (o.prev): it deletes a row older than that and never a newer
// one; without one it deletes nothing.
func (h *Handler) checkedArgs(o *op) []any {
	if !o.checked || o.args[0].(string) != "x" {
		return o.args
	}
	a := make([]any, len(o.args))
	copy(a, o.args)
	a[0], a[1] = "d", strconv.FormatUint(o.prev, 10)
	return a
}

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
