package redissink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// Handler materialises change records in Redis. It implements consumer.Handler and
// is safe for concurrent use by the Runner's partitions.
type Handler struct {
	r   *router
	log *slog.Logger
	ttl string // tombstone TTL in ms, as the script takes it

	mu sync.Mutex
	// parts remembers, per partition, the end of the previous batch.
	parts map[partKey]partState
	// failed holds, per partition, records Redis rejected in a fenced transaction,
	// whichever instance rejected them.
	failed map[partKey][]failure

	upserts, deletes, stale, skipped atomic.Uint64
}

type partKey struct {
	topic     string
	partition int32
}

// partState is what the handler remembers of a partition's previous batch.
type partState struct {
	// lastDel is the key of a delete that ended the batch: the tombstone that
	// follows it (first in the next batch) is then already applied and is skipped
	// instead of being treated as a delete of unknown version.
	lastDel string
	// next is the offset after the batch, and seq the newest change sequence seen
	// in the partition up to there: for the next batch, if it continues from next,
	// a lower bound of the sequence of a delete whose tombstone opens it.
	next int64
	seq  uint64
}

// Stats are counters of what the handler did since it was created.
type Stats struct {
	// Upserts and Deletes count rows written and removed.
	Upserts, Deletes uint64
	// Stale counts changes not applied because Redis already held them: records
	// below their partition's watermark (redeliveries, replays, a zombie
	// consumer's batches) or, in batches without Kafka coordinates, rows (or
	// tombstones) at the same or a newer version.
	Stale uint64
	// Skipped counts records of tables no rule matches, tombstones that follow their
	// delete, and changes superseded by a later change of the same row in the batch.
	Skipped uint64
}

// New builds a Handler from cfg (validated here). It connects lazily: the first
// batch dials each instance it needs. log may be nil.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for name, in := range cfg.Instances {
		tlsconfig.WarnPlaintext(log, "redis instance "+name, in.Addr, "instances."+name+".tls", &in.TLS)
	}
	return &Handler{
		r:      r,
		log:    log.With("handler", cfg.Name),
		ttl:    strconv.FormatInt(cfg.TombstoneTTL.Milliseconds(), 10),
		parts:  map[partKey]partState{},
		failed: map[partKey][]failure{},
	}, nil
}

// Name returns Config.Name.
func (h *Handler) Name() string { return h.r.cfg.Name }

// TablePatterns returns the configured table patterns, for consumer.Tables.
func (h *Handler) TablePatterns() []string { return h.r.cfg.TablePatterns() }

// UsesUpdateBefore reports false: a row is written from its change's after
// image (or deleted by key), so the Runner need not decode updates' before
// images (consumer.UpdateBeforeUser).
func (h *Handler) UsesUpdateBefore() bool { return false }

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{Upserts: h.upserts.Load(), Deletes: h.deletes.Load(), Stale: h.stale.Load(), Skipped: h.skipped.Load()}
}

// Close closes the Redis connections.
func (h *Handler) Close() error { return h.r.close() }

// Handle applies a batch, instances in parallel. A row changed several times in
// the batch is written once, with its last change: every change carries the full
// row, so the last one alone gives the same result.
//
// A batch from the Runner (a topic and partition, offsets in order) is fenced: per
// instance one MULTI/EXEC, under WATCH of the partition's watermark, writes the
// records at or above the watermark with plain commands and moves the watermark
// past them (see applyFenced). Other batches (ApplyChanges, no topic, offsets out of
// order) go through applyScript's per-row version check, in pipelines of up to
// PipelineMax changes.
//
// A record the sink can never store (an unknown value type, a column named like a
// reserved field, a change without a sequence) fails the batch with a
// consumer.Permanent error naming table and key, as does a row Redis rejects (a key
// of another type); Redis being unreachable or refusing writes is a plain error,
// retried by the Runner. Applying a batch again is safe: what was applied is below
// the watermark, or fails the version check.
func (h *Handler) Handle(ctx context.Context, b consumer.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	if done, err := h.handleTruncates(ctx, b); done {
		return err
	}
	pk := partKey{b.Topic, b.Partition}
	isFenced := fenced(b)
	h.mu.Lock()
	ps := h.parts[pk]
	var ferr error
	if isFenced {
		ferr = h.rememberedFailure(pk, b.Records)
	}
	h.mu.Unlock()
	if ferr != nil {
		return ferr
	}
	prevDel := ps.lastDel
	// prevMax is the newest change sequence of the partition before the record at
	// hand: from the previous batch when this one continues it.
	var prevMax uint64
	if b.Records[0].Offset >= ps.next {
		prevMax = ps.seq
	}

	ops := make([]op, 0, len(b.Records))
	var names storedNames
	var strs strBuf
	var args anyBuf
	var lastName string
	var lastT *table
	last := make(map[string]int, len(b.Records)) // row key → index in ops
	var skipped uint64
	// nextSeq[i] is the sequence of the first change after record i in the batch
	// (0: none): the bound that versions a tombstone whose delete is gone.
	nextSeq := make([]uint64, len(b.Records))
	for i, next := len(b.Records)-1, uint64(0); i >= 0; i-- {
		nextSeq[i] = next
		if r := &b.Records[i]; !r.Tombstone && r.Seq > 0 {
			next = r.Seq
		}
	}
	for i := range b.Records {
		rec := &b.Records[i]
		prev := prevMax
		if !rec.Tombstone {
			prevMax = max(prevMax, rec.Seq)
		}
		if rec.Table != lastName || lastT == nil {
			// A batch is mostly one table's: the router's lookup (a map
			// under a lock every worker takes) once per run of it.
			lastName, lastT = rec.Table, h.r.table(rec.Table)
		}
		t := lastT
		if t == nil {
			skipped++
			continue
		}
		if rec.Tombstone && h.followsItsDelete(b.Records, i, prevDel) {
			skipped++
			continue
		}
		o, err := h.build(t, rec, nextSeq[i], &names, &strs, &args)
		if err != nil {
			h.log.WarnContext(ctx, "cannot store change", "topic", b.Topic, "partition", b.Partition,
				"table", rec.Table, "key", rec.Key, "offset", rec.Offset, "err", err)
			return consumer.Permanent(fmt.Errorf("redis sink: %s: %s: %w", partName(pk), describeRows(pk, []*op{&o}), err))
		}
		o.prev, o.low = prev, rec.Seq
		if o.low == 0 {
			o.low = prev + 1
		}
		if j, ok := last[o.key]; ok {
			ops[j].dropped = true
			skipped++
		}
		last[o.key] = len(ops)
		ops = append(ops, o)
	}
	h.skipped.Add(skipped)

	if isFenced {
		if err := h.applyFenced(ctx, pk, ops); err != nil {
			return err
		}
		h.endBatch(pk, b, prevMax)
		return nil
	}

	live := make([]*op, 0, len(ops))
	for i := range ops {
		if !ops[i].dropped {
			live = append(live, &ops[i])
		}
	}
	if err := h.apply(ctx, pk, live); err != nil {
		return err
	}
	h.endBatch(pk, b, prevMax)
	return nil
}

// endBatch remembers how the batch ended (see partState).
func (h *Handler) endBatch(pk partKey, b consumer.Batch, seq uint64) {
	lr := &b.Records[len(b.Records)-1]
	ps := partState{next: lr.Offset + 1, seq: seq}
	if !lr.Tombstone && lr.Op == schemas.OpDelete {
		ps.lastDel = lr.Key
	}
	h.mu.Lock()
	h.parts[pk] = ps
	h.mu.Unlock()
}

// followsItsDelete reports whether the tombstone at recs[i] directly follows the
// delete of its key, in this batch or as the end of the previous one.
func (h *Handler) followsItsDelete(recs []consumer.Record, i int, prevDel string) bool {
	if i == 0 {
		return prevDel != "" && prevDel == recs[0].Key
	}
	p := &recs[i-1]
	return !p.Tombstone && p.Op == schemas.OpDelete && p.Key == recs[i].Key
}

// ApplyChanges applies changes as one batch, building the records the Runner would
// deliver (record key from Change.Key, Seq from Change.Seq). It is the benchmark's
// and tools' way in without Kafka; changes must be in the order they happened.
func (h *Handler) ApplyChanges(ctx context.Context, changes []*schemas.Change) error {
	recs := make([]consumer.Record, len(changes))
	for i, c := range changes {
		recs[i] = consumer.Record{Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
	}
	return h.Handle(ctx, consumer.Batch{Topic: "", Partition: -1, Records: recs})
}

// byInstance splits ops by the instance holding their rows, instances in the
// order of their first row, each share in batch order.
func byInstance(ops []*op) (insts []string, shares [][]*op) {
	at := map[string]int{}
	i := -1
	for _, o := range ops {
		if i >= 0 && insts[i] == o.inst {
			// Consecutive rows mostly share their instance (always with one):
			// no map lookup for them.
			shares[i] = append(shares[i], o)
			continue
		}
		var ok bool
		i, ok = at[o.inst]
		if !ok {
			i = len(insts)
			at[o.inst] = i
			insts = append(insts, o.inst)
			shares = append(shares, nil)
		}
		shares[i] = append(shares[i], o)
	}
	return insts, shares
}

// each runs f(0) … f(n-1), at most limit at a time (0: all at once; one alone
// runs without a goroutine), and returns their errors joined. A permanent error
// anywhere is returned alone: it makes the batch permanent, and the Runner splits
// it to find the record, re-applying the rest (harmless: what was applied is
// below the watermark or fails the version check).
func each(n, limit int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	if limit <= 0 {
		limit = n
	}
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i)
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
