package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/handlers"
)

func consumeCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "consume --config kanal.yaml",
		Short: "Run the built-in handlers named in the config's consumers section",
		Long: `consume runs each handler listed under consumers.handlers in its own consumer
group (kanal-<name> unless group is set): it reads the matching table topics with
read_committed, applies batches per partition in offset order and commits offsets
only after they are applied. Stop it with SIGINT/SIGTERM: in-flight batches finish,
offsets are committed and the groups are left.

Built-in handlers: stdout (prints each change as a JSON line), redis (docs/redis.md),
aggregate (summary tables, docs/aggregators.md), sqlmirror (row copies, docs/sqlmirror.md),
elasticsearch (docs/elasticsearch.md), rabbitmq (docs/rabbitmq.md), memcached
(docs/memcached.md).
Every setting: docs/config.md. A binary of your own can run these and its own
handlers from the same file: see the handlers package and examples/custom-handler.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := f.Log.Logger(os.Stderr)
			r, err := handlers.NewRunner(f.Consumers, f.Kafka.Config, handlers.Builtin(), handlers.Env{Log: log, Stdout: os.Stdout})
			if err != nil {
				return usageError{err}
			}
			defer r.Close()
			log.Info("kanal consume starting", "handlers", len(f.Consumers.Handlers), "metrics_addr", f.Consumers.MetricsAddr)
			return r.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	return cmd
}
