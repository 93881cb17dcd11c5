package sqlmirror_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// markServerID is the session server_id both mirrors write with; both skip
// changes carrying it.
const markServerID = 9000

// localWorkload writes random transactions to tw.items of one server, on ids
// in [base, base+1000), and keeps the table it expects.
type localWorkload struct {
	db   *sql.DB
	rng  *rand.Rand
	base int64
	rows map[int64][2]any // id → v, n
}

func (w *localWorkload) pick() (int64, bool) {
	for id := range w.rows { // map order is random enough to pick one
		return id, true
	}
	return 0, false
}

func (w *localWorkload) freeID() int64 {
	for {
		id := w.base + w.rng.Int64N(1000)
		if _, ok := w.rows[id]; !ok {
			return id
		}
	}
}

func (w *localWorkload) step(t *testing.T) {
	t.Helper()
	tx, err := w.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := 1 + w.rng.IntN(4); i > 0; i-- {
		id, ok := w.pick()
		switch op := w.rng.IntN(10); {
		case !ok || op < 4 || len(w.rows) < 20:
			id = w.freeID()
			v, n := fmt.Sprintf("v%d,'x'", w.rng.IntN(1e6)), any(w.rng.Int64N(1000))
			if w.rng.IntN(5) == 0 {
				n = nil
			}
			exec("INSERT INTO tw.items (id, v, n) VALUES (?, ?, ?)", id, v, n)
			w.rows[id] = [2]any{v, n}
		case op < 7:
			v := fmt.Sprintf("u%d", w.rng.IntN(1e6))
			exec("UPDATE tw.items SET v = ?, n = COALESCE(n, 0) + 1 WHERE id = ?", v, id)
			n := int64(1)
			if old, ok := w.rows[id][1].(int64); ok {
				n = old + 1
			}
			w.rows[id] = [2]any{v, n}
		case op < 9:
			exec("DELETE FROM tw.items WHERE id = ?", id)
			delete(w.rows, id)
		default: // a primary-key change
			nid := w.freeID()
			exec("UPDATE tw.items SET id = ? WHERE id = ?", nid, id)
			w.rows[nid] = w.rows[id]
			delete(w.rows, id)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func twKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "tw", "items", []any{r["id"]}))
}

// TestTwoWayNoPingPong runs two MariaDB servers, each with a producer and a
// mirror into the other, both written to on disjoint keys. The mirrors mark
// their writes with a session server_id and skip changes carrying it. Both
// servers converge to the union of what was written, and every change is
// applied exactly once on the other side: each source's topics hold every
// change of the other source exactly once more (the mirrored copy), and no
// mirrored copy is mirrored back.
func TestTwoWayNoPingPong(t *testing.T) {
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	type side struct {
		name   string
		m      *testenv.MariaDBServer
		id     uint32
		w      *localWorkload
		prod   *cdctest.Producer
		mirror *runner
	}
	sides := []*side{{name: "a", id: 11}, {name: "b", id: 12}}
	for i, s := range sides {
		s.m = testenv.MariaDB(t, testenv.WithServerID(s.id))
		mustExec(t, s.m.DB(), "CREATE DATABASE tw",
			"CREATE TABLE tw.items (id BIGINT PRIMARY KEY, v VARCHAR(32), n BIGINT, _kanal_version BIGINT NOT NULL DEFAULT 0)")
		s.w = &localWorkload{db: s.m.DB(), rng: rand.New(rand.NewPCG(uint64(i), 42)), base: int64(i+1) * 1_000_000, rows: map[int64][2]any{}}
		pcfg := cdctest.ProducerConfig(s.m, k, "two-way-"+s.name)
		pcfg.Kafka.TopicPrefix = "k" + s.name
		pcfg.Tables.Include = []string{"tw.items"}
		s.prod = cdctest.StartProducer(t, pcfg)
	}
	for i, s := range sides {
		other := sides[1-i]
		cfg := sqlmirror.DefaultConfig()
		cfg.Name = "to-" + other.name
		cfg.Dialect = sqlmirror.MySQL
		cfg.DSN = other.m.DSN("tw")
		cfg.WriteServerID = markServerID
		cfg.SkipServerIDs = []uint32{markServerID}
		s.mirror = startRunner(t, k, "k"+s.name, cfg, "tw.items")
		var sid uint32
		if err := s.mirror.h.DB().QueryRow("SELECT @@session.server_id").Scan(&sid); err != nil || sid != markServerID {
			t.Fatalf("the mirror's session server_id is %d (%v), want %d", sid, err, markServerID)
		}
	}
	for i := 0; i < 150; i++ {
		for _, s := range sides {
			s.w.step(t)
		}
	}
	want := map[string]map[string]string{}
	for _, s := range sides {
		for id, r := range s.w.rows {
			row := map[string]string{"id": strconv.FormatInt(id, 10), "v": cdctest.Render(r[0]), "n": cdctest.Render(r[1])}
			want[twKey(row)] = row
		}
	}
	expected := func(context.Context) (map[string]map[string]string, error) { return want, nil }
	// Twice: the mirrors' own writes reach the topics too, and must be skipped.
	for round := 0; round < 2; round++ {
		for _, s := range sides {
			s.prod.CaughtUp(t, s.m.DB())
		}
		for _, s := range sides {
			waitApplied(t, k, s.mirror.h, consumer.DefaultGroup(s.mirror.h.Name()), `^k`+s.name+`\.tw\.items$`)
		}
	}
	for _, s := range sides {
		waitEqual(t, "server "+s.name, expected, rowsOf(s.m.DB(), "SELECT id, v, n FROM tw.items", twKey))
	}

	// Count the changes per origin in each source's topic.
	type counts struct{ own, mirrored int }
	got := map[string]*counts{}
	for i, s := range sides {
		c := &counts{}
		got[s.name] = c
		for _, r := range cdctest.ReadAll(t, k.Brokers, `^k`+s.name+`\.tw\.items$`, time.Minute) {
			if r.Change == nil {
				continue
			}
			id, _ := r.Change.After["id"].(int64)
			if r.Change.After == nil {
				id, _ = r.Change.Before["id"].(int64)
			}
			ownKey := id >= s.w.base && id < s.w.base+1_000_000
			switch r.Change.Source.ServerID {
			case s.id:
				if !ownKey {
					t.Fatalf("server %s wrote key %d of server %s itself", s.name, id, sides[1-i].name)
				}
				c.own++
			case markServerID:
				if ownKey {
					t.Fatalf("server %s got its own key %d back from the mirror: ping-pong", s.name, id)
				}
				c.mirrored++
			default:
				t.Fatalf("server %s: change with server_id %d", s.name, r.Change.Source.ServerID)
			}
		}
	}
	if got["a"].own == 0 || got["b"].own == 0 {
		t.Fatal("no changes: the test proves nothing")
	}
	if got["b"].mirrored != got["a"].own || got["a"].mirrored != got["b"].own {
		t.Fatalf("changes applied on the other side: a→b %d of %d, b→a %d of %d; each must be applied exactly once",
			got["b"].mirrored, got["a"].own, got["a"].mirrored, got["b"].own)
	}
	t.Logf("a wrote %d changes, b %d; each applied exactly once on the other side, none came back", got["a"].own, got["b"].own)
}
