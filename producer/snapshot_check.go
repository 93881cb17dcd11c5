package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/schemas"
)

// ErrSnapshotRequest is wrapped by CheckSnapshotRequest's refusals.
var ErrSnapshotRequest = errors.New("snapshot request refused")

// CheckSnapshotRequest checks a backfill request against the source before it
// is sent, so that `kanal snapshot` can refuse at once what the producer would
// refuse later: names that are not captured by cfg's tables filter, tables that
// do not exist, tables without a primary key under no_primary_key: refuse, a
// WHERE the server rejects (the error names the table and the server's message),
// and tables with a backfill already queued or running in running (the stored
// state; nil when none). Names may be db.table patterns ("shop.*"): they expand
// to the captured tables they match. It returns the tables to request.
func CheckSnapshotRequest(ctx context.Context, cfg *Config, running *schemas.SnapshotState, tables []string, where string) ([]string, error) {
	f := captureFilter(cfg)
	db, err := openSQL(&cfg.Source)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := checkBackfillSupport(ctx, db, &cfg.Source); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotRequest, err)
	}
	all, err := capturedTables(ctx, db, f)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, name := range tables {
		dbName, tbl, ok := strings.Cut(name, ".")
		if !ok || dbName == "" || tbl == "" {
			return nil, fmt.Errorf("%w: %q is not a db.table name or pattern", ErrSnapshotRequest, name)
		}
		var matched []string
		if strings.ContainsAny(name, "*?[") {
			for _, t := range all {
				if m, _ := path.Match(name, t); m {
					matched = append(matched, t)
				}
			}
			if len(matched) == 0 {
				return nil, fmt.Errorf("%w: %q matches no captured table (tables.include %v, tables.exclude %v)", ErrSnapshotRequest, name, f.include, f.exclude)
			}
		} else {
			if !f.match(dbName, tbl) {
				return nil, fmt.Errorf("%w: %s is not captured by this producer (tables.include %v, tables.exclude %v)", ErrSnapshotRequest, name, f.include, f.exclude)
			}
			found := false
			for _, t := range all {
				found = found || t == name
			}
			if !found {
				return nil, fmt.Errorf("%w: %s: no such table on %s", ErrSnapshotRequest, name, cfg.Source.Addr)
			}
			matched = []string{name}
		}
		for _, t := range matched {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	for _, t := range out {
		if running != nil {
			for _, b := range running.Tables {
				if b.Table == t && b.Active() {
					return nil, fmt.Errorf("%w: a backfill of %s is already %s (request %s); wait for it or cancel it first (kanal snapshot cancel --tables %s)",
						ErrSnapshotRequest, t, b.State, b.ID, t)
				}
			}
		}
		dbName, tbl, _ := strings.Cut(t, ".")
		text := &sourceText{collations: charset.NewCollations(), mariadb: true, lookup: serverCollation(db, slog.New(slog.DiscardHandler))}
		st, err := loadSnapTable(ctx, db, text, dbName, tbl)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSnapshotRequest, err)
		}
		if st.ti.keyFallback && cfg.Source.NoPrimaryKey == "refuse" {
			return nil, fmt.Errorf("%w: %s has no primary key (source.no_primary_key is refuse: add a primary key, or set no_primary_key: all-columns)", ErrSnapshotRequest, t)
		}
		if where != "" {
			if _, err := db.ExecContext(ctx, "DO (SELECT 1 FROM "+quoteIdent(dbName)+"."+quoteIdent(tbl)+" WHERE ("+where+") LIMIT 0)"); err != nil {
				return nil, fmt.Errorf("%w: %s: --where %q: %w", ErrSnapshotRequest, t, where, err)
			}
		}
	}
	return out, nil
}

// MatchTables returns the tables of cfg's source that its tables filter
// captures and that match one of patterns ("db.table" globs), in name order.
func MatchTables(ctx context.Context, cfg *Config, patterns []string) ([]string, error) {
	db, err := openSQL(&cfg.Source)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	all, err := capturedTables(ctx, db, captureFilter(cfg))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range all {
		for _, p := range patterns {
			if m, _ := path.Match(p, t); m {
				out = append(out, t)
				break
			}
		}
	}
	return out, nil
}
