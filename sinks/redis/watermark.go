package redissink

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// WatermarkPrefix starts the keys of the partition watermarks: per handler name,
// instance, topic and partition, "<WatermarkPrefix><name>:<instance>:<topic>:<partition>"
// holds "<next> <seq> <check>": the offset of the next record of that partition the
// instance has not applied, the highest change sequence the partition wrote there,
// and up to which sequence records are version-checked (see docs/redis.md).
const WatermarkPrefix = "__kanal:wm:"

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
// fence.attempt).
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

// readWatermark reads the watermark from the reply of its GET under WATCH. A
// missing or unreadable one is lost: the batch is then version-checked.
func (h *Handler) readWatermark(ctx context.Context, get *redis.StringCmd, inst string, pk partKey, key string) (watermark, error) {
	v, err := get.Result()
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
func (h *Handler) findWatermark(ctx context.Context, cl redis.Scripter, inst string, pk partKey, key, written string, w watermark) {
	err := cl.Eval(ctx, casScript, []string{key}, written, w.String()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		h.log.WarnContext(ctx, "partition watermark stays lost", "instance", inst, "topic", pk.topic,
			"partition", pk.partition, "err", err)
	}
}

// casScript sets KEYS[1] to ARGV[2] if it holds ARGV[1].
const casScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end return 1`
