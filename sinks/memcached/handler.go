package memcachedsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
)

// errValue is wrapped by errors about a row the sink cannot store; they are
// permanent: retrying cannot help.
var errValue = errors.New("cannot store row")

// Handler writes change records to memcached, each row under its own key,
// version-guarded with gets/cas. It implements consumer.Handler and is safe for
// concurrent use by the Runner's partitions.
type Handler struct {
	cfg Config
	mc  *memcache.Client
	log *slog.Logger
	r   *router
	ttl int32 // tombstone expiration, seconds

	upserts, deletes, stale, skipped, conflicts atomic.Uint64
}

// Stats are counters of what the handler did since it was created.
type Stats struct {
	// Upserts and Deletes count rows written and tombstones written.
	Upserts, Deletes uint64
	// Stale counts changes not written because memcached held the row (or its
	// tombstone) at the same or a newer version: replays, redeliveries, late
	// batches of another consumer.
	Stale uint64
	// Skipped counts records of tables no rule matches, tombstones that follow
	// their delete, and changes superseded by a later change of the same row in
	// the batch.
	Skipped uint64
	// Conflicts counts cas/add attempts that lost a race with another writer of
	// the same key and were tried again.
	Conflicts uint64
}

// New builds a Handler from cfg (validated here). It connects lazily. log may
// be nil.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mc := memcache.New(cfg.Servers...)
	mc.Timeout = cfg.Timeout
	mc.MaxIdleConns = cfg.Concurrency + 2
	return &Handler{cfg: cfg, mc: mc, log: log.With("handler", cfg.Name), r: r, ttl: int32(cfg.TombstoneTTL.Seconds())}, nil
}

// Name returns Config.Name.
func (h *Handler) Name() string { return h.cfg.Name }

// TablePatterns returns the configured table patterns, for consumer.Tables.
func (h *Handler) TablePatterns() []string { return h.cfg.TablePatterns() }

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{Upserts: h.upserts.Load(), Deletes: h.deletes.Load(), Stale: h.stale.Load(),
		Skipped: h.skipped.Load(), Conflicts: h.conflicts.Load()}
}

// Close closes the connections.
func (h *Handler) Close() error { return h.mc.Close() }

// ItemKey returns the memcached key a record key of table ("db.table") is
// stored under, and false when no table rule matches.
func (h *Handler) ItemKey(table, recordKey string) (string, bool) {
	t := h.r.table(table)
	if t == nil {
		return "", false
	}
	return t.key.render(table, recordKey), true
}

// op is one row change to write.
type op struct {
	rec   *consumer.Record
	key   string // item key
	ver   uint64 // the change's version; 0 for an unversioned delete
	del   bool
	value []byte // the JSON to store
}

// Handle applies a batch. A row changed several times in the batch is written
// once, with its last change: every change carries the whole row. Each row is
// read with gets (many keys per round trip) and written with cas, or add when
// memcached has no item for it, only when the change's version (Record.Seq) is
// newer than the one stored; a lost race re-reads the item and tries again. A
// delete replaces the row with a tombstone holding its version, which expires
// after TombstoneTTL.
//
// A record the sink can never store (a change without a sequence, an unknown
// value type, a column named like a reserved member, a value larger than the
// server's item size limit) fails the batch with a consumer.Permanent error
// naming table, key and offset, and so does a truncate (wrapping ErrTruncate:
// memcached cannot list the table's rows to remove them); memcached being
// unreachable or failing is a plain error, retried by the Runner. Applying a
// batch again is safe: every write is version-checked.
func (h *Handler) Handle(ctx context.Context, b consumer.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	ops, err := h.build(ctx, b)
	if err != nil {
		return err
	}
	return h.apply(ctx, b, ops)
}

// build turns the batch into writes, the last change of each row only.
func (h *Handler) build(ctx context.Context, b consumer.Batch) ([]op, error) {
	// nextSeq[i] is the sequence of the first change after record i in the batch
	// (0: none): the bound that versions a tombstone whose delete is gone.
	nextSeq := make([]uint64, len(b.Records))
	for i, next := len(b.Records)-1, uint64(0); i >= 0; i-- {
		nextSeq[i] = next
		if r := &b.Records[i]; !r.Tombstone && r.Seq > 0 {
			next = r.Seq
		}
	}
	ops := make([]op, 0, len(b.Records))
	last := map[string]int{}
	var skipped uint64
	for i := range b.Records {
		rec := &b.Records[i]
		t := h.r.table(rec.Table)
		if t == nil {
			skipped++
			continue
		}
		if !rec.Tombstone && rec.Op == schemas.OpTruncate {
			h.log.WarnContext(ctx, "truncate not applied: memcached cannot list the table's keys", "topic", b.Topic,
				"partition", b.Partition, "table", rec.Table, "offset", rec.Offset, "pos", rec.Pos, "seq", rec.Seq)
			return nil, truncateError(b, rec)
		}
		if rec.Tombstone && i > 0 {
			if p := &b.Records[i-1]; !p.Tombstone && p.Op == schemas.OpDelete && p.Key == rec.Key {
				skipped++
				continue
			}
		}
		o := op{rec: rec, key: t.key.render(rec.Table, rec.Key)}
		if err := t.encode(&o, nextSeq[i]); err != nil {
			h.log.WarnContext(ctx, "cannot store change", "topic", b.Topic, "partition", b.Partition,
				"table", rec.Table, "key", rec.Key, "offset", rec.Offset, "err", err)
			return nil, consumer.Permanent(fmt.Errorf("memcached sink: %s: %w", describe(b, rec, o.key), err))
		}
		if j, ok := last[o.key]; ok {
			ops[j].rec = nil // superseded
			skipped++
		}
		last[o.key] = len(ops)
		ops = append(ops, o)
	}
	h.skipped.Add(skipped)
	out := ops[:0]
	for _, o := range ops {
		if o.rec != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

// describe names a record for errors: topic, partition, table, key, item key
// and offset.
func describe(b consumer.Batch, rec *consumer.Record, item string) string {
	return fmt.Sprintf("%s/%d: table %s, key %q (item %q), offset %d", b.Topic, b.Partition, rec.Table, rec.Key, item, rec.Offset)
}

// getChunk bounds the keys of one gets command.
const getChunk = 200

// apply reads the rows' current items and writes them, Concurrency at a time.
func (h *Handler) apply(ctx context.Context, b consumer.Batch, ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	cur := make(map[string]*memcache.Item, len(ops))
	keys := make([]string, 0, getChunk)
	for i := 0; i < len(ops); i += getChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys = keys[:0]
		for j := i; j < len(ops) && j < i+getChunk; j++ {
			keys = append(keys, ops[j].key)
		}
		items, err := h.mc.GetMulti(keys)
		if err != nil {
			return fmt.Errorf("memcached sink: reading %d rows, the first %s: %w", len(keys), describe(b, ops[i].rec, ops[i].key), err)
		}
		for k, it := range items {
			cur[k] = it
		}
	}
	workers := min(h.cfg.Concurrency, len(ops))
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ops) || ctx.Err() != nil {
					return
				}
				if err := h.write(&ops[i], cur[ops[i].key]); err != nil {
					errs[w] = fmt.Errorf("memcached sink: %s: %w", describe(b, ops[i].rec, ops[i].key), err)
					if consumer.IsPermanent(err) {
						errs[w] = consumer.Permanent(errs[w])
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	// A permanent error makes the batch permanent: the Runner splits it to find
	// the record, re-applying the rest (harmless: versions are checked).
	for _, err := range errs {
		if consumer.IsPermanent(err) {
			return err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// write stores one row change unless memcached holds the row at the same or a
// newer version; cur is the item read before (nil: none).
func (h *Handler) write(o *op, cur *memcache.Item) error {
	for attempt := 0; attempt < h.cfg.CASAttempts; attempt++ {
		if attempt > 0 {
			h.conflicts.Add(1)
			it, err := h.mc.Get(o.key)
			switch {
			case errors.Is(err, memcache.ErrCacheMiss):
				cur = nil
			case err != nil:
				return err
			default:
				cur = it
			}
		}
		item := &memcache.Item{Key: o.key, Value: o.value}
		if o.del {
			item.Expiration = h.ttl
		}
		var err error
		if cur == nil {
			if o.del && o.ver == 0 {
				// An unversioned delete of a row memcached does not hold: a
				// tombstone of version 0 would guard nothing.
				h.deletes.Add(1)
				return nil
			}
			err = h.mc.Add(item)
		} else {
			v, deleted := storedVersion(cur.Value)
			switch {
			case o.ver != 0 && v >= o.ver, o.ver == 0 && deleted:
				h.stale.Add(1)
				return nil
			case o.ver == 0:
				// The tombstone of an unversioned delete keeps the row's version:
				// changes up to it stay out, newer ones get in.
				item.Value = tombstone(nil, v)
			}
			item.CasID = cur.CasID
			err = h.mc.CompareAndSwap(item)
		}
		switch {
		case err == nil:
			if o.del {
				h.deletes.Add(1)
			} else {
				h.upserts.Add(1)
			}
			return nil
		case errors.Is(err, memcache.ErrNotStored), errors.Is(err, memcache.ErrCASConflict), errors.Is(err, memcache.ErrCacheMiss):
			// Another writer added, changed or removed the item (or it expired)
			// since we read it: read it again.
			continue
		case strings.Contains(err.Error(), "object too large"):
			return consumer.Permanent(fmt.Errorf("%w: %d bytes exceed the server's item size limit (memcached -I): %v", errValue, len(item.Value), err))
		default:
			return err
		}
	}
	return fmt.Errorf("the item changed under %d cas attempts in a row", h.cfg.CASAttempts)
}

// storedVersion reads the version of a stored value ("__v" leads it) and whether
// it is a tombstone. A value the sink did not write has version 0: it is
// replaced.
func storedVersion(v []byte) (uint64, bool) {
	rest, ok := strings.CutPrefix(string(v), `{"`+FieldVersion+`":`)
	if !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	ver, err := strconv.ParseUint(rest[:n], 10, 64)
	if err != nil {
		return 0, false
	}
	return ver, strings.HasPrefix(rest[n:], `,"`+FieldDeleted+`":true`)
}

// tombstone appends the stored value of a deleted row.
func tombstone(dst []byte, ver uint64) []byte {
	dst = append(dst, `{"`+FieldVersion+`":`...)
	dst = strconv.AppendUint(dst, ver, 10)
	return append(dst, `,"`+FieldDeleted+`":true}`...)
}

// encode fills in o's version and value. next is the sequence of the first
// change after the record in its batch (0: none).
func (t *table) encode(o *op, next uint64) error {
	rec := o.rec
	if rec.Tombstone {
		// A tombstone whose delete is not in front of it. With the delete's
		// sequence on it (the producer puts it there) it is that delete. Without
		// it (older records): a partition is in sequence order and all changes of
		// a row are in one partition, so with the next change's sequence n every
		// change of this row before the tombstone is < n-1 < n: n-1 versions the
		// delete as well. Without a next change the delete is unversioned.
		o.del = true
		switch {
		case rec.Seq > 0:
			o.ver = rec.Seq
		case next > 1:
			o.ver = next - 1
		}
		if o.ver > 0 {
			o.value = tombstone(nil, o.ver)
		}
		return nil
	}
	c := rec.Change
	if c == nil {
		return fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if rec.Seq == 0 {
		return fmt.Errorf("%w: change has no sequence (kanal.seq), so the row cannot carry its version", errValue)
	}
	o.ver = rec.Seq
	switch c.Op {
	case schemas.OpDelete:
		o.del = true
		o.value = tombstone(nil, o.ver)
		return nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	default:
		return fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	if c.After == nil {
		return fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	v := make([]byte, 0, 64+32*len(c.Columns))
	v = append(v, `{"`+FieldVersion+`":`...)
	v = strconv.AppendUint(v, o.ver, 10)
	for _, col := range c.Columns {
		name, ok := t.cols.Name(col.Name)
		if !ok {
			continue
		}
		if name == FieldVersion || name == FieldDeleted {
			return fmt.Errorf("%w: column %q has a reserved name; rename it (columns.rename)", errValue, col.Name)
		}
		val := c.After[col.Name]
		if !jsonValueOK(val) {
			return fmt.Errorf("%w: column %s: value of Go type %T", errValue, col.Name, val)
		}
		v = append(v, ',')
		v = schemas.AppendJSONString(v, name)
		v = append(v, ':')
		v = schemas.AppendJSONValue(v, val)
	}
	o.value = append(v, '}')
	return nil
}

// jsonValueOK reports whether v is one of the value types kanal's decoders
// produce (schemas.AppendJSONValue encodes anything, some of it lossily).
func jsonValueOK(v any) bool {
	switch v.(type) {
	case nil, int64, uint64, int, float32, float64, schemas.Decimal, string, []byte, bool:
		return true
	}
	return false
}

// router holds the compiled table rules.
type router struct {
	rules sinkconf.Rules[*table]
}

// table is a compiled TableConfig.
type table struct {
	key  keyTemplate
	cols sinkconf.Columns
}

func newRouter(cfg Config) (*router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &router{}
	for _, tc := range cfg.Tables {
		tmpl := tc.Key
		if tmpl == "" {
			tmpl = cfg.Key
		}
		k, err := parseKeyTemplate(tmpl)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		r.rules.Add(tc.Match, &table{key: k, cols: tc.Columns.Compile()})
	}
	return r, nil
}

// table returns the rule for "db.table", or nil when no rule matches.
func (r *router) table(name string) *table {
	t, _ := r.rules.Lookup(name)
	return t
}

// Ping checks that every server answers, for `kanal config check --connect`.
func (h *Handler) Ping(context.Context) error { return h.mc.Ping() }
