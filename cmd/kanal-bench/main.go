// Command kanal-bench is kanal's benchmark (`make bench`, docs/bench.md). It is a
// command of its own, not a subcommand of kanal, because it starts its private
// servers through internal/testenv: the shipped kanal binary links no test code.
// It runs the kanal binary (--kanal) as `dev-kafka` and `produce`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCmd(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kanal-bench:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode distinguishes usage mistakes (2) from failed runs (1), as kanal does.
func exitCode(err error) int {
	var usage usageError
	if errors.As(err, &usage) {
		return 2
	}
	return 1
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func newCmd(stdout, stderr io.Writer) *cobra.Command {
	var opts bench.Options
	var out, kanal string
	cmd := &cobra.Command{
		Use:   "kanal-bench [--quick] [--rows N] [--runs N] [--stages LIST] [--out DIR] [--kanal PATH]",
		Short: "Measure the producer against go-mysql's decode limit, a naive baseline, latency and memory",
		Long: `kanal-bench starts a private MariaDB (and dev-kafka, Redis as needed), generates a seeded
workload and measures, on the same binlog and in one run: go-mysql's bare decode rate
(the limit), kanal produce's rate and its ratio to the limit, a hand-written canal +
ProduceSync baseline, consumer apply rates, end-to-end latency at a steady rate, and the
producer's peak RSS on one huge transaction. It prints a Markdown table and writes the
figures as JSON to --out. See docs/bench.md.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Rows < 0 || opts.Runs < 0 {
				return usageError{errors.New("--rows and --runs must not be negative")}
			}
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			bin, err := kanalBinary(kanal)
			if err != nil {
				return usageError{err}
			}
			opts.KanalBin = bin
			opts.Log = stderr
			rep, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if cmd.Context().Err() != nil {
				return cmd.Context().Err()
			}
			rep.Markdown(stdout)
			path, err := rep.WriteJSON(out)
			if err != nil {
				return fmt.Errorf("write results: %w", err)
			}
			fmt.Fprintf(stdout, "\nJSON: %s\n", path)
			return nil
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	f := cmd.Flags()
	f.BoolVar(&opts.Quick, "quick", false, "100k rows, 10s latency run, 100k-row transaction (under two minutes)")
	f.IntVar(&opts.Rows, "rows", 0, "row changes in the workload (default 1000000; --quick 100000)")
	f.IntVar(&opts.Runs, "runs", 0, "rounds of the measured stages (default 5; the naive baseline runs in the first three)")
	f.IntVar(&opts.BigTxnRows, "big-txn-rows", 0, "rows of the single transaction of the RSS stage (default 1000000; --quick 100000)")
	f.IntVar(&opts.SnapshotRows, "snapshot-rows", 0, "rows of the table the backfill stage reads (default 1000000; --quick 100000)")
	f.DurationVar(&opts.LatencyDuration, "latency-duration", 0, "length of the steady-rate latency run (default 60s; --quick 10s)")
	f.Uint64Var(&opts.Seed, "seed", 0, "workload seed (default fixed)")
	f.StringVar(&out, "out", "bench/results", "directory for the JSON results")
	f.StringVar(&kanal, "kanal", "", "the kanal binary to measure (default: kanal next to this binary, else on PATH)")
	f.StringSliceVar(&opts.Stages, "stages", nil, "run only these stages, comma-separated: "+strings.Join(bench.StageIDs(), ",")+
		" (default all; apply: every apply stage, 4r…: one; without throughput the apply stages get their topic from one unmeasured producer pass)")
	f.StringVar(&opts.ProfileStage, "profile-stage", "", "the stage --cpuprofile/--memprofile repeat: an apply stage's ID (default: the producer)")
	f.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile of one extra pass of --profile-stage to this file")
	f.StringVar(&opts.MemProfile, "memprofile", "", "write the allocation profile of that pass to this file (and FILE.base from before it: go tool pprof -base FILE.base FILE)")
	return cmd
}

// kanalBinary resolves --kanal. Its default is the kanal next to this binary,
// which is where `make bench` builds both (bin/), so the measured kanal is the
// one built from the same tree.
func kanalBinary(flag string) (string, error) {
	if flag == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "kanal"); isExecutable(p) {
				return p, nil
			}
		}
		flag = "kanal"
	}
	p, err := exec.LookPath(flag)
	if err != nil {
		return "", fmt.Errorf("--kanal: %w (build it with `make build` and pass --kanal bin/kanal)", err)
	}
	return filepath.Abs(p)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
