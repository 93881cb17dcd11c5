package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/producer"
)

// produceGCPercent is the producer's GOGC unless the environment sets one. Its
// record memory is reused, not allocated, so the heap is mostly live and
// collections are rare: at 50 the heap grows to 1.5 × the live heap rather than
// 2 ×, which kept peak RSS under 80 MiB on the narrow-row bench (docs/bench.md,
// round 6e) for a few more collections.
const produceGCPercent = 50

func produceCmd() *cobra.Command {
	var cfgPath, cpuProfile string
	cmd := &cobra.Command{
		Use:   "produce --config kanal.yaml",
		Short: "Read the source's binlog and write every row change to Kafka, exactly once",
		Long: `produce connects to MySQL/MariaDB as a replica and writes each row change to
the topic <prefix>.<db>.<table>, committing changes and the source position in one
Kafka transaction. Stop it with SIGINT/SIGTERM: it commits what it has and exits.
After a crash it resumes right after the last committed position.

Several processes with the same source.name may run (ha.enabled, the default):
one is active, the others stand by in the Kafka consumer group
kanal-producer-<source> and take over within ha.session_timeout when it dies,
at once when it stops. admin.listen serves /metrics, /healthz and /readyz.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, set := os.LookupEnv("GOGC"); !set {
				debug.SetGCPercent(produceGCPercent)
			}
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := f.Log.Logger(os.Stderr)
			p, err := producer.New(f.Config, log)
			if err != nil {
				return usageError{err}
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return usageError{fmt.Errorf("--cpuprofile: %w", err)}
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			log.Info("kanal produce starting", "config", f.Config)
			l, err := producer.NewLeader(p)
			if err != nil {
				return err
			}
			return l.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	// For profiling (see docs/bench.md); the profile is written when produce stops.
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	return cmd
}
