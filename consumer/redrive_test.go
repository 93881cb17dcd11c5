package consumer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// versioned is a version-guarded in-memory sink: a change older than the row's
// newest applied Seq is ignored. It rejects values "bad" while broken is set.
type versioned struct {
	name   string
	broken atomic.Bool
	mu     sync.Mutex
	rows   map[string]string
	seqs   map[string]uint64
	topics map[string]int // records handled per topic
}

func (v *versioned) Name() string { return v.name }

func (v *versioned) Handle(_ context.Context, b consumer.Batch) error {
	for _, r := range b.Records {
		if v.broken.Load() && r.Change != nil && r.Change.After["v"] == "bad" {
			return consumer.Permanent(fmt.Errorf("%s: value rejected", r.Key))
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range b.Records {
		v.topics[b.Topic]++
		if r.Seq <= v.seqs[r.Key] {
			continue
		}
		v.seqs[r.Key] = r.Seq
		v.rows[r.Key] = fmt.Sprint(r.Change.After["v"])
	}
	return nil
}

func (v *versioned) get(key string) (string, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rows[key], v.seqs[key]
}

// TestRedrive: dead letters re-published with `Redrive` reach the group through
// its retry topic, only the handler that dead-lettered them gets them, a
// version-guarded sink keeps a newer change that came meanwhile, truncated dead
// letters are redriven from their original records, and a second redrive
// publishes nothing (each dead letter is redriven once).
func TestRedrive(t *testing.T) {
	k := kafka(t)
	const topic = "kanal.db.items"
	createTopic(t, k, topic, 2)
	pc := producerClient(t, k)
	var recs []*kgo.Record
	for i := int64(1); i <= 10; i++ {
		v := "v"
		if i == 5 || i == 6 {
			v = "bad"
		}
		recs = append(recs, itemRecord(topic, uint64(i), schemas.OpCreate, i, v))
	}
	recs = append(recs, itemRecord(topic, 20, schemas.OpUpdate, 5, "new")) // a newer change of row 5
	produce(t, pc, recs...)

	vers := &versioned{name: "vers", rows: map[string]string{}, seqs: map[string]uint64{}, topics: map[string]int{}}
	vers.broken.Store(true)
	other := &memSink{name: "other", tr: newTracker(), id: "x", rows: map[string]string{}}
	reg := consumer.NewRegistry()
	for _, h := range []consumer.Handler{vers, other} {
		if err := reg.Register(h, consumer.Tables("db.items"), consumer.Group("shared"), consumer.OnFailure(consumer.DeadLetter)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(k)
	cfg.DLQMaxValueBytes = 100 // every dead letter is truncated: redrive reads the originals
	rr := startRunner(t, "a", cfg, reg)
	dlq := readTopic(t, k, schemas.DLQTopic("kanal", "shared"), 2)
	waitFor(t, 30*time.Second, "the good records and the newer change of row 5", func() bool {
		v, _ := vers.get("db.items:10")
		v5, _ := vers.get("db.items:5")
		return v == "v" && v5 == "new"
	})
	if v, seq := vers.get("db.items:5"); v != "new" || seq != 20 {
		t.Fatalf("row 5 = %q@%d before the redrive, want the newer change", v, seq)
	}
	for _, d := range dlq {
		if hdr(d, schemas.HeaderDLQTruncated) == "" {
			t.Fatalf("dead letter %s is not truncated; the test needs it to be", d.Key)
		}
	}

	kc := &kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vers.broken.Store(false) // the cause is fixed
	res, err := consumer.Redrive(ctx, kc, "shared", consumer.DeadLetterFilter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Redriven) != 2 || len(res.Skipped) != 0 {
		t.Fatalf("redrive: %d redriven, skipped %+v", len(res.Redriven), res.Skipped)
	}
	waitFor(t, 30*time.Second, "the redriven row 6", func() bool {
		v, _ := vers.get("db.items:6")
		return v == "bad"
	})
	waitFor(t, 30*time.Second, "both redriven records handled", func() bool {
		vers.mu.Lock()
		defer vers.mu.Unlock()
		return vers.topics[res.RetryTopic] == 2
	})
	if v, seq := vers.get("db.items:5"); v != "new" || seq != 20 {
		t.Errorf("row 5 = %q@%d after the redrive of its older change, want the newer change kept", v, seq)
	}

	again, err := consumer.Redrive(ctx, kc, "shared", consumer.DeadLetterFilter{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Redriven) != 0 || len(again.Skipped) != 2 || again.Skipped[0].Why != "already redriven" {
		t.Errorf("second redrive: %d redriven, skipped %+v", len(again.Redriven), again.Skipped)
	}
	dls, err := consumer.ReadDeadLetters(ctx, kc, "shared", consumer.DeadLetterFilter{Key: "db.items:6"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || !dls[0].Redriven || dls[0].Handler != "vers" || dls[0].Reason != "permanent" || dls[0].Topic != topic || dls[0].Seq != 6 {
		t.Errorf("dead letters of key db.items:6: %+v", dls)
	}
	rr.stop(t)
	// The other handler of the group never failed: it got each change once, and
	// no redriven record.
	other.mu.Lock()
	defer other.mu.Unlock()
	if other.rows["db.items:6"] != "bad" || other.rows["db.items:5"] != "new" {
		t.Errorf("other handler rows: %v", other.rows)
	}
	for _, p := range other.tr.partitionsOf("x") {
		if strings.HasPrefix(p, res.RetryTopic) {
			t.Errorf("the other handler got redriven records (%s)", p)
		}
	}
}
