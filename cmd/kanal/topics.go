package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/producer"
)

func topicsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "Check or change the settings of existing table topics"}
	var cfgPath, tables string
	var dryRun bool
	run := func(cmd *cobra.Command, alter bool) error {
		if cfgPath == "" {
			return usageError{errors.New("--config is required (its kafka section has the wanted settings)")}
		}
		f, err := loadConfig(cfgPath)
		if err != nil {
			return err
		}
		var re *regexp.Regexp
		if tables != "" {
			pat, err := consumer.TopicPattern(f.Kafka.TopicPrefix, strings.Split(tables, ","))
			if err != nil {
				return usageError{err}
			}
			re = regexp.MustCompile(pat)
		}
		cl, err := kgo.NewClient(f.Kafka.ClientOptions()...)
		if err != nil {
			return err
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		drifts, err := producer.CheckTableTopics(cmd.Context(), adm, &f.Kafka, re)
		if err != nil {
			return err
		}
		for _, d := range drifts {
			fmt.Fprintln(os.Stdout, d)
		}
		switch {
		case len(drifts) == 0:
			fmt.Fprintln(os.Stdout, "every table topic has the configured settings")
		case !alter:
			fmt.Fprintf(os.Stdout, "%d settings differ; `kanal topics alter` sets them\n", len(drifts))
		case dryRun:
			fmt.Fprintln(os.Stderr, "dry run: nothing changed")
		default:
			if err := producer.AlterTableTopics(cmd.Context(), adm, drifts); err != nil {
				return err
			}
			fmt.Fprintf(os.Stdout, "%d settings changed\n", len(drifts))
		}
		return nil
	}
	check := &cobra.Command{
		Use:   "check --config F [--tables db.t,..]",
		Short: "List existing table topics whose cleanup policy, compaction lag or record size limit differ from the configuration",
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd, false) },
	}
	alter := &cobra.Command{
		Use:   "alter --config F [--tables db.t,..] [--dry-run]",
		Short: "Set kafka.cleanup_policy, kafka.min_compaction_lag and the record size limit on existing table topics",
		Long: `alter sets cleanup.policy and min.compaction.lag.ms of the existing table topics of
the configured prefix (or of --tables) to the kafka section's cleanup_policy and
min_compaction_lag, and raises max.message.bytes to what kafka.max_record_bytes
needs (it never lowers it), with an incremental config change (other settings
stay). kanal only applies them to topics it creates; the producer logs every
existing topic that differs when it starts. History that compaction already
removed does not come back.`,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, true) },
	}
	for _, c := range []*cobra.Command{check, alter} {
		c.Flags().StringVar(&cfgPath, "config", "", "configuration file")
		c.Flags().StringVar(&tables, "tables", "", "comma-separated db.table patterns (default: every table topic of the prefix)")
	}
	alter.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	cmd.AddCommand(check, alter)
	return cmd
}
