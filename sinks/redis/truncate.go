package redissink

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// truncateScanCount is the COUNT hint of the SCAN that finds a truncated table's
// rows, and the number of deletes sent per round trip.
const truncateScanCount = 1000

// handleTruncates applies b in runs split at its truncates, each truncate after
// the records before it: a truncate reaches every partition of the table's topic
// (docs/formats.md), and each partition's handler applies it where it stands in
// that partition.
func (h *Handler) handleTruncates(ctx context.Context, b consumer.Batch) (bool, error) {
	first := -1
	for i := range b.Records {
		if r := &b.Records[i]; !r.Tombstone && r.Op == schemas.OpTruncate {
			first = i
			break
		}
	}
	if first < 0 {
		return false, nil
	}
	if first > 0 {
		if err := h.Handle(ctx, consumer.Batch{Group: b.Group, Topic: b.Topic, Partition: b.Partition, Records: b.Records[:first]}); err != nil {
			return true, err
		}
	}
	rec := &b.Records[first]
	pk := partKey{b.Topic, b.Partition}
	if err := h.truncate(ctx, pk, rec); err != nil {
		return true, err
	}
	h.mu.Lock()
	ps := h.parts[pk]
	h.mu.Unlock()
	h.endBatch(pk, consumer.Batch{Records: b.Records[first : first+1]}, max(ps.seq, rec.Seq))
	if rest := b.Records[first+1:]; len(rest) > 0 {
		return true, h.Handle(ctx, consumer.Batch{Group: b.Group, Topic: b.Topic, Partition: b.Partition, Records: rest})
	}
	return true, nil
}

// truncate deletes every row of the table that is older than the truncate: on
// every instance of the table, each key under "<key_prefix><db>.<table>:" goes
// through the version-checked delete of the apply script, so a row written after
// the truncate (a newer version, from a partition that is ahead) stays, a row
// leaves its secondary sets, and its tombstone keeps a replay of an older change
// from bringing it back. Applying it again deletes nothing more.
func (h *Handler) truncate(ctx context.Context, pk partKey, rec *consumer.Record) error {
	t := h.r.table(rec.Table)
	if t == nil {
		return nil
	}
	if rec.Seq == 0 {
		return consumer.Permanent(fmt.Errorf("redis sink: %s: truncate of %s at offset %d has no sequence (kanal.seq): "+
			"the rows it removed cannot be told from later ones", partName(pk), rec.Table, rec.Offset))
	}
	ver := strconv.FormatUint(rec.Seq, 10)
	prefix := t.prefix + rec.Table + ":"
	deleted := 0
	for _, name := range t.names {
		cl := h.r.clients[name]
		var ops []*op
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			err := h.applyInstance(ctx, pk, name, ops)
			deleted += len(ops)
			ops = ops[:0]
			return err
		}
		it := cl.Scan(ctx, 0, globEscape(prefix)+"*", truncateScanCount).Iterator()
		for it.Next(ctx) {
			key := it.Val()
			if t.instance(key) != name {
				continue // not this instance's row (a ring member holding a stray copy)
			}
			ops = append(ops, &op{table: rec.Table, key: key, tomb: h.r.cfg.TombstonePrefix + key,
				recKey: strings.TrimPrefix(key, t.prefix), inst: name, rec: rec, t: t, kind: opDelete, ver: ver})
			if len(ops) >= truncateScanCount {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("redis sink: instance %s: %s: scan the rows of truncated %s: %w", name, partName(pk), rec.Table, err)
		}
		if err := flush(); err != nil {
			return err
		}
	}
	h.log.InfoContext(ctx, "truncate applied", "table", rec.Table, "topic", pk.topic, "partition", pk.partition,
		"offset", rec.Offset, "seq", rec.Seq, "rows_checked", deleted)
	return nil
}

// globEscape escapes the characters SCAN's MATCH pattern treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}
