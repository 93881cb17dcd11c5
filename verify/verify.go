// Package verify compares what a handler's target holds with the source, while
// the pipeline runs (`kanal verify`). It reads each table in chunks, in key
// order, the way backfills read it (producer.SourceReader: one consistent
// snapshot per chunk, rows exactly as snapshot reads carry them), and asks the
// handler (consumer.Checker) whether its target holds each row; then whether it
// holds rows the source does not have. Rows that differ are read and compared
// again after the handler has caught up with the source — a row changed while it
// was compared is not a difference — and what still differs after a few rounds
// is reported. Aggregators (consumer.GroupChecker) also compare every summary row
// with the contributions they store per row.
//
// Repair asks the producer for a backfill of exactly the keys that differ
// (their rows, or tombstones for keys the source no longer has, through the
// normal stream) and recomputes summary rows from their rows' contributions.
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/producer"
)

// Config says what to compare and how.
type Config struct {
	// Tables are the source tables ("db.table") to compare, in order.
	Tables []string
	// ChunkSize is the number of rows read and compared at a time.
	ChunkSize int
	// Rounds is how often rows that differ are compared again, each time after
	// the handler caught up with the source, before they are reported.
	Rounds int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{ChunkSize: 2000, Rounds: 5} }

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid verify configuration")

// Validate names the bad field.
func (c *Config) Validate() error {
	switch {
	case len(c.Tables) == 0:
		return fmt.Errorf("%w: no tables to verify", ErrConfig)
	case c.ChunkSize < 1:
		return fmt.Errorf("%w: chunk size must be positive", ErrConfig)
	case c.Rounds < 1:
		return fmt.Errorf("%w: rounds must be positive", ErrConfig)
	}
	return nil
}

// CatchUp waits until the handler has applied every change the source had
// written when it was called (see KafkaCatchUp).
type CatchUp func(ctx context.Context) error

// Progress is how far the comparison of one table got.
type Progress struct {
	Table string
	// Phase is "rows", "extra", "recheck", "groups" or "done".
	Phase string
	// Rows compared so far, of an estimated Total (-1 unknown).
	Rows, Total int64
	// Differ counts the rows that differ so far (before the re-checks).
	Differ  int
	Started time.Time
}

// Verifier compares one handler's target with the source.
type Verifier struct {
	cfg      Config
	src      *producer.SourceReader
	check    consumer.Checker
	groups   consumer.GroupChecker
	catchUp  CatchUp
	log      *slog.Logger
	progress func(Progress)
}

// New returns a Verifier. groups may be nil; progress, when not nil, is called
// as each table advances. A nil logger discards logs.
func New(cfg Config, src *producer.SourceReader, check consumer.Checker, groups consumer.GroupChecker, catchUp CatchUp,
	progress func(Progress), log *slog.Logger) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	return &Verifier{cfg: cfg, src: src, check: check, groups: groups, catchUp: catchUp, log: log, progress: progress}, nil
}

// Result is what differs.
type Result struct {
	Tables []TableResult
	// Groups are summary rows that differ from their rows (aggregators).
	Groups []consumer.Mismatch
}

// TableResult is what differs in one table.
type TableResult struct {
	Table string
	// Rows is the number of source rows compared.
	Rows int64
	// Mismatches are the rows that still differed after the re-checks.
	Mismatches []consumer.Mismatch
}

// Count returns the number of rows and groups that differ.
func (r *Result) Count() int {
	n := len(r.Groups)
	for _, t := range r.Tables {
		n += len(t.Mismatches)
	}
	return n
}

// Run compares every table and, for aggregators, every summary.
func (v *Verifier) Run(ctx context.Context) (*Result, error) {
	res := &Result{}
	for _, table := range v.cfg.Tables {
		tr, err := v.table(ctx, table)
		if err != nil {
			return nil, err
		}
		res.Tables = append(res.Tables, *tr)
	}
	if v.groups != nil {
		gs, err := v.checkGroups(ctx)
		if err != nil {
			return nil, err
		}
		res.Groups = gs
	}
	return res, nil
}

func (v *Verifier) table(ctx context.Context, table string) (*TableResult, error) {
	p := Progress{Table: table, Phase: "rows", Total: -1, Started: time.Now()}
	seen := map[string]struct{}{}
	pending := map[string]consumer.Mismatch{}
	var after *producer.SourceCursor
	for {
		chunk, err := v.src.Chunk(ctx, table, after, v.cfg.ChunkSize)
		if err != nil {
			return nil, fmt.Errorf("verify %s: read the source: %w", table, err)
		}
		if after == nil {
			p.Total = chunk.Estimate
		}
		for _, c := range chunk.Rows {
			seen[c.Key()] = struct{}{}
		}
		ms, err := v.check.CheckRows(ctx, table, chunk.Rows)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", table, err)
		}
		for _, m := range ms {
			pending[m.Key] = m
		}
		p.Rows += int64(len(chunk.Rows))
		p.Differ = len(pending)
		v.progress(p)
		if !chunk.More {
			break
		}
		after = chunk.Next
	}
	// Rows the target has and the source does not.
	p.Phase = "extra"
	v.progress(p)
	var extra []string
	err := v.check.TargetKeys(ctx, table, func(key string) error {
		if _, ok := seen[key]; !ok {
			extra = append(extra, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", table, err)
	}
	for start := 0; start < len(extra); start += v.cfg.ChunkSize {
		ms, err := v.check.CheckAbsent(ctx, table, extra[start:min(len(extra), start+v.cfg.ChunkSize)])
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", table, err)
		}
		for _, m := range ms {
			pending[m.Key] = m
		}
	}
	p.Differ = len(pending)
	p.Phase = "recheck"
	v.progress(p)
	rows := p.Rows
	final, err := v.recheck(ctx, table, pending)
	if err != nil {
		return nil, err
	}
	p.Phase, p.Differ = "done", len(final)
	v.progress(p)
	return &TableResult{Table: table, Rows: rows, Mismatches: final}, nil
}

// recheck compares the pending keys again after each catch-up, until none
// differs or the rounds are used up.
func (v *Verifier) recheck(ctx context.Context, table string, pending map[string]consumer.Mismatch) ([]consumer.Mismatch, error) {
	for round := 0; round < v.cfg.Rounds && len(pending) > 0; round++ {
		if err := v.catchUp(ctx); err != nil {
			return nil, fmt.Errorf("verify %s: wait for the handler to catch up: %w", table, err)
		}
		keys := make([]string, 0, len(pending))
		for k := range pending {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		ms, err := v.compareKeys(ctx, table, keys)
		if err != nil {
			return nil, err
		}
		v.log.Debug("verify: re-checked", "table", table, "round", round+1, "keys", len(keys), "still_differ", len(ms))
		pending = map[string]consumer.Mismatch{}
		for _, m := range ms {
			pending[m.Key] = m
		}
	}
	out := make([]consumer.Mismatch, 0, len(pending))
	for _, m := range pending {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// compareKeys reads the rows of keys at one snapshot and compares them.
func (v *Verifier) compareKeys(ctx context.Context, table string, keys []string) ([]consumer.Mismatch, error) {
	chunk, err := v.src.Keys(ctx, table, keys)
	if err != nil {
		return nil, fmt.Errorf("verify %s: read the source: %w", table, err)
	}
	ms, err := v.check.CheckRows(ctx, table, chunk.Rows)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", table, err)
	}
	if len(chunk.Missing) > 0 {
		extra, err := v.check.CheckAbsent(ctx, table, chunk.Missing)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", table, err)
		}
		ms = append(ms, extra...)
	}
	return ms, nil
}

// checkGroups compares the summaries after the handler caught up (summary and
// state rows are written in one transaction per batch, so one consistent read
// of both is exact; the catch-up only keeps new groups out of the way).
func (v *Verifier) checkGroups(ctx context.Context) ([]consumer.Mismatch, error) {
	v.progress(Progress{Table: "summaries", Phase: "groups", Total: -1, Started: time.Now()})
	if err := v.catchUp(ctx); err != nil {
		return nil, fmt.Errorf("verify: wait for the handler to catch up: %w", err)
	}
	gs, err := v.groups.CheckGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	v.progress(Progress{Table: "summaries", Phase: "done", Total: -1, Differ: len(gs)})
	return gs, nil
}

// Backfill asks the producer to backfill exactly keys of table (the rows the
// source has, tombstones for those it does not) and returns the request's id.
type Backfill func(ctx context.Context, table string, keys []string) (id string, err error)

// WaitBackfills waits until the backfill requests ids have ended, failing when
// one did not end as done.
type WaitBackfills func(ctx context.Context, ids []string) error

// Repair makes the target equal to the source where res says it differs:
// summary rows are recomputed from their rows' stored contributions (or, when
// gone, rebuilt by a backfill of their rows), and every row that differs is
// backfilled by key. It then waits for the backfills, lets the handler catch
// up, and compares those rows and summaries again.
func (v *Verifier) Repair(ctx context.Context, res *Result, backfill Backfill, wait WaitBackfills) (*Result, error) {
	keys := map[string][]string{}
	for _, t := range res.Tables {
		for _, m := range t.Mismatches {
			keys[t.Table] = append(keys[t.Table], m.Key)
		}
	}
	if len(res.Groups) > 0 {
		if v.groups == nil {
			return nil, errors.New("verify: group differences but the handler keeps no summaries")
		}
		more, err := v.groups.RepairGroups(ctx, res.Groups)
		if err != nil {
			return nil, fmt.Errorf("verify: repair summaries: %w", err)
		}
		for t, ks := range more {
			keys[t] = append(keys[t], ks...)
		}
	}
	var ids []string
	for _, table := range v.cfg.Tables {
		ks := uniq(keys[table])
		for start := 0; start < len(ks); start += producer.MaxSignalKeys {
			id, err := backfill(ctx, table, ks[start:min(len(ks), start+producer.MaxSignalKeys)])
			if err != nil {
				return nil, fmt.Errorf("verify: ask for a backfill of %d keys of %s: %w", len(ks), table, err)
			}
			ids = append(ids, id)
			v.log.Info("verify: repair backfill requested", "table", table, "keys", len(ks), "id", id)
		}
	}
	if len(ids) > 0 {
		if err := wait(ctx, ids); err != nil {
			return nil, err
		}
	}
	out := &Result{}
	for _, t := range res.Tables {
		pending := map[string]consumer.Mismatch{}
		for _, k := range uniq(keys[t.Table]) {
			pending[k] = consumer.Mismatch{Table: t.Table, Key: k}
		}
		ms, err := v.recheck(ctx, t.Table, pending)
		if err != nil {
			return nil, err
		}
		out.Tables = append(out.Tables, TableResult{Table: t.Table, Rows: int64(len(keys[t.Table])), Mismatches: ms})
	}
	if v.groups != nil && len(res.Groups) > 0 {
		gs, err := v.checkGroups(ctx)
		if err != nil {
			return nil, err
		}
		out.Groups = gs
	}
	return out, nil
}

func uniq(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
