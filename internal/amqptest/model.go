package amqptest

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/schemas"
)

// Model is what a queue consumer builds from the messages with the documented
// dedupe: per key, a message whose kanal.seq is not above the last one applied
// is a duplicate and dropped. A truncate message (one per partition of the
// table's topic) is never deduped: each deletes the table's rows whose last
// kanal.seq is below its own.
type Model struct {
	// Rows are the live rows by record key, rendered like cdctest.RenderRow.
	Rows map[string]map[string]string
	// Applied counts, per change seq, the times it was applied (must be 1).
	Applied map[uint64]int
	// Truncates counts, per truncate seq, the truncate messages received.
	Truncates map[uint64]int
	// Received counts every message, duplicates included.
	Received int

	last map[string]uint64
	seen map[string]map[uint64]bool
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{Rows: map[string]map[string]string{}, last: map[string]uint64{},
		Applied: map[uint64]int{}, Truncates: map[uint64]int{}, seen: map[string]map[uint64]bool{}}
}

// Add applies messages in arrival order. A dropped message must be a duplicate
// of one applied before: otherwise a change of the key arrived after a newer one
// (per-key order broken) and dedupe would lose it, which fails the test.
func (m *Model) Add(t testing.TB, msgs []Message) {
	t.Helper()
	for _, msg := range msgs {
		m.Received++
		if msg.Op == string(schemas.OpTruncate) {
			// The table's rows older than the truncate are gone; rows of a
			// partition that is ahead are newer and stay. A row of a partition
			// that is behind may come back with an older change until that
			// partition's own truncate message arrives.
			m.Truncates[msg.Seq]++
			for k := range m.Rows {
				if strings.HasPrefix(k, msg.Key+":") && m.last[k] < msg.Seq {
					delete(m.Rows, k)
				}
			}
			continue
		}
		if m.seen[msg.Key] == nil {
			m.seen[msg.Key] = map[uint64]bool{}
		}
		if msg.Seq <= m.last[msg.Key] {
			if !m.seen[msg.Key][msg.Seq] && msg.Change != nil {
				t.Errorf("key %s: seq %d arrived after seq %d and was never applied: per-key order broken", msg.Key, msg.Seq, m.last[msg.Key])
			}
			continue
		}
		m.seen[msg.Key][msg.Seq] = true
		m.last[msg.Key] = msg.Seq
		if msg.Change == nil {
			delete(m.Rows, msg.Key)
			continue
		}
		m.Applied[msg.Seq]++
		switch msg.Change.Op {
		case schemas.OpDelete:
			delete(m.Rows, msg.Key)
		default:
			m.Rows[msg.Key] = cdctest.RenderRow(msg.Change.After)
		}
	}
}

// CheckExactlyOnce asserts that every change of recs (what Kafka holds) was
// received and, after the dedupe, applied exactly once, and nothing else was;
// and that each truncate record was received (at least once: truncate messages
// are not deduped).
func (m *Model) CheckExactlyOnce(t testing.TB, recs []cdctest.Record) {
	t.Helper()
	changes := 0
	truncates := map[uint64]int{} // per truncate seq: its records, one per partition
	for _, r := range recs {
		if r.Change == nil {
			continue
		}
		if r.Change.Op == schemas.OpTruncate {
			truncates[r.Change.Seq]++
			if m.Truncates[r.Change.Seq] < truncates[r.Change.Seq] {
				t.Fatalf("truncate seq %d (%s/%d offset %d): %d messages received, want one per partition at least",
					r.Change.Seq, r.Topic, r.Partition, r.Offset, m.Truncates[r.Change.Seq])
			}
			continue
		}
		changes++
		if n := m.Applied[r.Change.Seq]; n != 1 {
			t.Fatalf("change seq %d (%s, %s/%d offset %d) applied %d times after dedupe, want exactly once",
				r.Change.Seq, r.Key, r.Topic, r.Partition, r.Offset, n)
		}
	}
	if len(m.Applied) != changes {
		t.Errorf("%d changes applied, Kafka holds %d", len(m.Applied), changes)
	}
}

// CheckWorkloadTables asserts that the rows built from the queue equal the
// source's workload tables (cdctest.WorkloadTables).
func (m *Model) CheckWorkloadTables(t testing.TB, db *sql.DB) {
	t.Helper()
	for _, tc := range cdctest.WorkloadTables {
		want := cdctest.SourceRows(t, db, tc.Table, tc.Key, tc.Binary...)
		got := map[string]map[string]string{}
		for k, r := range m.Rows {
			if strings.HasPrefix(k, tc.Table+":") {
				got[k] = r
			}
		}
		if d := testdiff.Rows(want, got); d != "" {
			t.Errorf("%s as built from the queue differs from the source (%d rows vs %d):\n%s", tc.Table, len(got), len(want), d)
		}
	}
}
