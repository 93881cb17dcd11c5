package consumer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// opCounter counts the changes a handler gets per table and op, and keeps the
// records of one key.
type opCounter struct {
	mu     sync.Mutex
	counts map[string]map[schemas.Op]int
	tombs  map[string]consumer.Record // table → tombstone of key 10
	dels   map[string]consumer.Record // table → delete of key 10
}

func (c *opCounter) Name() string { return "count" }

func (c *opCounter) Handle(_ context.Context, b consumer.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		switch {
		case r.Tombstone:
			if strings.HasSuffix(r.Key, ":10") {
				c.tombs[r.Table] = r
			}
		default:
			if c.counts[r.Table] == nil {
				c.counts[r.Table] = map[schemas.Op]int{}
			}
			c.counts[r.Table][r.Op]++
			if r.Op == schemas.OpDelete && strings.HasSuffix(r.Key, ":10") {
				c.dels[r.Table] = r
			}
		}
	}
	return nil
}

// TestReplaySeesHistoryAndTombstoneVersions: a counting handler started after
// the writes and replaying from earliest sees every change of a table whose
// topic keeps full history (cleanup.policy delete: 13 inserts, 5 updates, 1
// delete); on a compacted topic the deleted row is left only as a tombstone, and
// the handler gets that tombstone's Seq, op and source position from its
// headers although it never saw the delete.
func TestReplaySeesHistoryAndTombstoneVersions(t *testing.T) {
	m := testenv.MariaDB(t)
	k := kafka(t)
	m.Exec(t, "CREATE DATABASE wl")
	for _, tbl := range []string{"hist", "state"} {
		m.Exec(t, "CREATE TABLE wl."+tbl+" (id INT PRIMARY KEY, v VARCHAR(20))")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := "delete"
	if _, err := kadm.NewClient(k.Client(t)).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &del}, "kanal.wl.hist"); err != nil {
		t.Fatal(err)
	}
	cfg := cdctest.ProducerConfig(m, k, "hist")
	cfg.Kafka.CleanupPolicy = "compact"
	cfg.Kafka.MinCompactionLag = 0 // kfake compacts regardless of the lag; say so
	p := cdctest.StartProducer(t, cfg)
	for _, tbl := range []string{"hist", "state"} {
		for i := 1; i <= 10; i++ {
			m.Exec(t, "INSERT INTO wl."+tbl+" VALUES (?, 'v')", i)
		}
		for i := 1; i <= 5; i++ {
			m.Exec(t, "UPDATE wl."+tbl+" SET v = 'w' WHERE id = ?", i)
		}
	}
	tx, err := m.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"hist", "state"} {
		if _, err := tx.Exec("DELETE FROM wl." + tbl + " WHERE id = 10"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"hist", "state"} {
		for i := 11; i <= 13; i++ {
			m.Exec(t, "INSERT INTO wl."+tbl+" VALUES (?, 'v')", i)
		}
	}
	p.CaughtUp(t, m.DB())
	waitFor(t, 60*time.Second, "compaction to drop the delete of wl.state", func() bool {
		for _, r := range cdctest.ReadAll(t, k.Brokers, `^kanal\.wl\.state$`, 30*time.Second) {
			if r.Change != nil && r.Change.Op == schemas.OpDelete {
				return false
			}
		}
		return true
	})

	h := &opCounter{counts: map[string]map[schemas.Op]int{}, tombs: map[string]consumer.Record{}, dels: map[string]consumer.Record{}}
	reg := consumer.NewRegistry()
	if err := reg.Register(h, consumer.Tables("wl.*")); err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, "a", testConfig(k), reg)
	waitFor(t, 30*time.Second, "both tombstones and the history", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.tombs) == 2 && h.counts["wl.hist"][schemas.OpCreate] == 13
	})
	rr.stop(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.counts["wl.hist"]; c[schemas.OpCreate] != 13 || c[schemas.OpUpdate] != 5 || c[schemas.OpDelete] != 1 {
		t.Errorf("wl.hist (full history) replayed %v, want 13 inserts, 5 updates, 1 delete", c)
	}
	if _, ok := h.dels["wl.state"]; ok {
		t.Fatal("the compacted topic still had the delete; the test needs it gone")
	}
	hd, ht, st := h.dels["wl.hist"], h.tombs["wl.hist"], h.tombs["wl.state"]
	if hd.Seq == 0 || hd.Pos == "" {
		t.Fatalf("the delete of wl.hist has Seq %d Pos %q", hd.Seq, hd.Pos)
	}
	if ht.Seq != hd.Seq || ht.Pos != hd.Pos || ht.Op != schemas.OpDelete {
		t.Errorf("wl.hist tombstone Seq %d Pos %q Op %s, want the delete's %d %q d", ht.Seq, ht.Pos, ht.Op, hd.Seq, hd.Pos)
	}
	// The deletes ran in one transaction, wl.state's right after wl.hist's.
	file, _, _ := strings.Cut(hd.Pos, ":")
	if st.Seq != hd.Seq+1 || !strings.HasPrefix(st.Pos, file+":") || st.Pos == hd.Pos || st.Op != schemas.OpDelete {
		t.Errorf("wl.state tombstone (its delete compacted away) Seq %d Pos %q Op %s, want Seq %d and a position in %s",
			st.Seq, st.Pos, st.Op, hd.Seq+1, file)
	}
}
