package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

func snapshotCmd() *cobra.Command {
	var (
		cfgPath, where string
		tables         []string
		chunkSize      int
		wait           bool
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "snapshot --config kanal.yaml --tables db.table[,…] [--where SQL] [--chunk-size N] [--wait]",
		Short: "Ask the running producer to backfill tables: their existing rows become reads (op r) in the stream",
		Long: `snapshot asks the running kanal produce of the config's source to backfill the
given tables (db.table names or patterns such as 'shop.*'): it reads them in chunks in
key order, without locks, while it keeps streaming, and writes each existing row once
as a read (op "r"; canal-json type INSERT) in the table's topic, ordered correctly
against the live changes (docs/snapshots.md). The request travels through the topic
<prefix>._signals, so this command needs Kafka and, to check the request, the source
database; not the producer's host.

It is refused at once (exit 2) for tables the producer does not capture, tables without
a primary key under no_primary_key: refuse, a --where the server rejects, and tables
that already have a backfill queued or running. With --wait it shows the progress until
the backfills end and exits 1 if one failed.

  kanal snapshot status --config kanal.yaml [--watch]    progress of every backfill
  kanal snapshot cancel --config kanal.yaml [--tables T] stop backfills (all by default)`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(tables) == 0 {
				return usageError{errors.New("--tables is required (db.table names or patterns, comma-separated)")}
			}
			if chunkSize < 0 {
				return usageError{errors.New("--chunk-size must be positive")}
			}
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pos, err := readPosition(ctx, f)
			if err != nil {
				return err
			}
			var state *schemas.SnapshotState
			if pos != nil {
				state = pos.Snapshot
			}
			checkCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			checked, err := producer.CheckSnapshotRequest(checkCtx, &f.Config, state, tables, where)
			cancel()
			switch {
			case errors.Is(err, producer.ErrSnapshotRequest):
				return usageError{err}
			case err != nil:
				for _, t := range tables {
					if strings.ContainsAny(t, "*?[") {
						return fmt.Errorf("cannot reach the source to expand %q: %w", t, err)
					}
				}
				fmt.Fprintf(os.Stderr, "kanal: cannot reach the source to check the request (%v); sending it unchecked: the producer checks it\n", err)
				checked = tables
			}
			sig := schemas.Signal{ID: newRequestID("snap"), Source: f.Source.Name, Action: schemas.SignalSnapshot,
				Tables: checked, Where: where, ChunkSize: chunkSize, By: requester("kanal snapshot")}
			if err := producer.SendSignal(ctx, &f.Kafka.Config, sig); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "requested a backfill of %s (request %s); the producer of source %s reads it from %s\n",
				strings.Join(checked, ", "), sig.ID, f.Source.Name, schemas.SignalsTopic(f.Kafka.TopicPrefix))
			if !wait {
				return nil
			}
			return followBackfills(ctx, f, sig.ID, checked, timeout, os.Stderr)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	cmd.Flags().StringSliceVar(&tables, "tables", nil, "tables to backfill: db.table names or patterns, comma-separated")
	cmd.Flags().StringVar(&where, "where", "", "SQL condition the backfilled rows must meet, e.g. \"created_at >= '2026-01-01'\"")
	cmd.Flags().IntVar(&chunkSize, "chunk-size", 0, "rows per chunk (default: source.snapshot_chunk_size)")
	cmd.Flags().BoolVar(&wait, "wait", false, "show the progress until the backfills end; exit 1 if one failed")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long (0: no limit)")
	cmd.AddCommand(snapshotStatusCmd(), snapshotCancelCmd())
	return cmd
}

func snapshotStatusCmd() *cobra.Command {
	var cfgPath string
	var watch bool
	cmd := &cobra.Command{
		Use:   "status --config kanal.yaml [--watch]",
		Short: "Show the progress of the source's backfills (from its committed position)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if watch {
				return followBackfills(ctx, f, "", nil, 0, os.Stdout)
			}
			items, err := backfillItems(ctx, f, "")
			if err != nil {
				return err
			}
			if len(items) == 0 {
				fmt.Printf("source %s: no backfill was ever requested\n", f.Source.Name)
				return nil
			}
			for _, it := range items {
				fmt.Println(it.line())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	cmd.Flags().BoolVar(&watch, "watch", false, "keep showing the progress until no backfill is queued or running")
	return cmd
}

func snapshotCancelCmd() *cobra.Command {
	var cfgPath string
	var tables []string
	cmd := &cobra.Command{
		Use:   "cancel --config kanal.yaml [--tables db.table,…]",
		Short: "Cancel queued and running backfills (all of them without --tables)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			sig := schemas.Signal{ID: newRequestID("cancel"), Source: f.Source.Name, Action: schemas.SignalCancel,
				Tables: tables, By: requester("kanal snapshot cancel")}
			if err := producer.SendSignal(cmd.Context(), &f.Kafka.Config, sig); err != nil {
				return err
			}
			what := "every backfill"
			if len(tables) > 0 {
				what = "the backfills of " + strings.Join(tables, ", ")
			}
			fmt.Fprintf(os.Stderr, "requested to cancel %s (request %s)\n", what, sig.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	cmd.Flags().StringSliceVar(&tables, "tables", nil, "tables whose backfills to cancel (default: all)")
	return cmd
}

func readPosition(ctx context.Context, f *config.File) (*schemas.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return producer.ReadPosition(ctx, &f.Kafka.Config, f.Source.Name)
}

func newRequestID(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return kind + "-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

func requester(tool string) string {
	who := tool
	if u, err := user.Current(); err == nil {
		who += " by " + u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += "@" + h
	}
	return who
}

// backfillItems returns the source's backfills as progress items: the requests
// the producer has not read yet, the queued and running ones, then the finished
// ones (only request id's when id is set).
func backfillItems(ctx context.Context, f *config.File, id string) ([]progressItem, error) {
	pos, err := readPosition(ctx, f)
	if err != nil {
		return nil, err
	}
	var st schemas.SnapshotState
	from := int64(-1)
	if pos != nil && pos.Snapshot != nil {
		st = *pos.Snapshot
		from = st.SignalsOffset
	}
	var items []progressItem
	if pos == nil && f.Source.Start == "snapshot" && id == "" {
		// The producer queues the initial backfills when it starts and commits
		// them with its first position; until then only the configuration says
		// they are coming (a watcher started next to the producer must wait).
		items = append(items, progressItem{name: initialPending, state: "requested", total: -1,
			note: "source.start: snapshot; no position committed yet: waiting for the producer"})
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pending, err := producer.PendingSignals(pctx, &f.Kafka.Config, f.Source.Name, from)
	cancel()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, sig := range pending {
		if sig.Action != schemas.SignalSnapshot || id != "" && sig.ID != id {
			continue
		}
		for _, t := range sig.Tables {
			items = append(items, progressItem{name: t, state: "requested", total: -1, note: "request " + sig.ID + ", not yet read by the producer"})
		}
	}
	for _, list := range [][]schemas.Backfill{st.Tables, st.Finished} {
		for i := range list {
			b := &list[i]
			if id != "" && b.ID != id {
				continue
			}
			rate, eta := b.Progress(now)
			it := progressItem{name: b.Table, state: b.State, done: int64(b.Rows), total: b.Total, rate: rate, eta: eta}
			if b.State == schemas.BackfillDone {
				it.total = int64(b.Rows)
			}
			var notes []string
			if b.Where != "" {
				notes = append(notes, "where "+b.Where)
			}
			if len(b.Keys) > 0 || b.KeysDone > 0 {
				notes = append(notes, fmt.Sprintf("%d keys", max(len(b.Keys), b.KeysDone)))
			}
			if b.Skipped > 0 {
				notes = append(notes, fmt.Sprintf("%d rows left to their live changes", b.Skipped))
			}
			if b.Restarts > 0 {
				notes = append(notes, fmt.Sprintf("restarted %d× (%s)", b.Restarts, b.Note))
			}
			if b.Error != "" {
				notes = append(notes, b.Error)
			}
			notes = append(notes, "request "+b.ID)
			it.note = strings.Join(notes, "; ")
			items = append(items, it)
		}
	}
	return items, nil
}

// initialPending names the initial snapshot before the producer committed its
// first position (and with it the tables it backfills).
const initialPending = "(initial)"

// followBackfills shows the progress of request id's backfills of tables (of
// every backfill when id is empty) until none is requested, queued or running.
// It fails when one of request id's backfills did not finish as done.
func followBackfills(ctx context.Context, f *config.File, id string, tables []string, timeout time.Duration, out *os.File) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	view := newProgressView(out, 5*time.Second)
	defer view.close()
	for {
		items, err := backfillItems(ctx, f, id)
		if err != nil {
			return err
		}
		if id != "" {
			// Tables the producer has not reported on yet.
			seen := map[string]bool{}
			for _, it := range items {
				seen[it.name] = true
			}
			for _, t := range tables {
				if !seen[t] {
					items = append(items, progressItem{name: t, state: "requested", total: -1, note: "not yet read by the producer"})
				}
			}
		}
		sort.SliceStable(items, func(i, j int) bool { return items[i].name < items[j].name })
		view.update(items)
		active := false
		var failed []string
		for _, it := range items {
			if !it.finished() {
				active = true
			} else if it.state != schemas.BackfillDone {
				failed = append(failed, it.name+" "+it.state+": "+it.note)
			}
		}
		if !active {
			if id != "" && len(failed) > 0 {
				return fmt.Errorf("backfill not done: %s", strings.Join(failed, "; "))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("backfills still running after %v", timeout)
			}
			return nil
		case <-time.After(time.Second):
		}
	}
}
