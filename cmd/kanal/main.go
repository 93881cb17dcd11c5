// Command kanal turns a MySQL/MariaDB binlog into Kafka records and runs handlers
// over them. It is the only place that reads flags, environment variables and
// signals; everything else is wired from here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kanal:", err)
		os.Exit(exitCode(err))
	}
}

// rootCmd is the command tree: every subcommand (the tests walk it, so that
// each one's --help is checked).
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kanal",
		Short:         "MySQL/MariaDB binlog → Kafka, exactly once; Go handlers in consumer groups",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(produceCmd(), tailCmd(), devKafkaCmd(), positionsCmd(), consumeCmd(), offsetsCmd(), configCmd(), dlqCmd(), topicsCmd(), statusCmd(), snapshotCmd(), verifyCmd())
	return root
}

// exitCode distinguishes configuration mistakes (2) from runtime failures (1)
// and from kanal verify's differences (3).
func exitCode(err error) int {
	var usage usageError
	if errors.As(err, &usage) {
		return 2
	}
	var diff differencesError
	if errors.As(err, &diff) {
		return 3
	}
	return 1
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// loadConfig reads the YAML file, expanding ${VAR} from the environment.
func loadConfig(path string) (*config.File, error) {
	if path == "" {
		return nil, usageError{errors.New("--config is required")}
	}
	f, err := config.Load(path, os.LookupEnv)
	if err != nil {
		return nil, usageError{err}
	}
	return f, nil
}
