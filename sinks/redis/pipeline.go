package redissink

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// delChunk bounds the keys of one DEL in a fenced transaction: the rows' DELs are
// sent as a few multi-key commands instead of one per row, which saves Redis a
// command dispatch per row.
const delChunk = 512

// slotKind is what one queued command of a fenced transaction does.
type slotKind uint8

const (
	slotMoves     slotKind = iota + 1 // setsScript moving rows between their sets
	slotDel                           // a DEL of rows' old keys and tombstones
	slotWrite                         // one row's plain write (HSET, SET)
	slotScript                        // applyScript applying rows version-checked
	slotWatermark                     // the SET of the new watermark, last
)

// slot is one queued command of a fenced transaction and the rows it applies, so
// that its reply can be matched with them.
type slot struct {
	kind slotKind
	rows []*op
}

// queueFenced queues the commands of one instance's fenced transaction on p, in
// the order they must run, and the SET of the watermark next last. It returns
// what each command applies, in queue order.
func (h *Handler) queueFenced(ctx context.Context, p redis.Pipeliner, s *sorted, wmKey string, next watermark) []slot {
	slots := make([]slot, 0, len(s.plain)+len(s.moves)/chunkRows+len(s.scripted)/chunkRows+4)
	// Set moves read the rows' stored memberships, so they go first.
	for rest := s.moves; len(rest) > 0; {
		k := min(len(rest), chunkRows)
		keys := make([]string, k)
		args := make([]any, 0, 2*k)
		for i, o := range rest[:k] {
			keys[i] = o.key
			args = append(args, o.t.layout.code(), o.sets)
		}
		p.Eval(ctx, setsScript, keys, args...)
		slots = append(slots, slot{kind: slotMoves, rows: rest[:k]})
		rest = rest[k:]
	}
	// Then the rows' old keys go, in a few DELs.
	tombTTL := h.r.cfg.TombstoneTTL > 0
	for rest := s.plain; len(rest) > 0; {
		args := make([]any, 1, 1+min(delChunk, 2*len(rest)))
		args[0] = "del"
		k := 0
		for k < len(rest) && len(args) <= delChunk {
			args = appendDelKeys(args, rest[k], tombTTL)
			k++
		}
		if len(args) > 1 {
			p.Do(ctx, args...)
			slots = append(slots, slot{kind: slotDel, rows: rest[:k]})
		}
		rest = rest[k:]
	}
	for i, o := range s.plain {
		h.queueWrite(ctx, p, o)
		slots = append(slots, slot{kind: slotWrite, rows: s.plain[i : i+1]})
	}
	for _, c := range h.scriptCalls(s.scripted) {
		p.Eval(ctx, applyScript, c.keys, c.args...)
		slots = append(slots, slot{kind: slotScript, rows: c.rows})
	}
	p.Set(ctx, wmKey, next.String(), 0)
	return append(slots, slot{kind: slotWatermark})
}

// appendDelKeys adds the keys a row's plain write removes first: a hash-layout
// upsert replaces the row (the hash is deleted so that fields of columns that
// became NULL or are no longer stored go; a JSON SET replaces the value by itself,
// whatever the key held); a delete removes the row and then writes the tombstone.
//
// An upsert removes the row's tombstone only when tombstones never expire
// (tombTTL is false: tombstone_ttl 0), so that none outlives its row for good.
// Otherwise it leaves it to expire: a tombstone is only read when its row does not
// exist (applyScript), and one that outlives a re-create is older than the row (a
// partition holds all of a row's changes, in sequence order), so a version check
// that reads it once the row is gone again compares with an older version than
// the row had: it never refuses a change newer than the row, and still refuses
// those before the delete. Not deleting it saves Redis a lookup of a key that
// almost never exists: 0.5–0.9 µs of redis-server CPU per row, 7–16 % of its time
// (bench 4b, BenchmarkServerCostMix; docs/bench.md, round 7c).
func appendDelKeys(keys []any, o *op, tombTTL bool) []any {
	switch {
	case o.kind != opUpsert:
		return append(keys, o.key)
	case o.t.layout == layoutJSON && tombTTL:
		return keys
	case o.t.layout == layoutJSON:
		return append(keys, o.tomb)
	case tombTTL:
		return append(keys, o.hset[1]) // the key as HSET has it boxed
	default:
		return append(keys, o.hset[1], o.tomb)
	}
}

// queueWrite queues the one plain command that writes a row's last change in the
// batch, after its DEL (see appendDelKeys): HSET or SET of the row, or SET of the
// tombstone of a delete.
func (h *Handler) queueWrite(ctx context.Context, p redis.Pipeliner, o *op) {
	switch {
	case o.kind != opUpsert:
		p.Set(ctx, o.tomb, o.ver, h.r.cfg.TombstoneTTL)
	case o.t.layout == layoutJSON:
		p.Set(ctx, o.key, o.values[0], 0)
	default:
		p.Do(ctx, o.hset...)
	}
}
