package cdctest

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/schemas"
)

// Workload drives random DML against three tables of database "wl": items (BIGINT
// key, several types), pairs (composite key with a string part that needs escaping)
// and nopk (no primary key). Every statement runs in a transaction of 1–12
// statements; primary keys change, rows are deleted, values go NULL.
type Workload struct {
	DB   *sql.DB
	Rand *rand.Rand

	nextID   int64
	items    map[int64]bool
	pairs    map[string][2]any
	nopkNext int
	nopk     map[int]bool
	// Statements counts the statements that changed at least one row.
	Statements int
}

// NewWorkload creates the tables (dropping old ones) and returns a workload seeded
// with seed, so a failure can be reproduced.
func NewWorkload(t testing.TB, db *sql.DB, seed uint64) *Workload {
	t.Helper()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS wl",
		"DROP TABLE IF EXISTS wl.items, wl.pairs, wl.nopk",
		`CREATE TABLE wl.items (
			id BIGINT NOT NULL PRIMARY KEY,
			name VARCHAR(64) CHARACTER SET utf8mb4,
			amount DECIMAL(14,2),
			data VARBINARY(16),
			note TEXT,
			ts DATETIME(6),
			cnt INT UNSIGNED
		)`,
		`CREATE TABLE wl.pairs (
			a INT NOT NULL,
			b VARCHAR(20) NOT NULL,
			v INT,
			PRIMARY KEY (a, b)
		)`,
		`CREATE TABLE wl.nopk (x INT, y VARCHAR(10))`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("workload setup %q: %v", q, err)
		}
	}
	return &Workload{DB: db, Rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), nextID: 1,
		items: map[int64]bool{}, pairs: map[string][2]any{}, nopk: map[int]bool{}}
}

var names = []string{"alice", "bob", "crème brûlée", "emoji 🎉🚀", "世界", "quote\"s", "back\\slash", "comma,here", "", "tab\there"}

func (w *Workload) pick(m map[int64]bool) (int64, bool) {
	if len(m) == 0 {
		return 0, false
	}
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys[w.Rand.IntN(len(keys))], true
}

func (w *Workload) nullable(v any) any {
	if w.Rand.IntN(6) == 0 {
		return nil
	}
	return v
}

func (w *Workload) itemValues() []any {
	amount := fmt.Sprintf("%d.%02d", w.Rand.IntN(2000000)-1000000, w.Rand.IntN(100))
	data := make([]byte, w.Rand.IntN(16))
	for i := range data {
		data[i] = byte(w.Rand.IntN(256))
	}
	ts := time.Date(2020+w.Rand.IntN(6), time.Month(1+w.Rand.IntN(12)), 1+w.Rand.IntN(28),
		w.Rand.IntN(24), w.Rand.IntN(60), w.Rand.IntN(60), w.Rand.IntN(1000000)*1000, time.UTC)
	return []any{
		w.nullable(names[w.Rand.IntN(len(names))]), w.nullable(amount), w.nullable(data),
		w.nullable(strings.Repeat("n", w.Rand.IntN(300))), w.nullable(ts.Format("2006-01-02 15:04:05.000000")),
		w.nullable(w.Rand.Uint32()),
	}
}

// Step runs one random transaction.
func (w *Workload) Step(t testing.TB) {
	t.Helper()
	tx, err := w.DB.Begin()
	if err != nil {
		t.Fatalf("workload begin: %v", err)
	}
	n := 1 + w.Rand.IntN(12)
	for i := 0; i < n; i++ {
		w.statement(t, tx)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("workload commit: %v", err)
	}
}

// Bulk inserts n items in one transaction (a big binlog transaction).
func (w *Workload) Bulk(t testing.TB, n int) {
	t.Helper()
	tx, err := w.DB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		var sb strings.Builder
		var args []any
		sb.WriteString("INSERT INTO wl.items VALUES ")
		for j := i; j < n && j < i+100; j++ {
			if j > i {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?,?,?,?,?)")
			id := w.nextID
			w.nextID++
			w.items[id] = true
			args = append(append(args, id), w.itemValues()...)
		}
		if _, err := tx.Exec(sb.String(), args...); err != nil {
			t.Fatalf("bulk insert: %v", err)
		}
		w.Statements++
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Truncate runs TRUNCATE TABLE wl.<table> (items, pairs or nopk) and forgets
// the table's rows; later steps insert new ones.
func (w *Workload) Truncate(t testing.TB, table string) {
	t.Helper()
	if _, err := w.DB.Exec("TRUNCATE TABLE wl." + table); err != nil {
		t.Fatalf("truncate wl.%s: %v", table, err)
	}
	switch table {
	case "items":
		clear(w.items)
	case "pairs":
		clear(w.pairs)
	case "nopk":
		clear(w.nopk)
	default:
		t.Fatalf("truncate: wl.%s is not a workload table", table)
	}
	w.Statements++
}

func (w *Workload) exec(t testing.TB, tx *sql.Tx, q string, args ...any) {
	t.Helper()
	res, err := tx.Exec(q, args...)
	if err != nil {
		t.Fatalf("workload %q: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		w.Statements++
	}
}

func (w *Workload) statement(t testing.TB, tx *sql.Tx) {
	switch r := w.Rand.IntN(100); {
	case r < 30: // insert item(s)
		rows := 1 + w.Rand.IntN(3)
		for i := 0; i < rows; i++ {
			id := w.nextID
			w.nextID++
			w.items[id] = true
			w.exec(t, tx, "INSERT INTO wl.items VALUES (?,?,?,?,?,?,?)", append([]any{id}, w.itemValues()...)...)
		}
	case r < 50: // update non-key columns
		if id, ok := w.pick(w.items); ok {
			v := w.itemValues()
			w.exec(t, tx, "UPDATE wl.items SET name=?, amount=?, note=?, cnt=? WHERE id=?", v[0], v[1], v[3], v[5], id)
		}
	case r < 58: // primary-key change
		if id, ok := w.pick(w.items); ok {
			nid := w.nextID
			w.nextID++
			delete(w.items, id)
			w.items[nid] = true
			w.exec(t, tx, "UPDATE wl.items SET id=?, amount=amount+1 WHERE id=?", nid, id)
		}
	case r < 68: // delete
		if id, ok := w.pick(w.items); ok {
			delete(w.items, id)
			w.exec(t, tx, "DELETE FROM wl.items WHERE id=?", id)
		}
	case r < 80: // composite key table
		a := w.Rand.IntN(20)
		b := names[w.Rand.IntN(len(names))]
		k := fmt.Sprint(a, "|", b)
		switch {
		case w.pairs[k] == [2]any{}:
			w.pairs[k] = [2]any{a, b}
			w.exec(t, tx, "INSERT INTO wl.pairs VALUES (?,?,?)", a, b, w.nullable(w.Rand.IntN(1000)))
		case w.Rand.IntN(2) == 0:
			delete(w.pairs, k)
			w.exec(t, tx, "DELETE FROM wl.pairs WHERE a=? AND b=?", a, b)
		default:
			nb := fmt.Sprintf("%s,%d", b, w.Rand.IntN(100))
			nk := fmt.Sprint(a, "|", nb)
			if w.pairs[nk] == [2]any{} && len(nb) <= 20 {
				delete(w.pairs, k)
				w.pairs[nk] = [2]any{a, nb}
				w.exec(t, tx, "UPDATE wl.pairs SET b=?, v=v+1 WHERE a=? AND b=?", nb, a, b)
			}
		}
	case r < 90: // table without a primary key: rows kept unique so the fallback key identifies them
		x := w.nopkNext
		w.nopkNext++
		w.nopk[x] = true
		w.exec(t, tx, "INSERT INTO wl.nopk VALUES (?,?)", x, w.nullable(fmt.Sprint("y", x)))
	case r < 95:
		for x := range w.nopk {
			delete(w.nopk, x)
			w.exec(t, tx, "DELETE FROM wl.nopk WHERE x=?", x)
			break
		}
	default: // multi-row update
		lo := w.Rand.Int64N(w.nextID + 1)
		w.exec(t, tx, "UPDATE wl.items SET cnt = COALESCE(cnt,0) + 1 WHERE id BETWEEN ? AND ?", lo, lo+5)
	}
}

// ItemsKey, PairsKey and NopkKey build kanal keys from rows rendered by SourceRows.
func ItemsKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "wl", "items", []any{r["id"]}))
}

// PairsKey builds the key of a wl.pairs row.
func PairsKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "wl", "pairs", []any{r["a"], r["b"]}))
}

// NopkKey builds the fallback key of a wl.nopk row (all columns).
func NopkKey(r map[string]string) string {
	var y any = r["y"]
	if r["y"] == "NULL" {
		y = nil
	}
	return string(schemas.AppendKey(nil, "wl", "nopk", []any{r["x"], y}))
}

// CheckTables compares every workload table with the replayed records and fails
// the test on any difference.
func CheckTables(t testing.TB, db *sql.DB, recs []Record) {
	t.Helper()
	byTable := map[string][]Record{}
	for _, r := range recs {
		table, _, _ := strings.Cut(r.Key, ":")
		byTable[table] = append(byTable[table], r)
	}
	for _, tc := range []struct {
		table string
		key   func(map[string]string) string
		bin   []string
	}{
		{"wl.items", ItemsKey, []string{"data"}},
		{"wl.pairs", PairsKey, nil},
		{"wl.nopk", NopkKey, nil},
	} {
		want := SourceRows(t, db, tc.table, tc.key, tc.bin...)
		got := Replay(t, byTable[tc.table])
		if d := testdiff.Rows(want, got); d != "" {
			t.Errorf("%s: replayed topic differs from the source (%d rows vs %d):\n%s", tc.table, len(got), len(want), d)
		}
	}
}

// CheckExactlyOnce asserts that the change sequences of recs are exactly 1..N: no
// change missing, none twice. A truncate, written once to every partition of
// its table's topic, counts once. It needs topics that were not compacted.
func CheckExactlyOnce(t testing.TB, recs []Record) int {
	t.Helper()
	var seqs []uint64
	type origin struct {
		file    string
		pos     uint32
		row     int
		db, tbl string
	}
	seen := map[origin]uint64{}
	truncates := map[uint64]string{}
	for _, r := range recs {
		if c := r.Change; c != nil && c.Op == schemas.OpTruncate {
			if prev, ok := truncates[c.Seq]; ok && prev != r.Topic {
				t.Fatalf("truncate seq %d is in %s and %s", c.Seq, prev, r.Topic)
			} else if !ok {
				truncates[c.Seq] = r.Topic
				seqs = append(seqs, c.Seq)
			}
			continue
		}
		if c := r.Change; c != nil {
			seqs = append(seqs, c.Seq)
			o := origin{c.Source.File, c.Source.Pos, c.Source.Row, c.Source.DB, c.Source.Table}
			if prev, dup := seen[o]; dup {
				t.Fatalf("the change at %s:%d row %d (%s.%s) was written twice (seq %d and %d)", o.file, o.pos, o.row, o.db, o.tbl, prev, c.Seq)
			}
			seen[o] = c.Seq
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i+1) {
			if i > 0 && s == seqs[i-1] {
				t.Fatalf("change seq %d appears twice", s)
			}
			t.Fatalf("change seq %d missing (next present is %d)", i+1, s)
		}
	}
	return len(seqs)
}
