package consumer

import (
	"context"

	"github.com/kanal-cdc/kanal/schemas"
)

// Checker is implemented by handlers whose target keeps the source's rows or a
// per-row account of them (the Redis and SQL mirror sinks, the aggregators), so
// that `kanal verify` can compare the target with the source while the pipeline
// runs. Its methods only read the target.
type Checker interface {
	// CheckRows compares what the target holds for each of rows — rows of table
	// ("db.table") as a snapshot read delivers them: op r, Columns and After set —
	// and returns a Mismatch (kind MismatchMissing or MismatchDiffers) for each row
	// the target holds differently or not at all. A row the handler does not store
	// (a table or column it leaves out, a row its filter drops) matches when the
	// target holds nothing for it.
	CheckRows(ctx context.Context, table string, rows []*schemas.Change) ([]Mismatch, error)
	// CheckAbsent returns a Mismatch (kind MismatchExtra) for each of keys,
	// record keys of table that the source does not have, that the target still
	// holds a row for.
	CheckAbsent(ctx context.Context, table string, keys []string) ([]Mismatch, error)
	// TargetKeys calls fn with the record key of every row of table the target
	// holds (the order is the target's).
	TargetKeys(ctx context.Context, table string, fn func(key string) error) error
}

// GroupChecker is implemented by handlers that keep summaries of rows (the
// aggregators): CheckGroups compares each summary with the contributions the
// handler stores per source row, which Checker compares with the source.
type GroupChecker interface {
	// CheckGroups returns a Mismatch (kind MismatchGroup) for each summary row
	// that differs from the sum of its rows' stored contributions, read
	// consistently.
	CheckGroups(ctx context.Context) ([]Mismatch, error)
	// RepairGroups sets the given summary rows to the sum of their rows' stored
	// contributions, in one transaction that the handler's batches wait for (or
	// it waits for them). A group it cannot rebuild so (its summary row is gone)
	// loses its rows' stored contributions instead, and their record keys are
	// returned by source table: a keyed backfill of them counts them again.
	RepairGroups(ctx context.Context, groups []Mismatch) (map[string][]string, error)
}

// Mismatch kinds.
const (
	MismatchMissing = "missing" // the source has the row, the target does not
	MismatchDiffers = "differs" // the target holds the row with other values
	MismatchExtra   = "extra"   // the target holds a row the source does not have
	MismatchGroup   = "group"   // a summary row differs from its rows
)

// Mismatch is one difference between a target and the source.
type Mismatch struct {
	// Table is the source table ("db.table"); for a group, the summary table.
	Table string
	// Key is the row's record key; for a group, its group values as text.
	Key  string
	Kind string
	// Detail says what differs ("column amount: target 10.00"), for people.
	Detail string
	// Group identifies a summary row for RepairGroups (the handler's own id).
	Group []byte
}
