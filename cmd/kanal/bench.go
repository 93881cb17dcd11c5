package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/bench"
)

func benchCmd() *cobra.Command {
	var opts bench.Options
	var out string
	cmd := &cobra.Command{
		Use:   "bench [--quick] [--rows N] [--runs N] [--out DIR]",
		Short: "Measure the producer against go-mysql's decode limit, a naive baseline, latency and memory",
		Long: `bench starts a private MariaDB (and dev-kafka, Redis as needed), generates a seeded
workload and measures, on the same binlog and in one run: go-mysql's bare decode rate
(the limit), kanal produce's rate and its ratio to the limit, a hand-written canal +
ProduceSync baseline, consumer apply rates, end-to-end latency at a steady rate, and the
producer's peak RSS on one huge transaction. It prints a Markdown table and writes the
figures as JSON to --out. See docs/bench.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Rows < 0 || opts.Runs < 0 {
				return usageError{errors.New("--rows and --runs must not be negative")}
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			opts.KanalBin = bin
			opts.Log = os.Stderr
			rep, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if cmd.Context().Err() != nil {
				return cmd.Context().Err()
			}
			rep.Markdown(os.Stdout)
			path, err := rep.WriteJSON(out)
			if err != nil {
				return fmt.Errorf("write results: %w", err)
			}
			fmt.Fprintf(os.Stdout, "\nJSON: %s\n", path)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Quick, "quick", false, "100k rows, 10s latency run, 100k-row transaction (under two minutes)")
	f.IntVar(&opts.Rows, "rows", 0, "row changes in the workload (default 1000000; --quick 100000)")
	f.IntVar(&opts.Runs, "runs", 0, "rounds of the throughput stages (default 3)")
	f.IntVar(&opts.BigTxnRows, "big-txn-rows", 0, "rows of the single transaction of the RSS stage (default 1000000; --quick 100000)")
	f.DurationVar(&opts.LatencyDuration, "latency-duration", 0, "length of the steady-rate latency run (default 60s; --quick 10s)")
	f.Uint64Var(&opts.Seed, "seed", 0, "workload seed (default fixed)")
	f.StringVar(&out, "out", "bench/results", "directory for the JSON results")
	f.StringVar(&opts.CPUProfile, "cpuprofile", "", "write a CPU profile of one extra producer pass to this file")
	f.StringVar(&opts.MemProfile, "memprofile", "", "write the allocation profile of that pass to this file (and FILE.base from before it: go tool pprof -base FILE.base FILE)")
	return cmd
}
