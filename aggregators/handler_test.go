package aggregators

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kanal-cdc/kanal/aggregators/filter"
	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// The handler contract, without Kafka: crafted batches (as the Runner delivers
// them, including replays, duplicates, tombstones and zombie members) against
// real Postgres and MariaDB targets. After every step each summary must equal
// the aggregate of the reference rows computed in Go.

var earningsCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "user_id", Type: "bigint"},
	{Name: "kind", Type: "enum"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "status", Type: "varchar"},
	{Name: "created_at", Type: "datetime(6)"},
}

const topic = "kanal.shop.earnings"

func earning(id int64, user any, kind, amount, status, at string) Row {
	return Row{"id": id, "user_id": user, "kind": kind, "amount": schemas.Decimal(amount), "status": status, "created_at": at}
}

func key(id int64) string { return "shop.earnings:" + strconv.FormatInt(id, 10) }

func change(op schemas.Op, seq uint64, before, after Row) *schemas.Change {
	return &schemas.Change{Op: op, Seq: seq, Columns: earningsCols,
		Source: schemas.Source{DB: "shop", Table: "earnings", TsMs: time.Now().UnixMilli()},
		Before: before, After: after}
}

func upsertRec(off int64, seq uint64, row Row) consumer.Record {
	c := change(schemas.OpUpdate, seq, nil, row)
	return consumer.Record{Topic: topic, Offset: off, Key: key(row["id"].(int64)), Table: "shop.earnings", Op: c.Op, Seq: seq, Change: c}
}

// createRec is an insert: a batch need not read the state of a key whose
// first record it is (see Aggregator.Handle).
func createRec(off int64, seq uint64, row Row) consumer.Record {
	c := change(schemas.OpCreate, seq, nil, row)
	return consumer.Record{Topic: topic, Offset: off, Key: key(row["id"].(int64)), Table: "shop.earnings", Op: c.Op, Seq: seq, Change: c}
}

func deleteRec(off int64, seq uint64, row Row) consumer.Record {
	c := change(schemas.OpDelete, seq, row, nil)
	return consumer.Record{Topic: topic, Offset: off, Key: key(row["id"].(int64)), Table: "shop.earnings", Op: c.Op, Seq: seq, Change: c}
}

func tombRec(off int64, id int64) consumer.Record {
	return consumer.Record{Topic: topic, Offset: off, Key: key(id), Table: "shop.earnings", Op: schemas.OpDelete, Tombstone: true}
}

// harness is one aggregator under test with its reference rows.
type harness struct {
	t     *testing.T
	te    *targetEnv
	a     *Aggregator
	sums  []Summary
	group string
	rows  map[string]Row // reference: current source rows by key
}

func newHarness(t *testing.T, te *targetEnv, name string) *harness {
	t.Helper()
	cfg := te.config(name)
	cfg.Summaries = []SummaryConfig{
		{Table: name + "_by_user", Source: "shop.earnings", Where: "status = 'settled'",
			GroupBy: []string{"user_id"}, Measures: []string{"count", "sum(amount) AS total"}},
		{Table: name + "_by_kind_day", Source: "shop.earnings", Where: "status IN ('settled', 'pending') AND amount > 0",
			GroupBy: []string{"user_id", "kind", "day(created_at) AS day"}, Measures: []string{"count AS n", "sum(amount)"}},
	}
	a, err := New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if err := a.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, te: te, a: a, group: consumer.DefaultGroup(name), rows: map[string]Row{}}
	for _, sc := range cfg.Summaries {
		s, err := sc.Compile()
		if err != nil {
			t.Fatal(err)
		}
		h.sums = append(h.sums, s)
	}
	return h
}

func (h *harness) handle(part int32, recs ...consumer.Record) error {
	for i := range recs {
		recs[i].Partition = part
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return h.a.Handle(ctx, consumer.Batch{Group: h.group, Topic: topic, Partition: part, Records: recs})
}

// handleRetried hands recs to the aggregator through the consumer's retry
// middleware, as the Runner does (with short waits), and returns the errors of
// the attempts that were retried.
func (h *harness) handleRetried(part int32, recs ...consumer.Record) (retried []error, err error) {
	for i := range recs {
		recs[i].Partition = part
	}
	cfg := consumer.RetryConfig{MaxAttempts: 5, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
	hd := consumer.Retry(cfg, func(_ consumer.Batch, _ int, err error, _ time.Duration) { retried = append(retried, err) })(h.a)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = hd.Handle(ctx, consumer.Batch{Group: h.group, Topic: topic, Partition: part, Records: recs})
	return retried, err
}

func (h *harness) mustHandle(part int32, recs ...consumer.Record) {
	h.t.Helper()
	if err := h.handle(part, recs...); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) set(rows ...Row) {
	for _, r := range rows {
		h.rows[key(r["id"].(int64))] = r
	}
}

func (h *harness) del(ids ...int64) {
	for _, id := range ids {
		delete(h.rows, key(id))
	}
}

// want computes a summary of the reference rows, rendered as the targets
// render it.
func (h *harness) want(s *Summary) map[string]string {
	return wantSummary(h.t, s, h.rows)
}

// wantSummary computes a summary of rows in Go, rendered as the targets render
// it.
func wantSummary(t testing.TB, s *Summary, rows map[string]Row) map[string]string {
	type acc struct {
		n    int64
		sums []decimal.Decimal
	}
	groups := map[string]*acc{}
	for _, r := range rows {
		c, err := s.contribute(r)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			continue
		}
		parts := make([]string, len(c.groups))
		for i, g := range c.groups {
			parts[i] = "NULL"
			if g != nil {
				parts[i] = filter.Text(g)
			}
		}
		k := strings.Join(parts, "|")
		a := groups[k]
		if a == nil {
			a = &acc{sums: make([]decimal.Decimal, len(s.Sums))}
			groups[k] = a
		}
		a.n++
		for i := range a.sums {
			a.sums[i].Add(&c.sums[i])
		}
	}
	out := map[string]string{}
	for k, a := range groups {
		vals := []string{strconv.FormatInt(a.n, 10)}
		for i := range a.sums {
			vals = append(vals, a.sums[i].String())
		}
		out[k] = strings.Join(vals, "|")
	}
	return out
}

func (h *harness) check(step string) {
	h.t.Helper()
	for i := range h.sums {
		s := &h.sums[i]
		if d := testdiff.Diff(h.want(s), readSummary(h.t, h.te, s)); d != "" {
			h.t.Fatalf("%s: summary %s differs from the reference rows:\n%s", step, s.Table, d)
		}
	}
}

func TestHandlerContract(t *testing.T) {
	m := testenv.MariaDB(t)
	targets := []*targetEnv{postgresTarget(t), mariadbTarget(t, m)}
	for _, te := range targets {
		t.Run(te.name, func(t *testing.T) {
			t.Run("EveryKindOfChange", func(t *testing.T) { testEveryKindOfChange(t, te) })
			t.Run("DuplicatesAndReplays", func(t *testing.T) { testDuplicatesAndReplays(t, te) })
			t.Run("Tombstones", func(t *testing.T) { testTombstones(t, te) })
			t.Run("CreatedRowsWithState", func(t *testing.T) { testCreatedRowsWithState(t, te) })
			t.Run("ResetOffsets", func(t *testing.T) { testResetOffsets(t, te) })
			t.Run("ZombieMembers", func(t *testing.T) { testZombieMembers(t, te) })
			t.Run("HotGroupAcrossPartitions", func(t *testing.T) { testHotGroup(t, te) })
			t.Run("PermanentError", func(t *testing.T) { testPermanentError(t, te) })
			t.Run("BigBatchAcrossCrash", func(t *testing.T) { testBigBatchAcrossCrash(t, te) })
			if te.driver == DriverPostgres {
				t.Run("StateWrittenMeanwhile", func(t *testing.T) { testStateWrittenMeanwhile(t, te) })
				t.Run("WriterOpenAtWriteBack", func(t *testing.T) {
					t.Run("Commits", func(t *testing.T) { testWriterOpenAtWriteBack(t, te, true) })
					t.Run("RollsBack", func(t *testing.T) { testWriterOpenAtWriteBack(t, te, false) })
				})
				t.Run("StateReplacedAtSameCtid", func(t *testing.T) { testStateReplacedAtSameCtid(t, te) })
				t.Run("VersionOverflow", func(t *testing.T) { testVersionOverflow(t, te) })
			}
		})
	}
}

// testEveryKindOfChange: inserts add, deletes subtract, updates move a row's
// contribution when its amount, its group (user, kind, day) or its filter
// outcome changes; a primary-key change (delete + create) and NULL groups.
func testEveryKindOfChange(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "every_"+te.name)
	r1 := earning(1, int64(7), "order", "10.50", "settled", "2024-01-01 10:00:00.000001")
	r2 := earning(2, int64(7), "bonus", "0.25", "pending", "2024-01-01 23:59:59.999999")
	r3 := earning(3, nil, "order", "3.00", "settled", "2024-01-02 00:00:00.000000")
	r4 := earning(4, int64(8), "referral", "99.99", "settled", "2024-01-02 08:00:00.000000")
	h.mustHandle(0, upsertRec(0, 1, r1), upsertRec(1, 2, r2), upsertRec(2, 3, r3), upsertRec(3, 4, r4))
	h.set(r1, r2, r3, r4)
	h.check("inserts")

	r1b := earning(1, int64(7), "order", "11.75", "settled", "2024-01-01 10:00:00.000001") // amount
	r2b := earning(2, int64(7), "bonus", "0.25", "settled", "2024-01-01 23:59:59.999999")  // pending → settled
	h.mustHandle(0, upsertRec(4, 5, r1b), upsertRec(5, 6, r2b))
	h.set(r1b, r2b)
	h.check("amount and status")

	r4b := earning(4, int64(9), "referral", "99.99", "settled", "2024-01-02 08:00:00.000000") // reassigned
	r3b := earning(3, int64(7), "bonus", "3.00", "settled", "2024-01-03 00:00:00.000000")     // NULL user → 7, kind, day
	r1c := earning(1, int64(7), "order", "11.75", "reversed", "2024-01-01 10:00:00.000001")   // filtered out
	h.mustHandle(0, upsertRec(6, 7, r4b), upsertRec(7, 8, r3b), upsertRec(8, 9, r1c))
	h.set(r4b, r3b, r1c)
	h.check("group and filter changes")

	// Several changes of one row in one batch, then a primary-key change.
	r5 := earning(5, int64(8), "order", "1.00", "pending", "2024-01-05 00:00:00.000000")
	r5b := earning(5, int64(8), "order", "2.00", "settled", "2024-01-05 00:00:00.000000")
	r5c := earning(5, int64(9), "order", "-2.00", "settled", "2024-01-05 00:00:00.000000")
	r105 := earning(105, int64(9), "order", "-2.00", "settled", "2024-01-05 00:00:00.000000")
	h.mustHandle(0, upsertRec(9, 10, r5), upsertRec(10, 11, r5b), upsertRec(11, 12, r5c),
		deleteRec(12, 13, r5c), tombRec(13, 5), upsertRec(14, 14, r105))
	h.set(r105)
	h.check("row changes within a batch, primary-key change")

	h.mustHandle(0, deleteRec(15, 15, r2b), tombRec(16, 2), deleteRec(17, 16, r4b), tombRec(18, 4))
	h.del(2, 4)
	h.check("deletes")
	// 21 records; the tombstones after their deletes change nothing.
	if got := h.a.Stats().Applied.Load(); got != 16 {
		t.Errorf("applied %d changes, want 16", got)
	}
}

// testDuplicatesAndReplays: a batch applied twice, overlapping batches and a
// batch below the stored offset are no-ops.
func testDuplicatesAndReplays(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "dup_"+te.name)
	var recs []consumer.Record
	var seq uint64
	for i := int64(0); i < 40; i++ {
		seq++
		status := []string{"settled", "pending", "reversed"}[i%3]
		r := earning(i%13, i%4, "order", fmt.Sprintf("%d.%02d", i, i), status, "2024-02-01 00:00:00.000000")
		recs = append(recs, upsertRec(int64(len(recs)), seq, r))
		h.set(r)
	}
	h.mustHandle(1, recs[:25]...)
	h.mustHandle(1, recs[:25]...)   // duplicate
	h.mustHandle(1, recs[10:]...)   // overlapping
	h.mustHandle(1, recs[30:35]...) // replay below the stored offset
	h.check("duplicates and overlaps")
	if st := h.a.Stats().Stale.Load(); st != 25+15+5 {
		t.Errorf("stale = %d, want %d", st, 25+15+5)
	}
}

// testTombstones: on a compacted topic a delete may be gone and only its
// tombstone left; a replay may also meet an old delete+tombstone of a row that
// was created again later.
func testTombstones(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "tomb_"+te.name)
	r1 := earning(1, int64(1), "order", "5.00", "settled", "2024-03-01 00:00:00.000000")
	r2 := earning(2, int64(1), "order", "7.00", "settled", "2024-03-01 00:00:00.000000")
	h.mustHandle(2, upsertRec(0, 1, r1), upsertRec(1, 2, r2))
	h.set(r1, r2)
	// Compacted: the delete of row 1 (offset 2) is gone, its tombstone (3) stays.
	h.mustHandle(2, tombRec(3, 1))
	h.del(1)
	h.check("tombstone without its delete")

	// Row 2: deleted (4, 5), created again (6). Replaying the whole partition
	// from a reset must leave it alive.
	r2b := earning(2, int64(1), "bonus", "8.00", "settled", "2024-03-02 00:00:00.000000")
	batch := []consumer.Record{deleteRec(4, 3, r2), tombRec(5, 2), upsertRec(6, 4, r2b)}
	h.mustHandle(2, batch...)
	h.set(r2b)
	h.check("delete, tombstone, create again")
	if err := h.a.ResetOffsets(context.Background(), h.group, map[string]map[int32]int64{topic: {2: 0}}); err != nil {
		t.Fatal(err)
	}
	h.mustHandle(2, upsertRec(0, 1, r1), upsertRec(1, 2, r2), tombRec(3, 1), deleteRec(4, 3, r2), tombRec(5, 2), upsertRec(6, 4, r2b))
	h.check("replay from the start")
	// Only the tombstone of row 2 survived compaction, then a replay: still alive.
	h.mustHandle(2, tombRec(5, 2), upsertRec(6, 4, r2b))
	h.check("replay of a stale tombstone")
}

// testCreatedRowsWithState: inserts of keys that have state — a primary key
// used again after its delete, inserts replayed after an offset reset — are
// applied once; so are inserts of new keys in the same batches.
func testCreatedRowsWithState(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "created_"+te.name)
	r1 := earning(1, int64(1), "order", "5.00", "settled", "2024-04-01 00:00:00.000000")
	r2 := earning(2, int64(1), "order", "7.00", "settled", "2024-04-01 00:00:00.000000")
	h.mustHandle(3, createRec(0, 1, r1), createRec(1, 2, r2))
	h.set(r1, r2)
	h.check("inserts")
	h.mustHandle(3, deleteRec(2, 3, r1), tombRec(3, 1))
	h.del(1)
	h.check("delete")

	// Row 1's key is used again: its state (deleted) is there.
	r1b := earning(1, int64(2), "bonus", "11.00", "settled", "2024-04-02 00:00:00.000000")
	r3 := earning(3, int64(2), "order", "13.00", "settled", "2024-04-02 00:00:00.000000")
	h.mustHandle(3, createRec(4, 4, r3), createRec(5, 5, r1b))
	h.set(r3, r1b)
	h.check("a key inserted again, beside a new one")
	if h.a.readAll.Load() == 0 {
		t.Error("the batch did not start again reading every key")
	}

	// Replayed from the start, every insert finds its key's state.
	h.a.readAll.Store(0)
	if err := h.a.ResetOffsets(context.Background(), h.group, map[string]map[int32]int64{topic: {3: 0}}); err != nil {
		t.Fatal(err)
	}
	r4 := earning(4, int64(1), "order", "17.00", "settled", "2024-04-03 00:00:00.000000")
	h.mustHandle(3, createRec(0, 1, r1), createRec(1, 2, r2), deleteRec(2, 3, r1), tombRec(3, 1),
		createRec(4, 4, r3), createRec(5, 5, r1b), createRec(6, 6, r4))
	h.set(r4)
	h.check("replay from the start, and a new insert")
	if got := h.a.Stats().Batches.Load(); got != 4 {
		t.Errorf("%d batches committed, want 4", got)
	}

	// A key with the characters COPY's text format escapes: the update
	// finds the state its insert wrote.
	odd := func(r consumer.Record) consumer.Record { r.Key = "shop.earnings:\\N\t\\x\n\r\\"; return r }
	r5 := earning(5, int64(3), "order", "19.00", "settled", "2024-04-04 00:00:00.000000")
	r5b := earning(5, int64(3), "order", "23.00", "settled", "2024-04-04 00:00:00.000000")
	h.mustHandle(3, odd(createRec(7, 7, r5)))
	h.mustHandle(3, odd(upsertRec(8, 8, r5b)))
	h.set(r5b)
	h.check("a key with tab, newline, carriage return and backslashes")
}

// testResetOffsets: LoadOffsets returns what batches stored; a reset is kept
// while running members go on (they do not overwrite it) and is what the next
// assignment loads; replaying from it changes nothing.
func testResetOffsets(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "reset_"+te.name)
	ctx := context.Background()
	load := func() map[int32]int64 {
		t.Helper()
		got, err := h.a.LoadOffsets(ctx, h.group, map[string][]int32{topic: {0, 1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		return got[topic]
	}
	if got := load(); len(got) != 0 {
		t.Fatalf("offsets before any batch: %v", got)
	}
	var recs []consumer.Record
	for i := int64(0); i < 10; i++ {
		r := earning(i, i%3, "order", "1.10", "settled", "2024-04-01 00:00:00.000000")
		recs = append(recs, upsertRec(2*i, uint64(i+1), r)) // gaps: transaction markers
		h.set(r)
	}
	h.mustHandle(0, recs[:6]...)
	if got := load(); got[0] != 11 || len(got) != 1 {
		t.Fatalf("offsets after a batch: %v, want map[0:11]", got)
	}
	if err := h.a.ResetOffsets(ctx, h.group, map[string]map[int32]int64{topic: {0: 0, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	h.mustHandle(0, recs[6:]...) // a running member goes on
	h.check("after reset, running member")
	if got := load(); got[0] != 0 || got[1] != 0 {
		t.Fatalf("offsets after reset: %v, want 0 for partitions 0 and 1", got)
	}
	h.mustHandle(0, recs...) // the replay the reset asked for
	h.check("replayed")
	if got := load(); got[0] != 19 {
		t.Fatalf("offsets after the replay: %v, want 19 for partition 0", got)
	}
}

// testZombieMembers: two members applying the same and overlapping batches of
// one partition at the same time (a revoked member that has not stopped yet)
// still apply every change once.
func testZombieMembers(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "zombie_"+te.name)
	var recs []consumer.Record
	for i := int64(0); i < 200; i++ {
		r := earning(i%37, i%5, []string{"order", "bonus"}[i%2], fmt.Sprintf("%d.50", i%11), "settled", "2024-05-01 00:00:00.000000")
		recs = append(recs, upsertRec(i, uint64(i+1), r))
		h.set(r)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for start := 0; start < 200; start += 20 {
		for member := 0; member < 2; member++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Member 1 starts 10 records earlier: overlapping batches.
				from := max(0, start-10*member)
				errs <- h.handle(0, append([]consumer.Record(nil), recs[from:start+20]...)...)
			}()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	h.check("zombie members")
}

// testHotGroup: every partition updates the same few groups concurrently; the
// transactions lock groups in one order, so none deadlocks.
func testHotGroup(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "hot_"+te.name)
	const parts, perPart = 3, 300
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for p := int32(0); p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < perPart/30; b++ {
				var recs []consumer.Record
				for i := 0; i < 30; i++ {
					n := int64(b*30 + i)
					id := int64(p)*1_000_000 + n%50
					r := earning(id, n%3, []string{"order", "bonus", "referral"}[n%3], fmt.Sprintf("%d.01", n), "settled", "2024-06-01 00:00:00.000000")
					recs = append(recs, upsertRec(n, uint64(n+1), r))
					mu.Lock()
					h.set(r)
					mu.Unlock()
				}
				if err := h.handle(p, recs...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.check("hot groups")
}

// testPermanentError: a row whose value cannot be summed fails the batch with
// a permanent error naming it, and leaves nothing applied.
func testPermanentError(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "perm_"+te.name)
	good := earning(1, int64(1), "order", "1.00", "settled", "2024-07-01 00:00:00.000000")
	bad := earning(2, int64(1), "order", "1.00", "settled", "2024-07-01 00:00:00.000000")
	bad["amount"] = "not a number"
	err := h.handle(0, upsertRec(0, 1, good), upsertRec(1, 2, bad))
	if err == nil || !consumer.IsPermanent(err) || !strings.Contains(err.Error(), key(2)) {
		t.Fatalf("err = %v, want a permanent error naming %s", err, key(2))
	}
	h.check("nothing applied")
	h.mustHandle(0, upsertRec(0, 1, good))
	h.set(good)
	h.check("good record alone")
	if te.driver == DriverMySQL {
		// A key the state tables cannot hold fails permanently, too.
		long := upsertRec(1, 2, bad)
		long.Key = "shop.earnings:" + strings.Repeat("x", maxKeyBytes)
		err := h.handle(0, long)
		if err == nil || !consumer.IsPermanent(err) || !strings.Contains(err.Error(), h.sums[0].Table+"_kanal_rows") {
			t.Fatalf("err = %v, want a permanent error naming the state table", err)
		}
		t.Logf("long key: %.200s", err)
		h.check("long key: nothing applied")
	}
}

// testStateWrittenMeanwhile (Postgres): a batch reads state rows without
// locking them, relying on the partition's offset lock. Should another
// transaction write one of its keys anyway, between the read and the write
// (two aggregators on one table, a hand-made fix), the batch fails with a
// retryable error and applies nothing, rather than counting a change twice;
// the retry applies it once.
func testStateWrittenMeanwhile(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "meanwhile_"+te.name)
	rows := quoteTable(h.sums[0].Table+"_kanal_rows", '"')
	r1 := earning(1, int64(1), "order", "1.00", "settled", "2024-08-01 00:00:00.000000")
	h.mustHandle(0, upsertRec(0, 1, r1))
	h.set(r1)

	exec := func(q string, args ...any) {
		if _, err := te.db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A rewrite of the same values still moves the row (a new tuple version).
	h.a.testHookInTxn = func() { exec("UPDATE "+rows+" SET version = version WHERE row_key = $1", key(1)) }
	r1b := earning(1, int64(1), "order", "2.50", "settled", "2024-08-01 00:00:00.000000")
	err := h.handle(0, upsertRec(1, 2, r1b))
	if err == nil || consumer.IsPermanent(err) || !strings.Contains(err.Error(), h.sums[0].Table+"_kanal_rows") {
		t.Fatalf("err = %v, want a retryable error naming the state table", err)
	}
	t.Logf("moved row: %v", err)
	h.check("update of a row written meanwhile: nothing applied")

	// A key the batch found without state gets one meanwhile.
	h.a.testHookInTxn = func() {
		exec("INSERT INTO "+rows+" (row_key, version, src_offset, tombstoned) VALUES ($1, 0, -1, false)", key(2))
	}
	r2 := earning(2, int64(1), "order", "4.00", "settled", "2024-08-01 00:00:00.000000")
	err = h.handle(0, upsertRec(1, 2, r1b), upsertRec(2, 3, r2))
	if err == nil || consumer.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	t.Logf("new row: %v", err)
	h.check("new row written meanwhile: nothing applied")

	h.a.testHookInTxn = nil
	h.mustHandle(0, upsertRec(1, 2, r1b), upsertRec(2, 3, r2))
	h.set(r1b, r2)
	h.check("retried")
}

// pgConn opens a connection of its own to a Postgres target, closed when the
// test ends: the other writer's transaction in the tests below.
func pgConn(t *testing.T, te *targetEnv) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, te.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// testWriterOpenAtWriteBack (Postgres): another transaction, on a connection
// of its own, applies the batch's change to the same state row and summary
// row (as a second writer of the table would) and is still open when the
// batch writes the row back, so the write-back waits for it. When it commits,
// the row the batch read is gone: the batch must fail with a retryable error
// naming the state table, and the retry finds the change already applied
// (ctid alone would let the UPDATE follow the update chain on Postgres
// releases whose TID recheck is a stub, and count it twice). When it rolls
// back, the batch applies the change. Either way the summaries end equal to
// the source rows' GROUP BY.
func testWriterOpenAtWriteBack(t *testing.T, te *targetEnv, commit bool) {
	name := "openwriter_rb_"
	if commit {
		name = "openwriter_c_"
	}
	h := newHarness(t, te, name+te.name)
	rows := quoteTable(h.sums[0].Table+"_kanal_rows", '"')
	summary := quoteTable(h.sums[0].Table, '"')
	r1 := earning(1, int64(1), "order", "1.00", "settled", "2024-08-01 00:00:00.000000")
	r2 := earning(2, int64(1), "order", "3.00", "settled", "2024-08-01 00:00:00.000000")
	h.mustHandle(0, upsertRec(0, 1, r1), upsertRec(1, 2, r2))
	h.set(r1, r2)

	other := pgConn(t, te)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1b := earning(1, int64(1), "order", "2.50", "settled", "2024-08-01 00:00:00.000000")
	done := make(chan error, 1)
	var once sync.Once
	h.a.testHookInTxn = func() {
		once.Do(func() {
			// The other writer applies r1b to the by-user summary: its state
			// row gets version 3, the group +1.50. The batch has already read
			// the row; it holds no lock on it, so this does not block.
			tx, err := other.Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, "UPDATE "+rows+" SET version = 3, src_offset = 2, total = 2.50 WHERE row_key = $1", key(1))
			}
			if err == nil {
				_, err = tx.Exec(ctx, "UPDATE "+summary+" SET total = total + 1.50 WHERE user_id = 1")
			}
			if err != nil {
				done <- err
				return
			}
			go func() {
				// End the transaction only once the batch's write-back
				// waits for it.
				deadline := time.Now().Add(20 * time.Second)
				waiting := 0
				for waiting == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
					if err := te.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE wait_event_type = 'Lock' AND query LIKE 'WITH up AS (UPDATE %'`).Scan(&waiting); err != nil {
						done <- err
						return
					}
				}
				if waiting == 0 {
					done <- fmt.Errorf("the batch never waited for the other writer")
					_ = tx.Rollback(ctx)
					return
				}
				if commit {
					done <- tx.Commit(ctx)
				} else {
					done <- tx.Rollback(ctx)
				}
			}()
		})
	}
	retried, err := h.handleRetried(0, upsertRec(2, 3, r1b))
	if err != nil {
		t.Fatalf("batch failed after its retries: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("other writer: %v", err)
	}
	h.set(r1b)
	h.check("after the other writer's transaction ended")
	if commit {
		if len(retried) == 0 {
			t.Fatal("the batch wrote back a row another transaction had changed meanwhile without failing")
		}
		if e := retried[0]; consumer.IsPermanent(e) || !strings.Contains(e.Error(), h.sums[0].Table+"_kanal_rows") ||
			!strings.Contains(e.Error(), "changed since the batch read them") {
			t.Fatalf("retried error = %v, want a retryable error naming the state table", e)
		}
		t.Logf("retried: %v", retried[0])
	} else if len(retried) != 0 {
		t.Fatalf("the batch failed although the other writer rolled back: %v", retried)
	}
}

// testStateReplacedAtSameCtid (Postgres): between the batch's read and its
// write-back, another writer replaces a state row: it deletes it (in a
// transaction that was already open when the batch began, so the batch still
// read the old row), VACUUM frees the row's slot, and the replacement, which
// applies the batch's change itself, is inserted into that same slot. The
// batch's write-back finds a row with the same ctid and key; only its xmin
// tells it apart. The batch must fail with a retryable error, and the retry
// must find the change applied: nothing counts twice.
//
// The aggregator talks pgx's simple protocol here (as behind PgBouncer in
// transaction mode). With the extended protocol the read's unnamed portal
// happens to keep its snapshot until the write-back is sent, and that
// snapshot keeps VACUUM from freeing the slot; nothing to rely on.
func testStateReplacedAtSameCtid(t *testing.T, te *targetEnv) {
	simple := *te
	simple.dsn += "&default_query_exec_mode=simple_protocol"
	h := newHarness(t, &simple, "replaced_"+te.name)
	rowsName := h.sums[0].Table + "_kanal_rows"
	rows := quoteTable(rowsName, '"')
	summary := quoteTable(h.sums[0].Table, '"')
	r1 := earning(1, int64(1), "order", "1.00", "settled", "2024-08-01 00:00:00.000000")
	r2 := earning(2, int64(1), "order", "3.00", "settled", "2024-08-01 00:00:00.000000")
	h.mustHandle(0, upsertRec(0, 1, r1), upsertRec(1, 2, r2))
	h.set(r1, r2)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ctid0, ctid1 string
	var gkey []byte
	if err := te.db.QueryRowContext(ctx, "SELECT ctid::text, kanal_group FROM "+rows+" WHERE row_key = $1", key(1)).Scan(&ctid0, &gkey); err != nil {
		t.Fatal(err)
	}
	// The delete's transaction must be older than the batch's, so that VACUUM
	// may remove the old row while the batch is still open.
	other := pgConn(t, te)
	del, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := del.Exec(ctx, "DELETE FROM "+rows+" WHERE row_key = $1", key(1)); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var hookErr error
	h.a.testHookInTxn = func() {
		once.Do(func() {
			hookErr = func() error {
				if err := del.Commit(ctx); err != nil {
					return err
				}
				if _, err := te.db.ExecContext(ctx, "VACUUM (INDEX_CLEANUP ON) "+rows); err != nil {
					return err
				}
				// The replacement applies r1b (1.00 → 2.50) itself.
				tx, err := other.Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "INSERT INTO "+rows+" (row_key, version, src_offset, tombstoned, kanal_group, total) VALUES ($1, 3, 2, false, $2, 2.50)", key(1), gkey); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE "+summary+" SET total = total + 1.50 WHERE user_id = 1"); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, "SELECT ctid::text FROM "+rows+" WHERE row_key = $1", key(1)).Scan(&ctid1); err != nil {
					return err
				}
				return tx.Commit(ctx)
			}()
		})
	}
	r1b := earning(1, int64(1), "order", "2.50", "settled", "2024-08-01 00:00:00.000000")
	retried, err := h.handleRetried(0, upsertRec(2, 3, r1b))
	if hookErr != nil {
		t.Fatalf("other writer: %v", hookErr)
	}
	if ctid1 != ctid0 {
		t.Fatalf("the replacement row went to %s, not to the old row's %s: the test did not set up what it tests", ctid1, ctid0)
	}
	if err != nil {
		t.Fatalf("batch failed after its retries: %v", err)
	}
	h.set(r1b)
	h.check("after the state row was replaced at the same ctid")
	if len(retried) == 0 {
		t.Fatal("the batch wrote back a row replaced meanwhile (same ctid, other xmin) without failing")
	}
	if e := retried[0]; consumer.IsPermanent(e) || !strings.Contains(e.Error(), rowsName) {
		t.Fatalf("retried error = %v, want a retryable error naming %s", e, rowsName)
	}
	t.Logf("retried: %v", retried[0])
}

// testVersionOverflow (Postgres): a change whose seq does not fit the state
// table's bigint version fails its batch with a permanent error (retrying
// cannot help) naming the state table and the key, and applies nothing.
func testVersionOverflow(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "overflow_"+te.name)
	r1 := earning(1, int64(1), "order", "1.00", "settled", "2024-09-01 00:00:00.000000")
	r2 := earning(2, int64(1), "order", "2.00", "settled", "2024-09-01 00:00:00.000000")
	err := h.handle(0, upsertRec(0, 1, r1), upsertRec(1, math.MaxInt64+1, r2))
	if err == nil || !consumer.IsPermanent(err) || !strings.Contains(err.Error(), h.sums[0].Table+"_kanal_rows") || !strings.Contains(err.Error(), key(2)) {
		t.Fatalf("err = %v, want a permanent error naming the state table and %s", err, key(2))
	}
	t.Logf("overflow: %v", err)
	h.check("nothing applied")
}
