package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// The benchmark table: the column types a typical OLTP table has.
const ordersDDL = `CREATE TABLE bench.orders (
  id          BIGINT NOT NULL PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  sku         VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
  status      ENUM('new','paid','shipped','cancelled') NOT NULL,
  amount      DECIMAL(12,2) NOT NULL,
  qty         INT UNSIGNED NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  note        TEXT CHARACTER SET utf8mb4,
  stamp_us    BIGINT NOT NULL
) ENGINE=InnoDB`

const (
	bulkSize = 1000 // rows of one bulk transaction
	// bulkShare of the row changes come from 1,000-row transactions, the rest from
	// single-row transactions.
	bulkShare = 0.7
	// single-row statements sent in one round trip (each is its own autocommit
	// transaction in the binlog).
	singleBatch = 200
)

var statuses = []string{"new", "paid", "shipped", "cancelled"}

// notes are TEXT values: ASCII, accented Latin, CJK and 4-byte emoji (utf8mb4).
var noteWords = []string{"deliver", "to", "the", "back", "door", "Grüße", "aus", "Köln", "価格", "確認",
	"済み", "🚚", "📦", "gift", "wrap", "please", "call", "before", "arrival", "naïve", "café", "señor"}

// Workload is the seeded change mix. Every statement changes exactly the rows it
// names, so the number of row changes in the binlog is known in advance.
type Workload struct {
	Seed         uint64  `json:"seed"`
	RowChanges   int     `json:"row_changes"`
	Inserts      int     `json:"inserts"`
	Updates      int     `json:"updates"`
	Deletes      int     `json:"deletes"`
	BulkTxns     int     `json:"bulk_transactions"`
	SingleTxns   int     `json:"single_row_transactions"`
	GenSeconds   float64 `json:"generate_seconds"`
	BinlogFile   string  `json:"binlog_end_file"`
	BinlogPos    uint32  `json:"binlog_end_pos"`
	BinlogBytes  uint64  `json:"binlog_bytes"` // measured by the decode stage
	FirstBinlog  string  `json:"binlog_first_file"`
	LiveRowsLeft int     `json:"live_rows_left"`

	rng    *rand.Rand
	notes  []string
	nextID int64
	live   []int64
	buf    []byte
}

type opKind uint8

const (
	opInsert opKind = iota
	opUpdate
	opDelete
)

type plannedOp struct {
	bulk bool
	kind opKind
}

func newWorkload(seed uint64) *Workload {
	w := &Workload{Seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6b616e616c)), nextID: 1}
	for range 64 {
		n := 3 + w.rng.IntN(20)
		b := []byte{}
		for j := range n {
			if j > 0 {
				b = append(b, ' ')
			}
			b = append(b, noteWords[w.rng.IntN(len(noteWords))]...)
		}
		w.notes = append(w.notes, string(b))
	}
	return w
}

// plan lays out the operations: about bulkShare of rows in 1,000-row transactions
// (60% inserts, 30% updates, 10% deletes), the rest single-row (50/35/15), shuffled.
func (w *Workload) plan(rows int) []plannedOp {
	nBulk := int(float64(rows) * bulkShare / bulkSize)
	nSingle := rows - nBulk*bulkSize
	ops := make([]plannedOp, 0, nBulk+nSingle)
	for i := range nBulk {
		k := opInsert
		switch {
		case i%10 >= 9:
			k = opDelete
		case i%10 >= 6:
			k = opUpdate
		}
		ops = append(ops, plannedOp{bulk: true, kind: k})
	}
	for i := range nSingle {
		k := opInsert
		switch {
		case i%20 >= 17:
			k = opDelete
		case i%20 >= 10:
			k = opUpdate
		}
		ops = append(ops, plannedOp{kind: k})
	}
	w.rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

// Generate writes the workload through one connection (so binlog order is the
// plan's order) and returns when everything is committed.
func (w *Workload) Generate(ctx context.Context, db *sql.DB, rows int) error {
	began := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS bench", "DROP TABLE IF EXISTS bench.orders", ordersDDL} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var batch []byte
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		_, err := conn.ExecContext(ctx, string(batch))
		batch, pending = batch[:0], 0
		return err
	}
	for _, op := range w.plan(rows) {
		kind := op.kind
		need := 1
		if op.bulk {
			need = bulkSize
		}
		if kind != opInsert && len(w.live) < need {
			kind = opInsert // not enough rows yet
		}
		if op.bulk {
			if err := flush(); err != nil {
				return err
			}
			q := w.bulk(kind)
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("bulk statement: %w", err)
			}
			w.BulkTxns++
		} else {
			batch = append(w.single(batch, kind), ';')
			pending++
			w.SingleTxns++
			if pending >= singleBatch {
				if err := flush(); err != nil {
					return fmt.Errorf("single-row statements: %w", err)
				}
			}
		}
		w.RowChanges += need
		switch kind {
		case opInsert:
			w.Inserts += need
		case opUpdate:
			w.Updates += need
		case opDelete:
			w.Deletes += need
		}
	}
	if err := flush(); err != nil {
		return err
	}
	w.LiveRowsLeft = len(w.live)
	w.GenSeconds = time.Since(began).Seconds()
	return nil
}

func (w *Workload) appendRow(b []byte, id int64) []byte {
	b = append(b, '(')
	b = strconv.AppendInt(b, id, 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(w.rng.Uint32N(5_000_000)), 10)
	b = append(b, ",'SKU-"...)
	b = strconv.AppendInt(b, int64(w.rng.IntN(100000)), 10)
	b = append(b, "-größe',"...)
	b = append(b, '\'')
	b = append(b, statuses[w.rng.IntN(len(statuses))]...)
	b = append(b, "',"...)
	b = w.appendAmount(b)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(1+w.rng.IntN(20)), 10)
	b = append(b, ",'"...)
	b = appendDatetime(b, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id)*1237*time.Millisecond+time.Duration(w.rng.IntN(1e6))*time.Microsecond))
	b = append(b, "',"...)
	if w.rng.IntN(10) == 0 {
		b = append(b, "NULL"...)
	} else {
		b = append(b, '\'')
		b = append(b, w.notes[w.rng.IntN(len(w.notes))]...)
		b = append(b, '\'')
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, time.Now().UnixMicro(), 10)
	return append(b, ')')
}

func (w *Workload) appendAmount(b []byte) []byte {
	cents := w.rng.IntN(10_000_000)
	b = strconv.AppendInt(b, int64(cents/100), 10)
	b = append(b, '.')
	c := cents % 100
	b = append(b, byte('0'+c/10), byte('0'+c%10))
	return b
}

func appendDatetime(b []byte, t time.Time) []byte {
	return t.AppendFormat(b, "2006-01-02 15:04:05.000000")
}

const insertPrefix = "INSERT INTO bench.orders (id,customer_id,sku,status,amount,qty,created_at,note,stamp_us) VALUES "

// pickLive removes and returns n random live ids.
func (w *Workload) pickLive(n int, remove bool) []int64 {
	out := make([]int64, n)
	for i := range n {
		j := i + w.rng.IntN(len(w.live)-i)
		w.live[i], w.live[j] = w.live[j], w.live[i]
		out[i] = w.live[i]
	}
	if remove {
		w.live = w.live[n:]
	}
	return out
}

func (w *Workload) bulk(kind opKind) string {
	b := w.buf[:0]
	switch kind {
	case opInsert:
		b = append(b, insertPrefix...)
		for i := range bulkSize {
			if i > 0 {
				b = append(b, ',')
			}
			b = w.appendRow(b, w.nextID)
			w.live = append(w.live, w.nextID)
			w.nextID++
		}
	case opUpdate, opDelete:
		ids := w.pickLive(bulkSize, kind == opDelete)
		if kind == opUpdate {
			// qty changes on every row, so the server logs every row named.
			b = append(b, "UPDATE bench.orders SET qty=qty+1, status=ELT(1+(id+qty)%4,'new','paid','shipped','cancelled'), amount=amount+0.25, stamp_us="...)
			b = strconv.AppendInt(b, time.Now().UnixMicro(), 10)
		} else {
			b = append(b, "DELETE FROM bench.orders"...)
		}
		b = append(b, " WHERE id IN ("...)
		for i, id := range ids {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, ')')
	}
	w.buf = b
	return string(b)
}

func (w *Workload) single(b []byte, kind opKind) []byte {
	switch kind {
	case opInsert:
		b = append(b, insertPrefix...)
		b = w.appendRow(b, w.nextID)
		w.live = append(w.live, w.nextID)
		w.nextID++
	case opUpdate:
		id := w.pickLive(1, false)[0]
		b = append(b, "UPDATE bench.orders SET qty=qty+1, status='"...)
		b = append(b, statuses[w.rng.IntN(len(statuses))]...)
		b = append(b, "', amount="...)
		b = w.appendAmount(b)
		b = append(b, ", note='"...)
		b = append(b, w.notes[w.rng.IntN(len(w.notes))]...)
		b = append(b, "', stamp_us="...)
		b = strconv.AppendInt(b, time.Now().UnixMicro(), 10)
		b = append(b, " WHERE id="...)
		b = strconv.AppendInt(b, id, 10)
	case opDelete:
		id := w.pickLive(1, true)[0]
		b = append(b, "DELETE FROM bench.orders WHERE id="...)
		b = strconv.AppendInt(b, id, 10)
	}
	return b
}

// hsetFields returns the field/value pairs of one synthetic row for the Redis
// reference (same shape and sizes as the workload's rows).
func (w *Workload) hsetFields(id int64) []any {
	return []any{
		"id", id,
		"customer_id", w.rng.Uint32N(5_000_000),
		"sku", "SKU-" + strconv.Itoa(w.rng.IntN(100000)) + "-größe",
		"status", statuses[w.rng.IntN(len(statuses))],
		"amount", string(w.appendAmount(nil)),
		"qty", 1 + w.rng.IntN(20),
		"created_at", string(appendDatetime(nil, time.Unix(1.7e9+id, 0).UTC())),
		"note", w.notes[w.rng.IntN(len(w.notes))],
		"stamp_us", time.Now().UnixMicro(),
	}
}
