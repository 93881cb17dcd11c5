package aggregators

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
)

// testBigBatchAcrossCrash: one batch as big as an aggregator's own bound
// (Config.BatchMaxRecords, eight times the consumer's default batch) holding
// many changes of each of 40 rows — moves between users, kinds and days,
// across both filters, NULL users, deletes with their tombstones and inserts
// again. Its first attempt is cut off inside the transaction, between reading
// the state and writing (a crash before the commit): nothing may apply. The
// retry applies it; the same batch delivered again, and its second half again,
// change nothing. A change applied twice or dropped makes the summaries differ
// from the reference rows' GROUP BY.
func testBigBatchAcrossCrash(t *testing.T, te *targetEnv) {
	h := newHarness(t, te, "big_"+te.name)
	rng := rand.New(rand.NewPCG(7, 8))
	n := DefaultConfig().BatchMaxRecords
	if n <= consumer.DefaultConfig().BatchMaxRecords {
		t.Fatalf("the aggregator's batch bound %d is not above the consumer's", n)
	}
	kinds := []string{"order", "referral", "bonus"}
	statuses := []string{"settled", "pending", "reversed"}
	days := []string{"2024-06-01 00:00:00.000000", "2024-06-01 23:59:59.999999", "2024-06-02 00:00:00.000000"}
	var recs []consumer.Record
	var seq uint64
	for len(recs) < n {
		id := int64(rng.IntN(40))
		seq++
		off := int64(len(recs))
		if old, ok := h.rows[key(id)]; ok && rng.IntN(6) == 0 {
			recs = append(recs, deleteRec(off, seq, old), tombRec(off+1, id))
			h.del(id)
			continue
		}
		var user any = int64(rng.IntN(5))
		if rng.IntN(10) == 0 {
			user = nil
		}
		r := earning(id, user, kinds[rng.IntN(3)], fmt.Sprintf("%d.%02d", rng.IntN(200)-20, rng.IntN(100)),
			statuses[rng.IntN(3)], days[rng.IntN(3)])
		recs = append(recs, upsertRec(off, seq, r))
		h.set(r)
	}

	// The crash: the transaction is cut off once it has read the state.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	crash, crashed := context.WithCancel(ctx)
	h.a.testHookInTxn = crashed
	err := h.a.Handle(crash, consumer.Batch{Group: h.group, Topic: topic, Partition: 0, Records: recs})
	h.a.testHookInTxn = nil
	if err == nil {
		t.Fatal("the batch cut off inside its transaction committed")
	}
	for i := range h.sums {
		if got := readSummary(t, te, &h.sums[i]); len(got) != 0 {
			t.Fatalf("summary %s has %d groups after a batch that did not commit", h.sums[i].Table, len(got))
		}
	}
	if b := h.a.Stats().Batches.Load(); b != 0 {
		t.Fatalf("%d batches committed, want 0", b)
	}

	h.mustHandle(0, recs...)
	h.check(fmt.Sprintf("a batch of %d records, retried after a crash", len(recs)))
	stale := h.a.Stats().Stale.Load() // the tombstones after their deletes
	h.mustHandle(0, recs...)
	h.mustHandle(0, recs[len(recs)/2:]...)
	h.check("the batch and its second half delivered again")
	if st, want := h.a.Stats().Stale.Load()-stale, int64(len(recs)+len(recs)-len(recs)/2); st != want {
		t.Errorf("%d records of the redeliveries were stale, want all %d", st, want)
	}
}
