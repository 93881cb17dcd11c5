package redissink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
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

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{Upserts: h.upserts.Load(), Deletes: h.deletes.Load(), Stale: h.stale.Load(), Skipped: h.skipped.Load()}
}

// Close closes the Redis connections.
func (h *Handler) Close() error { return h.r.close() }

// op is one row change: its part of a script call, and what the fenced path needs.
type op struct {
	table   string
	key     string // row key in Redis
	tomb    string // its tombstone key
	recKey  string // Kafka record key, for errors and logs
	inst    string
	dropped bool  // a later change of the same row in the batch supersedes it
	args    []any // op, version, layout, sets, then the values (see applyScript)

	rec  *consumer.Record
	t    *table
	sets []string // set memberships after the change: set key, member, …
	// prev is the newest change sequence before this record in its partition that
	// the handler saw (0: none), and low a lower bound of the record's own: its
	// sequence, or prev+1 for a tombstone whose delete is gone.
	prev, low uint64
	// slow: the fenced path cannot write this row with plain commands (a lone
	// tombstone, whose row's memberships only Redis knows) and runs the script.
	slow bool
	// checked: in this attempt of a fenced transaction the row goes through the
	// version-checked script (see watermark).
	checked bool
}

// A script call applies up to chunkRows row changes, and more than one only while
// their arguments stay within chunkArgs: this saves Redis a command dispatch and a
// script setup per row (~25% more rows/s than one EVALSHA per row).
const (
	chunkRows = 64
	chunkArgs = 4096
)

// A batch of one instance is split into up to roundTrips round trips (of at least
// minRoundTrip changes each) that run concurrently; see applyInstance.
const (
	roundTrips   = 4
	minRoundTrip = 64
)

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
	last := map[string]int{} // row key → index in ops
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
		t := h.r.table(rec.Table)
		if t == nil {
			skipped++
			continue
		}
		if rec.Tombstone && h.followsItsDelete(b.Records, i, prevDel) {
			skipped++
			continue
		}
		o, err := h.build(t, rec, nextSeq[i], &names)
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

	byInst := map[string][]*op{}
	for i := range ops {
		if !ops[i].dropped {
			byInst[ops[i].inst] = append(byInst[ops[i].inst], &ops[i])
		}
	}
	if err := h.apply(ctx, pk, byInst); err != nil {
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

// build turns a record into a script call. next is the sequence of the first change
// after rec in its partition, when the batch has one.
func (h *Handler) build(t *table, rec *consumer.Record, next uint64, names *storedNames) (op, error) {
	o := op{table: rec.Table, key: t.prefix + rec.Key, recKey: rec.Key, rec: rec, t: t}
	o.inst = t.instance(o.key)
	o.tomb = h.r.cfg.TombstonePrefix + o.key
	layout := "h"
	if t.layout == 'j' {
		layout = "j"
	}
	if rec.Tombstone {
		// A tombstone whose delete was compacted away (or is in an earlier batch).
		// Its delete's sequence d is not on it, but a partition is in sequence order
		// and all changes of a row are in one partition: with the next change's
		// sequence n, every change of this row before the tombstone is < d < n and
		// every one after it is >= n, so n-1 versions the delete as well as d would.
		// Without a next change the delete is applied whatever version Redis holds
		// (see docs/redis.md).
		kind, ver := "x", "0"
		switch {
		case rec.Seq > 0:
			kind, ver = "d", strconv.FormatUint(rec.Seq, 10)
		case next > 1:
			kind, ver = "d", strconv.FormatUint(next-1, 10)
		}
		o.args = []any{kind, ver, layout, ""}
		return o, nil
	}
	c := rec.Change
	if c == nil {
		return o, fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if rec.Seq == 0 {
		return o, fmt.Errorf("%w: change has no sequence (kanal.seq), so the row cannot carry its version", errValue)
	}
	ver := strconv.FormatUint(rec.Seq, 10)
	switch c.Op {
	case schemas.OpDelete:
		o.args = []any{"d", ver, layout, ""}
		return o, nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	default:
		return o, fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	row := c.After
	if row == nil {
		return o, fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	pairs, err := t.memberships(rec, row)
	if err != nil {
		return o, err
	}
	o.sets = pairs
	sets := encodeMemberships(pairs)
	o.args = make([]any, 0, 8+2*len(c.Columns))
	o.args = append(o.args, "u", ver, layout, sets)
	if t.layout == 'j' {
		v, err := t.appendJSON(make([]byte, 0, 64+32*len(c.Columns)), c, row, ver, sets)
		if err != nil {
			return o, err
		}
		o.args = append(o.args, v)
		return o, nil
	}
	o.args = append(o.args, FieldVersion, ver)
	var nulls []string
	scratch := make([]byte, 0, 16*len(c.Columns))
	sn := names.of(t, c.Columns)
	for i, col := range c.Columns {
		if !sn.ok[i] {
			continue
		}
		name := sn.names[i]
		if isReserved(name) {
			return o, fmt.Errorf("%w: column %q has a reserved name; rename it (columns.rename)", errValue, col.Name)
		}
		v := row[col.Name]
		if v == nil {
			nulls = append(nulls, name)
			continue
		}
		hv, err := hashValue(v, &scratch)
		if err != nil {
			return o, fmt.Errorf("column %s: %w", col.Name, err)
		}
		o.args = append(o.args, sn.boxed[i], hv)
	}
	if len(nulls) > 0 {
		o.args = append(o.args, FieldNulls, EncodeNulls(nulls))
	}
	if sets != "" {
		o.args = append(o.args, FieldSets, sets)
	}
	return o, nil
}

// storedNames holds, within one Handle call, the stored field names of the last
// column list seen, boxed for the argument list once: a batch's changes of a table
// share their columns, and boxing every name of every row cost ~10% of the
// handler's CPU.
type storedNames struct {
	t     *table
	cols  []string
	names []string
	ok    []bool
	boxed []any
}

// of returns the stored names of cols for table t.
func (s *storedNames) of(t *table, cols []schemas.Column) *storedNames {
	if s.t == t && len(s.cols) == len(cols) {
		same := true
		for i := range cols {
			if cols[i].Name != s.cols[i] {
				same = false
				break
			}
		}
		if same {
			return s
		}
	}
	s.t = t
	s.cols, s.names, s.ok, s.boxed = s.cols[:0], s.names[:0], s.ok[:0], s.boxed[:0]
	for _, c := range cols {
		name, ok := t.stored(c.Name)
		s.cols = append(s.cols, c.Name)
		s.names = append(s.names, name)
		s.ok = append(s.ok, ok)
		s.boxed = append(s.boxed, name)
	}
	return s
}

// memberships returns the sets the row is in: set key, member, set key, member, ….
func (t *table) memberships(rec *consumer.Record, row map[string]any) ([]string, error) {
	if len(t.sets) == 0 || row == nil {
		return nil, nil
	}
	var out []string
	for _, s := range t.sets {
		k, ok, err := s.key.render(row)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var m string
		if s.member == nil {
			m = strings.TrimPrefix(rec.Key, rec.Table+":")
		} else if m, ok, err = s.member.render(row); err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		out = append(out, k, m)
	}
	return out, nil
}

// encodeMemberships renders memberships as netstrings, as "__sets" stores them.
func encodeMemberships(pairs []string) string {
	var b []byte
	for _, s := range pairs {
		b = appendNetstring(b, s)
	}
	return string(b)
}

// appendJSON renders the row as the JSON layout stores it: "__v" first (the script
// reads it with a prefix match), the stored columns in table order, then "__sets".
func (t *table) appendJSON(dst []byte, c *schemas.Change, row map[string]any, ver, sets string) ([]byte, error) {
	dst = append(dst, `{"__v":`...)
	dst = append(dst, ver...)
	for _, col := range c.Columns {
		name, ok := t.stored(col.Name)
		if !ok {
			continue
		}
		if isReserved(name) {
			return nil, fmt.Errorf("%w: column %q has a reserved name; rename it (columns.rename)", errValue, col.Name)
		}
		dst = append(dst, ',')
		dst = schemas.AppendJSONString(dst, name)
		dst = append(dst, ':')
		var err error
		if dst, err = appendJSONValue(dst, row[col.Name]); err != nil {
			return nil, fmt.Errorf("column %s: %w", col.Name, err)
		}
	}
	if sets != "" {
		dst = append(dst, `,"__sets":`...)
		dst = schemas.AppendJSONString(dst, sets)
	}
	return append(dst, '}'), nil
}

// apply runs the script calls, one goroutine per instance.
func (h *Handler) apply(ctx context.Context, pk partKey, byInst map[string][]*op) error {
	if len(byInst) == 1 {
		for name, ops := range byInst {
			return h.applyInstance(ctx, pk, name, ops)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 0, len(byInst))
	var mu sync.Mutex
	for name, ops := range byInst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.applyInstance(ctx, pk, name, ops); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// A permanent error anywhere makes the batch permanent: the Runner splits it to
	// find the record, re-applying the rest (harmless: versions are checked).
	for _, err := range errs {
		if consumer.IsPermanent(err) {
			return err
		}
	}
	return errors.Join(errs...)
}

// applyInstance sends an instance's row changes as round trips of at most
// PipelineMax changes, up to roundTrips of them at a time on their own connections.
// One round trip at a time would leave Redis idle while the handler encodes the next
// one and the handler idle while Redis runs the script: overlapping them is worth
// ~1.5x rows/s. The rows of a batch are distinct keys (Handle keeps a row's last
// change only), so the order in which round trips run does not matter.
func (h *Handler) applyInstance(ctx context.Context, pk partKey, name string, ops []*op) error {
	cl := h.r.clients[name]
	size := min(h.r.cfg.PipelineMax, max(minRoundTrip, (len(ops)+roundTrips-1)/roundTrips))
	if len(ops) <= size {
		return h.pipeline(ctx, pk, name, cl, ops)
	}
	var parts [][]*op
	for len(ops) > 0 {
		n := min(len(ops), size)
		parts = append(parts, ops[:n])
		ops = ops[n:]
	}
	errs := make([]error, len(parts))
	sem := make(chan struct{}, roundTrips)
	var wg sync.WaitGroup
	for i, part := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = h.pipeline(ctx, pk, name, cl, part)
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

// scriptCall is one applyScript call: its rows, keys and arguments.
type scriptCall struct {
	rows []*op
	keys []string
	args []any
}

// scriptCalls splits rows into applyScript calls of up to chunkRows rows, and more
// than one only while their arguments stay within chunkArgs. argsOf gives a row's
// header and values.
func (h *Handler) scriptCalls(rows []*op, argsOf func(*op) []any) []scriptCall {
	var calls []scriptCall
	for rest := rows; len(rest) > 0; {
		n, nargs := 0, 1
		for n < len(rest) && n < chunkRows {
			a := len(rest[n].args) + 1
			if n > 0 && nargs+a > chunkArgs {
				break
			}
			nargs += a
			n++
		}
		c := scriptCall{rows: rest[:n], keys: make([]string, 0, 2*n), args: make([]any, 0, nargs)}
		c.args = append(c.args, h.ttl)
		for _, o := range c.rows {
			a := argsOf(o)
			c.keys = append(c.keys, o.key, o.tomb)
			c.args = append(c.args, a[:4]...)
			c.args = append(c.args, len(a)-4)
			c.args = append(c.args, a[4:]...)
		}
		calls = append(calls, c)
		rest = rest[n:]
	}
	return calls
}

// pipeline sends up to PipelineMax row changes in one round trip, as script calls
// of up to chunkRows changes each. When Redis does not know the script (it restarted,
// or SCRIPT FLUSH ran) it loads it and sends them again: the changes that were applied
// the first time are skipped by their version check.
func (h *Handler) pipeline(ctx context.Context, pk partKey, name string, cl *redis.Client, ops []*op) error {
	calls := h.scriptCalls(ops, func(o *op) []any { return o.args })
	for attempt := 0; ; attempt++ {
		pipe := cl.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = pipe.EvalSha(ctx, applySHA, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		noScript := false
		for i, cmd := range cmds {
			cerr := cmd.Err()
			if cerr != nil {
				if strings.HasPrefix(cerr.Error(), "NOSCRIPT") {
					noScript = true
				}
				continue
			}
			// A row the script rejects is an error in its slot of the reply.
			res, _ := cmd.Val().([]any)
			for j, v := range res {
				rerr, ok := v.(error)
				if !ok || !strings.Contains(rerr.Error(), "KANAL ") || j >= len(calls[i].rows) {
					continue
				}
				return h.rejected(ctx, name, pk, calls[i].rows[j:j+1], rerr)
			}
		}
		if err == nil {
			return h.count(name, cmds, len(ops))
		}
		if !noScript || attempt > 0 {
			return fmt.Errorf("redis sink: instance %s: %s: %s: %w", name, partName(pk), describeRows(pk, ops), err)
		}
		h.log.InfoContext(ctx, "loading the apply script", "instance", name)
		if err := cl.ScriptLoad(ctx, applyScript).Err(); err != nil {
			return fmt.Errorf("redis sink: instance %s: SCRIPT LOAD: %w", name, err)
		}
	}
}

// count adds the script's per-row results to the counters; it fails when the replies
// do not hold one result per row sent.
func (h *Handler) count(inst string, cmds []*redis.Cmd, rows int) error {
	var up, del, stale uint64
	got := 0
	for _, c := range cmds {
		res, _ := c.Val().([]any)
		got += len(res)
		for _, v := range res {
			switch v, _ := v.(int64); v {
			case 0:
				stale++
			case 1:
				up++
			case 2:
				del++
			}
		}
	}
	h.upserts.Add(up)
	h.deletes.Add(del)
	h.stale.Add(stale)
	if got != rows {
		return fmt.Errorf("redis sink: instance %s: the apply script answered %d results for %d changes", inst, got, rows)
	}
	return nil
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
