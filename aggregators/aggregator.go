package aggregators

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/sqloffsets"
	"github.com/kanal-cdc/kanal/schemas"
)

// Aggregator is a consumer.Handler that keeps summary tables in one database,
// exactly once. It implements consumer.OffsetStore and consumer.OffsetResetter:
// each batch's summary changes, per-row state and the partition's next offset
// are written in one database transaction.
//
// Register it with the source tables it reads (Tables), in a consumer group of
// its own: RegisterWith does both.
type Aggregator struct {
	name     string
	log      *slog.Logger
	t        target
	sums     []*summaryRT
	bySource map[string][]*summaryRT
	sources  []string

	stats    Stats
	batchMax int
	// readAll counts down the batches that read the state of every key (see
	// Handle).
	readAll atomic.Int64

	// testHookInTxn, when set (tests only), runs inside every batch
	// transaction, between reading the state and writing.
	testHookInTxn func()
}

// Stats are counters of a running Aggregator.
type Stats struct {
	// Batches counts committed batches.
	Batches atomic.Int64
	// Records counts records handed to Handle (including skipped ones).
	Records atomic.Int64
	// Applied counts row changes that changed a row's state in some summary.
	Applied atomic.Int64
	// Stale counts row changes ignored because a newer version of the row was
	// already applied (replays, duplicates) or their offset was already stored.
	Stale atomic.Int64
	// GroupWrites counts summary rows upserted (one per group per batch).
	GroupWrites atomic.Int64
}

// summaryRT is a Summary with its target-side state.
type summaryRT struct {
	Summary
	rowsTable string

	mu    sync.Mutex
	ready bool
	// Column types as the target database reports them, for casts.
	groupTypes []string
	sumTypes   []string
}

// New builds an aggregator from cfg plus summaries written in Go. It opens a
// connection pool but does not connect; tables are created by Setup or on first
// use. A nil logger discards logs.
func New(cfg Config, log *slog.Logger, extra ...Summary) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var all []Summary
	for _, sc := range cfg.Summaries {
		s, err := sc.Compile()
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	for i := range extra {
		if err := extra[i].validate(fmt.Sprintf("summary %d (%s).", i, extra[i].Table)); err != nil {
			return nil, err
		}
		all = append(all, extra[i])
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: summaries: at least one summary is required", ErrConfig)
	}
	a := &Aggregator{name: cfg.Name, log: log.With("handler", cfg.Name), bySource: map[string][]*summaryRT{}, batchMax: cfg.BatchMaxRecords}
	tables := map[string]bool{}
	for _, s := range all {
		lt := strings.ToLower(s.Table)
		if tables[lt] || tables[lt+"_kanal_rows"] || lt == strings.ToLower(cfg.OffsetsTable) {
			return nil, fmt.Errorf("%w: summaries: table %q is used twice", ErrConfig, s.Table)
		}
		tables[lt] = true
		rt := &summaryRT{Summary: s, rowsTable: s.Table + "_kanal_rows"}
		a.sums = append(a.sums, rt)
		if a.bySource[s.Source] == nil {
			a.sources = append(a.sources, s.Source)
		}
		a.bySource[s.Source] = append(a.bySource[s.Source], rt)
	}
	var err error
	switch cfg.Target.Driver {
	case DriverPostgres:
		a.t, err = newPostgres(cfg, a.log)
	default:
		a.t, err = newMySQL(cfg, a.log)
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Name returns the handler name.
func (a *Aggregator) Name() string { return a.name }

// Tables returns the source tables ("db.table") the summaries read, for
// consumer.Tables.
func (a *Aggregator) Tables() []string { return append([]string(nil), a.sources...) }

// UsesUpdateBefore reports false: a row's old contribution comes from its
// stored state, not from the change's before image, so the Runner need not
// decode updates' before images (consumer.UpdateBeforeUser).
func (a *Aggregator) UsesUpdateBefore() bool { return false }

// BatchMaxRecords implements consumer.BatchSizer: Config.BatchMaxRecords (0:
// the consumer's bound).
func (a *Aggregator) BatchMaxRecords() int { return a.batchMax }

// Stats returns the live counters.
func (a *Aggregator) Stats() *Stats { return &a.stats }

// RegisterWith registers a on reg for its source tables, in its own consumer
// group ("kanal-<name>" unless opts say otherwise).
func (a *Aggregator) RegisterWith(reg *consumer.Registry, opts ...consumer.RouteOption) error {
	return reg.Register(a, append([]consumer.RouteOption{consumer.Tables(a.Tables()...)}, opts...)...)
}

// Setup connects, creates the offsets table and every summary table whose
// column types are known without seeing a change (the others are created by the
// first change of their source table). Calling it is optional; it makes
// configuration mistakes show at start.
func (a *Aggregator) Setup(ctx context.Context) error {
	if err := a.t.setup(ctx); err != nil {
		return err
	}
	for _, s := range a.sums {
		if _, err := a.ensure(ctx, s, nil); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the connection pool.
func (a *Aggregator) Close() { a.t.close() }

// Ping connects to the target database, as a batch would, for `kanal config
// check --connect`. Errors about TLS name the server and what to set.
func (a *Aggregator) Ping(ctx context.Context) error { return a.t.ping(ctx) }

// ensure creates s's tables once their column types can be resolved (from cols,
// the columns of a change of s.Source, when some type is inferred).
func (a *Aggregator) ensure(ctx context.Context, s *summaryRT, cols []schemas.Column) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return true, nil
	}
	d := a.t.dialect()
	byName := map[string]schemas.Column{}
	for _, c := range cols {
		byName[c.Name] = c
	}
	groupTypes := make([]string, len(s.GroupBy))
	for i, g := range s.GroupBy {
		switch {
		case g.Type != "":
			groupTypes[i] = g.Type
		case g.derived != "":
			groupTypes[i] = d.derivedType(g.derived)
		default:
			c, ok := byName[g.SourceColumn]
			if !ok {
				if cols != nil {
					return false, consumer.Permanent(fmt.Errorf("summary %s: source %s has no column %q", s.Table, s.Source, g.SourceColumn))
				}
				return false, nil
			}
			groupTypes[i] = d.groupType(c)
		}
	}
	sumTypes := make([]string, len(s.Sums))
	for i, m := range s.Sums {
		switch {
		case m.Type != "":
			sumTypes[i] = m.Type
		case m.SourceColumn == "":
			sumTypes[i] = d.sumType(nil)
		default:
			c, ok := byName[m.SourceColumn]
			if !ok {
				if cols != nil {
					return false, consumer.Permanent(fmt.Errorf("summary %s: source %s has no column %q", s.Table, s.Source, m.SourceColumn))
				}
				return false, nil
			}
			sumTypes[i] = d.sumType(&c)
		}
	}
	gt, st, err := a.t.createSummary(ctx, s, groupTypes, sumTypes)
	if err != nil {
		return false, err
	}
	s.groupTypes, s.sumTypes, s.ready = gt, st, true
	a.log.Info("summary table ready", "table", s.Table, "source", s.Source, "state_table", s.rowsTable)
	return true, nil
}

// rowState is what the target keeps per source row and summary: the row's
// version and its current contribution.
type rowState struct {
	key string
	// version is the Seq of the change that set the state (0: unknown).
	version uint64
	// offset is the Kafka offset of that change (same partition for one key).
	offset int64
	// tombstoned: the row was removed by a tombstone, whose Seq is unknown; only
	// changes at later offsets are newer.
	tombstoned bool
	// gkey is nil when the row contributes nothing (deleted or filtered out).
	gkey []byte
	sums []decimal.Decimal

	// ref is the target's own handle on the stored state as the batch read
	// it, 0 when the target had no state for the key. plan carries it from the
	// state read to the state written; only the target that set it reads it
	// (Postgres: where the row version is, so that writing it back needs no
	// index lookup and can tell whether the row changed meanwhile).
	ref int
	// planned marks the states plan set: the ones the batch writes.
	planned bool
}

// newer reports whether r is a newer version of the row than st.
func newer(r *consumer.Record, st *rowState) bool {
	if st == nil {
		return !r.Tombstone
	}
	if r.Tombstone && st.gkey == nil {
		// A tombstone removes a row that still counts; after its delete it
		// changes nothing.
		return false
	}
	if r.Seq > 0 && st.version > 0 {
		if st.tombstoned && r.Offset <= st.offset {
			return false
		}
		return r.Seq > st.version
	}
	return r.Offset > st.offset
}

// groupDelta is the net change of one group within a batch.
type groupDelta struct {
	gkey   []byte
	groups []any // nil when only subtractions touched the group
	count  int64
	sums   []decimal.Decimal
}

func (g *groupDelta) zero() bool {
	if g.count != 0 {
		return false
	}
	for i := range g.sums {
		if !g.sums[i].IsZero() {
			return false
		}
	}
	return true
}

// summaryWrites is what a batch writes for one summary.
type summaryWrites struct {
	s      *summaryRT
	rows   []*rowState   // sorted by key
	deltas []*groupDelta // non-zero, sorted by gkey
	// maybeEmpty are groups whose count went down: deleted when it reached 0.
	maybeEmpty [][]byte
}

// writes is everything a batch writes besides what it read.
type writes struct {
	sums []summaryWrites
	// next is the offset to store, or -1 to leave the stored one alone.
	next int64
}

// Handle applies a batch: it locks the partition's stored offset, skips records
// below it, loads the state of the batch's rows, computes per-group deltas
// (new contribution minus stored one, for changes newer than the stored
// version) and writes rows, groups and the next offset in one transaction.
//
// Records that cannot be evaluated (a filter or value error) fail the batch with
// a permanent error naming the record.
func (a *Aggregator) Handle(ctx context.Context, b consumer.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	a.stats.Records.Add(int64(len(b.Records)))
	sums := a.bySource[b.Records[0].Table]
	if len(sums) == 0 {
		return nil
	}
	if err := truncateError(b, sums); err != nil {
		return err
	}
	// Tables whose types come from the changes are created before the
	// transaction (MySQL commits DDL implicitly).
	var ready []*summaryRT
	for _, s := range sums {
		var cols []schemas.Column
		for i := range b.Records {
			if c := b.Records[i].Change; c != nil {
				cols = c.Columns
				break
			}
		}
		ok, err := a.ensure(ctx, s, cols)
		if err != nil {
			return fmt.Errorf("summary %s: %w", s.Table, err)
		}
		if ok {
			ready = append(ready, s)
		}
		// Not ready: the batch holds only tombstones and the table was never
		// created, so there is no state they could remove.
	}
	// keys are the batch's keys, sorted, each once; readKeys those whose state
	// is read. A key whose first record in the batch creates the row has no
	// state, unless the row existed before (a replay, a primary key used
	// again): a target whose state insert fails on a key with state
	// (stateConflicter) lets the batch skip reading it, and a conflict makes
	// the batch start again reading every key.
	keys := make([]string, 0, len(b.Records))
	read := make(map[string]bool, len(b.Records))
	for i := range b.Records {
		r := &b.Records[i]
		if _, ok := read[r.Key]; !ok {
			read[r.Key] = r.Tombstone || r.Op != schemas.OpCreate
			keys = append(keys, r.Key)
		}
	}
	sort.Strings(keys)
	readKeys := keys
	sc, optimistic := a.t.(stateConflicter)
	if optimistic && a.readAll.Load() > 0 {
		a.readAll.Add(-1)
		optimistic = false
	}
	if optimistic {
		readKeys = make([]string, 0, len(keys))
		for _, k := range keys {
			if read[k] {
				readKeys = append(readKeys, k)
			}
		}
	}
	applied, w, err := a.apply(ctx, b, ready, keys, readKeys)
	if err != nil && len(readKeys) < len(keys) && sc.isStateConflict(err) {
		// Some created key had state. Its rows are not worth guessing at for a
		// while: the next batches read every key.
		a.readAll.Store(readAllBatches)
		a.log.Debug("a created row had state: the batch reads every key", "topic", b.Topic, "partition", b.Partition,
			"offset", b.Records[0].Offset, "err", err)
		applied, w, err = a.apply(ctx, b, ready, keys, keys)
	}
	if err != nil {
		return err
	}
	a.stats.Batches.Add(1)
	a.stats.Applied.Add(int64(applied))
	a.stats.Stale.Add(int64(len(b.Records) - applied))
	for _, sw := range w.sums {
		a.stats.GroupWrites.Add(int64(len(sw.deltas)))
	}
	return nil
}

// readAllBatches is how many batches read the state of every key after a
// created key turned out to have state.
const readAllBatches = 100

// stateConflicter is a target whose state insert fails, rather than
// overwrites, when the key has state meanwhile; isStateConflict tells that
// failure from others.
type stateConflicter interface {
	isStateConflict(err error) bool
}

// apply runs one transaction of Handle: it reads the state of readKeys (keys
// not among them have none, or the state insert fails), plans the summaries'
// writes for keys and commits them with the next offset. It returns how many
// records changed some row's state, and the writes.
func (a *Aggregator) apply(ctx context.Context, b consumer.Batch, ready []*summaryRT, keys, readKeys []string) (int, *writes, error) {
	tx, off, states, err := a.t.begin(ctx, b.Group, b.Topic, b.Partition, ready, readKeys)
	if err != nil {
		return 0, nil, fmt.Errorf("%s/%d@%d: %w", b.Topic, b.Partition, b.Records[0].Offset, err)
	}
	if a.testHookInTxn != nil {
		a.testHookInTxn()
	}
	w := &writes{next: -1}
	used := make([]bool, len(b.Records)) // applied by some summary
	for si, s := range ready {
		sw, err := plan(s, b.Records, keys, off.Next, states[si], used)
		if err != nil {
			tx.rollback()
			return 0, nil, err
		}
		w.sums = append(w.sums, sw)
	}
	applied := 0
	for _, u := range used {
		if u {
			applied++
		}
	}
	if next := b.NextOffset(); !off.ResetPending && next > off.Next {
		w.next = next
	}
	if err := tx.commit(ctx, w); err != nil {
		return 0, nil, fmt.Errorf("%s/%d@%d: %w", b.Topic, b.Partition, b.Records[0].Offset, err)
	}
	return applied, w, nil
}

// plan computes what one summary writes for a batch of records whose keys
// (sorted, each once) are keys; it sets used[i] for the records that changed a
// row's state.
func plan(s *summaryRT, recs []consumer.Record, keys []string, next int64, states map[string]*rowState, used []bool) (summaryWrites, error) {
	sw := summaryWrites{s: s}
	deltas := map[string]*groupDelta{}
	delta := func(gkey []byte) *groupDelta {
		d := deltas[string(gkey)]
		if d == nil {
			d = &groupDelta{gkey: gkey, sums: make([]decimal.Decimal, len(s.Sums))}
			deltas[string(gkey)] = d
		}
		return d
	}
	memo := gkeyMemo{}
	// One allocation for the batch's new states: at most one per record, and
	// the capacity is never exceeded, so pointers into it stay valid.
	slab := make([]rowState, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		if r.Offset < next {
			continue // applied by an earlier transaction
		}
		st := states[r.Key]
		if !newer(r, st) {
			continue
		}
		var c *contribution
		if !r.Tombstone && r.Change != nil && r.Change.After != nil {
			var err error
			c, err = s.contributeMemo(Row(r.Change.After), memo)
			if err != nil {
				return sw, consumer.Permanent(fmt.Errorf("summary %s: %s/%d@%d key %s: %w", s.Table, r.Topic, r.Partition, r.Offset, r.Key, err))
			}
		}
		if st != nil && st.gkey != nil {
			d := delta(st.gkey)
			d.count--
			for j := range d.sums {
				d.sums[j].Sub(&st.sums[j])
			}
		}
		slab = append(slab, rowState{key: r.Key, offset: r.Offset, tombstoned: r.Tombstone, planned: true})
		ns := &slab[len(slab)-1]
		if st != nil {
			ns.version, ns.ref = st.version, st.ref
		}
		if r.Seq > 0 {
			ns.version = r.Seq
		}
		if c != nil {
			d := delta(c.gkey)
			d.count++
			d.groups = c.groups
			for j := range d.sums {
				d.sums[j].Add(&c.sums[j])
			}
			ns.gkey, ns.sums = c.gkey, c.sums
		}
		states[r.Key] = ns
		used[i] = true
	}
	// In key order, without sorting: keys is.
	sw.rows = make([]*rowState, 0, len(slab))
	for _, k := range keys {
		if st := states[k]; st != nil && st.planned {
			sw.rows = append(sw.rows, st)
		}
	}
	for _, d := range deltas {
		if d.zero() {
			continue
		}
		sw.deltas = append(sw.deltas, d)
		if d.count < 0 {
			sw.maybeEmpty = append(sw.maybeEmpty, d.gkey)
		}
	}
	// One lock order for every transaction: no deadlocks between partitions
	// that update the same groups.
	sort.Slice(sw.deltas, func(i, j int) bool { return bytes.Compare(sw.deltas[i].gkey, sw.deltas[j].gkey) < 0 })
	return sw, nil
}

// LoadOffsets implements consumer.OffsetStore: the next offsets stored for
// group. Loading them also completes a pending `kanal offsets reset` of those
// partitions: from now on batches store their offsets again.
func (a *Aggregator) LoadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	if err := a.t.setup(ctx); err != nil {
		return nil, err
	}
	return a.t.loadOffsets(ctx, group, partitions)
}

// ResetOffsets implements consumer.OffsetResetter. The new offsets take effect
// when the partitions are next assigned (a restart or rebalance); members that
// are running meanwhile keep applying new changes but leave the reset offsets
// in place. Replaying is safe: changes not newer than a row's stored version
// are no-ops.
func (a *Aggregator) ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	if err := a.t.setup(ctx); err != nil {
		return err
	}
	return a.t.resetOffsets(ctx, group, offsets)
}

// target is a database holding summaries.
type target interface {
	dialect() *dialect
	setup(ctx context.Context) error
	createSummary(ctx context.Context, s *summaryRT, groupTypes, sumTypes []string) (gt, st []string, err error)
	// begin starts a batch transaction: it locks the partition's offset row and
	// loads the state rows of keys for each summary.
	begin(ctx context.Context, group, topic string, partition int32, sums []*summaryRT, keys []string) (txn, sqloffsets.State, []map[string]*rowState, error)
	loadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error)
	resetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error
	ping(ctx context.Context) error
	close()
}

// txn is an open batch transaction.
type txn interface {
	// commit writes w and commits; on failure it rolls back.
	commit(ctx context.Context, w *writes) error
	rollback()
}
