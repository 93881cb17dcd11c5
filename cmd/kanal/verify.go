package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/verify"
)

// differencesError is returned when a target still differs from the source
// (exit code 3).
type differencesError struct{ n int }

func (e differencesError) Error() string {
	return fmt.Sprintf("%d rows or summary rows differ from the source", e.n)
}

func verifyCmd() *cobra.Command {
	var (
		cfgPath, handlerName string
		tables               []string
		repair               bool
		chunk, rounds, show  int
		catchUpLimit         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify --config kanal.yaml --handler NAME [--tables db.table,…] [--repair]",
		Short: "Compare a built-in handler's target with the source while the pipeline runs; --repair fixes what differs",
		Long: `verify reads the source tables of the handler NAME (consumers.handlers) in chunks, each
at one consistent snapshot, and compares every row with what the handler's target holds:
a Redis copy (redis), a mirrored table (sqlmirror, Postgres or MySQL), or the per-row
contributions and summary rows of an aggregate handler. It also finds rows the target
holds that the source does not have. Rows that differ are compared again after the
handler has caught up with the source (a row changed while it was compared is not a
difference), up to --rounds times; what still differs is printed with the reason.

With --repair it asks the running producer (through <prefix>._signals) for a backfill of
exactly the keys that differ — the rows the source has, tombstones for the keys it does
not — which reach the target through the normal stream, recomputes summary rows from
their rows' stored contributions, waits, and compares those rows again.

Exit codes: 0 nothing differs (or everything was repaired), 3 differences remain,
1 runtime failure, 2 configuration or usage error.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if handlerName == "" {
				return usageError{errors.New("--handler is required (the name of a consumers.handlers entry)")}
			}
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := f.Log.Logger(os.Stderr)
			h, spec, err := handlers.Builtin().BuildNamed(&f.Consumers, handlerName, handlers.Env{Log: log, Stdout: io.Discard})
			if err != nil {
				return usageError{err}
			}
			defer handlers.Close(h)
			check, ok := h.(consumer.Checker)
			if !ok {
				return usageError{fmt.Errorf("handler %s (type %s) keeps no state kanal verify can read: it compares redis, sqlmirror and aggregate targets", spec.Name, spec.Handler)}
			}
			groups, _ := h.(consumer.GroupChecker)
			mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			all, err := producer.MatchTables(mctx, &f.Config, spec.Tables)
			cancel()
			if err != nil {
				return err
			}
			var chosen []string
			for _, t := range all {
				if len(tables) == 0 || matchAny(tables, t) {
					chosen = append(chosen, t)
				}
			}
			if len(chosen) == 0 {
				return usageError{fmt.Errorf("no captured source table matches handler %s's tables %v and --tables %v", spec.Name, spec.Tables, tables)}
			}
			src, err := producer.NewSourceReader(f.Config, log)
			if err != nil {
				return usageError{err}
			}
			defer src.Close()
			topics := make([]string, len(chosen))
			for i, t := range chosen {
				db, tbl, _ := cutTable(t)
				topics[i] = schemas.TopicName(f.Kafka.TopicPrefix, db, tbl)
			}
			store, _ := h.(consumer.OffsetStore)
			catchUp := verify.KafkaCatchUp(src, &f.Kafka.Config, f.Source.Name, spec.GroupName(), topics, store, 200*time.Millisecond, catchUpLimit)
			cfg := verify.DefaultConfig()
			cfg.Tables = chosen
			if chunk > 0 {
				cfg.ChunkSize = chunk
			}
			if rounds > 0 {
				cfg.Rounds = rounds
			}
			view := newProgressView(os.Stderr, 5*time.Second)
			var mu sync.Mutex
			items := map[string]progressItem{}
			progress := func(p verify.Progress) {
				mu.Lock()
				defer mu.Unlock()
				it := progressItem{name: p.Table, state: p.Phase, done: p.Rows, total: p.Total, note: fmt.Sprintf("%d differ so far", p.Differ)}
				if p.Phase == "done" {
					it.state, it.total = "compared", p.Rows
					it.note = fmt.Sprintf("%d differ", p.Differ)
				} else {
					it.state = "running"
					if el := time.Since(p.Started).Seconds(); el > 0 {
						it.rate = float64(p.Rows) / el
						if p.Total > p.Rows && it.rate > 0 {
							it.eta = time.Duration(float64(p.Total-p.Rows) / it.rate * float64(time.Second))
						}
					}
					it.note = p.Phase + ", " + it.note
				}
				items[p.Table] = it
				list := make([]progressItem, 0, len(items))
				for _, it := range items {
					list = append(list, it)
				}
				sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
				view.update(list)
			}
			v, err := verify.New(cfg, src, check, groups, catchUp, progress, log)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(os.Stderr, "verifying handler %s (%s) against source %s: %d tables\n", spec.Name, spec.Handler, f.Source.Name, len(chosen))
			res, err := v.Run(ctx)
			view.close()
			if err != nil {
				return err
			}
			printResult(os.Stdout, res, show)
			if res.Count() == 0 || !repair {
				if res.Count() > 0 {
					return differencesError{res.Count()}
				}
				return nil
			}
			backfill := func(ctx context.Context, table string, keys []string) (string, error) {
				sig := schemas.Signal{ID: newRequestID("repair"), Source: f.Source.Name, Action: schemas.SignalSnapshot,
					Tables: []string{table}, Keys: keys, By: requester("kanal verify --repair")}
				if err := producer.SendSignal(ctx, &f.Kafka.Config, sig); err != nil {
					return "", err
				}
				fmt.Fprintf(os.Stderr, "repair: asked for a backfill of %d keys of %s (request %s)\n", len(keys), table, sig.ID)
				return sig.ID, nil
			}
			wait := func(ctx context.Context, ids []string) error {
				for _, id := range ids {
					if err := followBackfills(ctx, f, id, nil, 0, os.Stderr); err != nil {
						return err
					}
				}
				return nil
			}
			after, err := v.Repair(ctx, res, backfill, wait)
			if err != nil {
				return err
			}
			fmt.Fprintln(os.Stdout, "after the repair:")
			printResult(os.Stdout, after, show)
			if n := after.Count(); n > 0 {
				return differencesError{n}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	cmd.Flags().StringVar(&handlerName, "handler", "", "name of the consumers.handlers entry whose target to compare")
	cmd.Flags().StringSliceVar(&tables, "tables", nil, "only these of the handler's tables (db.table names or patterns)")
	cmd.Flags().BoolVar(&repair, "repair", false, "backfill the rows that differ (and recompute summary rows), then compare them again")
	cmd.Flags().IntVar(&chunk, "chunk-size", 0, "rows read and compared at a time (default 2000)")
	cmd.Flags().IntVar(&rounds, "rounds", 0, "how often differing rows are compared again after the handler caught up (default 5)")
	cmd.Flags().IntVar(&show, "show", 100, "print at most this many differing rows per table")
	cmd.Flags().DurationVar(&catchUpLimit, "catch-up-timeout", 2*time.Minute, "how long to wait for the producer and the handler to catch up before a re-check")
	return cmd
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if m, _ := path.Match(p, name); m {
			return true
		}
	}
	return false
}

func cutTable(t string) (db, table string, ok bool) {
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			return t[:i], t[i+1:], true
		}
	}
	return "", t, false
}

// printResult prints what differs, per table and summary.
func printResult(w io.Writer, res *verify.Result, show int) {
	for _, t := range res.Tables {
		fmt.Fprintf(w, "%s: %d rows compared, %d differ\n", t.Table, t.Rows, len(t.Mismatches))
		for i, m := range t.Mismatches {
			if i == show {
				fmt.Fprintf(w, "  … %d more\n", len(t.Mismatches)-show)
				break
			}
			fmt.Fprintf(w, "  %-8s %s  %s\n", m.Kind, m.Key, m.Detail)
		}
	}
	byTable := map[string][]consumer.Mismatch{}
	var names []string
	for _, g := range res.Groups {
		if byTable[g.Table] == nil {
			names = append(names, g.Table)
		}
		byTable[g.Table] = append(byTable[g.Table], g)
	}
	for _, n := range names {
		fmt.Fprintf(w, "%s (summary): %d rows differ from their source rows\n", n, len(byTable[n]))
		for i, g := range byTable[n] {
			if i == show {
				fmt.Fprintf(w, "  … %d more\n", len(byTable[n])-show)
				break
			}
			fmt.Fprintf(w, "  %-8s %s  %s\n", g.Kind, g.Key, g.Detail)
		}
	}
	rows := res.Count() - len(res.Groups)
	switch {
	case res.Count() == 0:
		fmt.Fprintln(w, "OK: the target equals the source")
	default:
		fmt.Fprintf(w, "%d rows and %d summary rows differ\n", rows, len(res.Groups))
	}
}
