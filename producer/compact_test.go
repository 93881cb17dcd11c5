package producer_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

// changeCollector keeps every change a consumer Runner hands it, by seq.
type changeCollector struct {
	mu   sync.Mutex
	seqs map[uint64]*schemas.Change
}

func (c *changeCollector) Name() string { return "collector" }

func (c *changeCollector) Handle(_ context.Context, b consumer.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		if !r.Tombstone {
			c.seqs[r.Seq] = r.Change
		}
	}
	return nil
}

func (c *changeCollector) get(seq uint64) *schemas.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqs[seq]
}

// TestJSONCompactFormat: json-compact end to end with a real MariaDB. A random
// workload (multi-row transactions, key changes, deletes, NULLs, a table
// without a primary key, a truncate), an ALTER TABLE (a new table version, so
// a new descriptor) and a producer restart in the middle: replaying the topics
// from the earliest offset equals the source, every change exactly once; every
// change decodes to the same Change as the json envelope of a second source
// reading the same binlog; a consumer Runner decodes all of them, those after
// the ALTER and the restart included; a backfill's reads replay to the source.
func TestJSONCompactFormat(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, "CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, note VARCHAR(20) NULL)")
	w := cdctest.NewWorkload(t, m.DB(), 23)

	cfg := cdctest.ProducerConfig(m, k, "compact")
	cfg.Kafka.TopicPrefix, cfg.Kafka.Format = "kc", schemas.FormatJSONCompact
	cfg.Kafka.FlushRecords = 50 // descriptors and records spread over many transactions
	cfg.Tables.Include = []string{"wl.*", "shop.*"}
	ref := cdctest.ProducerConfig(m, k, "compactref")
	ref.Kafka.TopicPrefix, ref.Source.ServerID = "kcref", 1002
	ref.Tables.Include = cfg.Tables.Include

	coll := &changeCollector{seqs: map[uint64]*schemas.Change{}}
	creg := consumer.NewRegistry()
	if err := creg.Register(coll, consumer.Tables("wl.*", "shop.*")); err != nil {
		t.Fatal(err)
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka = cfg.Kafka.Config
	ccfg.CommitInterval, ccfg.SessionTimeout, ccfg.MetadataMaxAge = 200*time.Millisecond, 2*time.Second, 300*time.Millisecond
	ccfg.Heartbeats = false
	cdctest.StartRunner(t, "compact", ccfg, creg, cdctest.Logger(t), 30*time.Second)

	r := cdctest.StartProducer(t, cfg)
	m.Exec(t, "INSERT INTO shop.users VALUES (1, 'ann', NULL), (2, 'bob', 'x')")
	for range 40 {
		w.Step(t)
	}
	w.Bulk(t, 300)
	r.CaughtUp(t, m.DB())
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	// While the producer is down: a new table version, a truncate, more load.
	m.Exec(t, "ALTER TABLE shop.users ADD COLUMN age INT NULL AFTER name")
	m.Exec(t, "INSERT INTO shop.users VALUES (3, 'cy', 40, NULL)")
	m.Exec(t, "UPDATE shop.users SET age = id * 10, note = CONCAT('n', id)") // every row carries the new columns
	m.Exec(t, "DELETE FROM shop.users WHERE id = 2")
	w.Truncate(t, "nopk")
	for range 40 {
		w.Step(t)
	}
	r = cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())
	cdctest.StartProducer(t, ref).CaughtUp(t, m.DB())

	res, err := schemastore.NewResolver(cfg.Kafka.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	recs := cdctest.ReadAllWith(t, k.Brokers, `^kc\.(wl|shop)\.[^.]+$`, time.Minute, res)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	var users []cdctest.Record
	for _, rec := range recs {
		if strings.HasPrefix(rec.Key, "shop.users") {
			users = append(users, rec)
		}
	}
	want := cdctest.SourceRows(t, m.DB(), "shop.users", func(r map[string]string) string {
		return string(schemas.AppendKey(nil, "shop", "users", []any{r["id"]}))
	})
	if got := cdctest.Replay(t, users); !reflect.DeepEqual(got, want) {
		t.Errorf("shop.users replayed\n%v\nsource\n%v", got, want)
	}

	// The same changes as the json envelope gives them.
	refRecs := cdctest.ReadAll(t, k.Brokers, `^kcref\.(wl|shop)\.[^.]+$`, time.Minute)
	bySeq := map[uint64]*schemas.Change{}
	for _, rec := range refRecs {
		if rec.Change != nil {
			bySeq[rec.Change.Seq] = rec.Change
		}
	}
	compared := 0
	for _, rec := range recs {
		c := rec.Change
		if c == nil {
			continue
		}
		if f := rec.Headers[schemas.HeaderFormat]; f != schemas.FormatJSONCompact {
			t.Fatalf("%s@%d: format %q", rec.Topic, rec.Offset, f)
		}
		j := bySeq[c.Seq]
		if j == nil {
			t.Fatalf("seq %d: no json change", c.Seq)
		}
		jc := *j
		jc.Source.Name = c.Source.Name
		if c.Op == schemas.OpTruncate {
			// A truncate carries the columns its producer session knows (none
			// for a table it has not met since it started): the restart
			// differs here, whatever the format.
			jc.Columns, jc.KeyFallback = c.Columns, c.KeyFallback
		}
		if !reflect.DeepEqual(c, &jc) {
			t.Fatalf("seq %d:\njson-compact %+v\njson         %+v", c.Seq, c, &jc)
		}
		compared++
	}
	t.Logf("%d changes, %d compared with json", n, compared)

	// Descriptors: one per table version (a restarted producer writes those it
	// uses again, under the same keys: the topic is compacted).
	descs := cdctest.ReadAll(t, k.Brokers, `^kc\._schemas$`, time.Minute)
	keys := map[string]bool{}
	for _, d := range descs {
		if !strings.Contains(string(d.Value), `"format":"json-compact"`) {
			t.Errorf("descriptor %s: %s", d.Key, d.Value)
		}
		keys[d.Key] = true
	}
	if len(keys) < 5 { // wl.items, wl.pairs, wl.nopk, shop.users twice
		t.Errorf("%d descriptor records under %d keys", len(descs), len(keys))
	}

	// The consumer Runner decoded every change as the topic holds it.
	deadline := time.Now().Add(time.Minute)
	for _, rec := range recs {
		if rec.Change == nil {
			continue
		}
		for coll.get(rec.Change.Seq) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := coll.get(rec.Change.Seq); !reflect.DeepEqual(got, rec.Change) {
			t.Fatalf("runner: seq %d\n got %+v\nwant %+v", rec.Change.Seq, got, rec.Change)
		}
	}

	// A backfill in json-compact: the reads (op r) replay to the source.
	snap := cdctest.ProducerConfig(m, k, "compactsnap")
	snap.Kafka.TopicPrefix, snap.Kafka.Format, snap.Source.ServerID = "kcs", schemas.FormatJSONCompact, 1003
	snap.Source.Start, snap.Source.SnapshotChunkSize = "snapshot", 100
	snap.Tables.Include = cfg.Tables.Include
	rs := cdctest.StartProducer(t, snap)
	waitSnapshots(t, rs, 4, 2*time.Minute)
	rs.CaughtUp(t, m.DB())
	sres, err := schemastore.NewResolver(snap.Kafka.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sres.Close()
	srecs := cdctest.ReadAllWith(t, k.Brokers, `^kcs\.(wl|shop)\.[^.]+$`, time.Minute, sres)
	reads := 0
	for _, rec := range srecs {
		if rec.Change != nil && rec.Change.Op == schemas.OpRead {
			reads++
		}
	}
	if reads == 0 {
		t.Error("the backfill wrote no reads")
	}
	cdctest.CheckTables(t, m.DB(), srecs)

	// A record whose descriptor is nowhere is undecodable, naming what is missing.
	d := schemas.NewDecoder()
	d.Schemas = res
	_, err = d.Decode(schemas.FormatJSONCompact, []byte(`["00000000000000aa","c",1,1,"f",4,"",0,0,null,[1]]`))
	if !errors.Is(err, schemas.ErrDecode) || !strings.Contains(err.Error(), "00000000000000aa") || !strings.Contains(err.Error(), "kc._schemas") {
		t.Errorf("missing descriptor: %v", err)
	}
}
