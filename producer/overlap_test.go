package producer_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// TestCommitOverlap: the producer keeps encoding changes while a Kafka commit is
// in flight, holding their records until the commit has ended. The broker holds
// some commits until the producer has handed on more changes meanwhile (which
// proves the overlap), and fails one of them with changes pending: the producer
// restarts from the last committed position, and every change is in Kafka exactly
// once, in order in every partition, and the topics equal the tables.
func TestCommitOverlap(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "overlap")
	cfg.Tables.Include = []string{"wl.*"}
	cfg.Kafka.FlushRecords = 100
	const during = 40 // changes handed on while a held commit is in flight (< flush_records, after which the next commit waits for it)

	var emitted atomic.Uint64
	var overlapped, failed atomic.Int32
	var hold, fail atomic.Bool
	k.Cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || !hold.Load() && !fail.Load() {
			return nil, nil, false
		}
		// Hold the commit until more changes were handed on, or for a
		// while when the source has gone quiet (the transaction's last).
		from := emitted.Load()
		k.Cluster.SleepControl(func() {
			for deadline := time.Now().Add(2 * time.Second); emitted.Load() < from+during && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		})
		if fail.CompareAndSwap(true, false) {
			// A failed commit with changes pending behind it.
			failed.Add(1)
			resp := end.ResponseKind().(*kmsg.EndTxnResponse)
			resp.ErrorCode = kerr.InvalidTransactionTimeout.Code
			return resp, nil, true
		}
		return nil, nil, false
	})

	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	producer.SetEmitHook(p, func(uint64) { emitted.Add(1) })
	producer.SetCommitHook(p, func(pos schemas.Position) {
		// Before any restart a change's sequence number is the count of
		// changes handed on: more than the committed position's means changes
		// were encoded while this commit was in flight.
		if st := p.Stats(); st.Restarts.Load() == 0 && st.Changes.Load() >= pos.Seq+during {
			overlapped.Add(1)
		}
	})
	w := cdctest.NewWorkload(t, m.DB(), 31)
	r := cdctest.StartProducerWith(t, cfg, p)
	// A large transaction is committed every flush_records changes: its
	// commits are held while the next changes are encoded.
	bulk := func(mode *atomic.Bool) {
		for i := 0; i < 30; i++ {
			w.Step(t)
		}
		mode.Store(true)
		w.Bulk(t, 600)
		r.CaughtUp(t, m.DB())
		mode.Store(false)
	}
	bulk(&hold)
	if overlapped.Load() == 0 {
		t.Fatal("no commit saw changes handed on while it was in flight: the test proved nothing")
	}
	bulk(&fail)
	if failed.Load() == 0 || r.P.Stats().Restarts.Load() == 0 {
		t.Fatalf("failed commits %d, restarts %d: the failure path was not taken", failed.Load(), r.P.Stats().Restarts.Load())
	}
	bulk(&hold)
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	type part struct {
		topic string
		p     int32
	}
	last := map[part]uint64{}
	for _, rec := range recs {
		if rec.Seq == 0 {
			continue
		}
		at := part{rec.Topic, rec.Partition}
		if rec.Seq < last[at] {
			t.Fatalf("%s/%d: seq %d at offset %d after seq %d", rec.Topic, rec.Partition, rec.Seq, rec.Offset, last[at])
		}
		last[at] = rec.Seq
	}
	t.Logf("%d changes exactly once and in order; %d of the held commits overlapped, %d restarts",
		n, overlapped.Load(), r.P.Stats().Restarts.Load())
}
