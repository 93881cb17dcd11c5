package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// parseSince reads --since: an RFC 3339 time or a duration back from now.
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, usageError{fmt.Errorf("--since %q is not an RFC 3339 time or a duration (1h)", s)}
}

func dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Read and redrive a consumer group's dead letters"}
	var conn connFlags
	var group, since, key string
	var dryRun bool
	filter := func() (consumer.DeadLetterFilter, error) {
		if group == "" {
			return consumer.DeadLetterFilter{}, usageError{errors.New("--group is required")}
		}
		t, err := parseSince(since)
		return consumer.DeadLetterFilter{Since: t, Key: key}, err
	}
	show := &cobra.Command{
		Use:   "show --group G [--since T] [--key K]",
		Short: "List the group's dead letters: why, where from, whether redriven",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter()
			if err != nil {
				return err
			}
			k, _, err := conn.resolve(cmd)
			if err != nil {
				return err
			}
			dls, err := consumer.ReadDeadLetters(cmd.Context(), k, group, f)
			if err != nil {
				return err
			}
			printDeadLetters(os.Stdout, schemas.DLQTopic(k.TopicPrefix, group), dls)
			return nil
		},
	}
	redrive := &cobra.Command{
		Use:   "redrive --group G [--since T] [--key K] [--dry-run]",
		Short: "Re-publish dead letters to the group's retry topic, which the group consumes",
		Long: `redrive re-publishes the group's dead letters (those since T, or of key K) to
"<prefix>._retry.<group>". The group reads that topic next to its table topics and
hands each record to the handler(s) that dead-lettered it, with its original value
and headers — its original Seq, so a version-guarded sink that applied a newer change
of the row meanwhile ignores it. Run it after fixing what made the records fail; the
group may be running.

redrive is idempotent: dead letters already redriven are skipped, and one Kafka
transaction publishes the rest (a concurrent redrive of the same group is fenced).
A truncated dead letter is redriven from its original record in its table topic when
that is still retained (checked by SHA-256), and skipped otherwise. Each redriven and
skipped dead letter is logged.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := filter()
			if err != nil {
				return err
			}
			k, file, err := conn.resolve(cmd)
			if err != nil {
				return err
			}
			log := config.LogConfig{Level: "info", Format: "text"}.Logger(os.Stderr)
			if file != nil {
				log = file.Log.Logger(os.Stderr)
			}
			res, err := consumer.Redrive(cmd.Context(), k, group, f, dryRun)
			if err != nil {
				return err
			}
			verb := "redriven"
			if dryRun {
				verb = "would redrive (dry run)"
			}
			for _, d := range res.Redriven {
				log.Info(verb, "group", group, "dlq", fmt.Sprintf("%d@%d", d.Partition, d.Offset), "key", d.Key,
					"handler", d.Handler, "reason", d.Reason, "origin", origin(&d), "seq", d.Seq, "retry_topic", res.RetryTopic)
			}
			for _, s := range res.Skipped {
				log.Warn("not redriven", "group", group, "dlq", fmt.Sprintf("%d@%d", s.Partition, s.Offset), "key", s.Key, "why", s.Why)
			}
			fmt.Fprintf(os.Stdout, "group %s: %d dead letters %s to %s, %d skipped\n", group, len(res.Redriven), verb, res.RetryTopic, len(res.Skipped))
			return nil
		},
	}
	for _, c := range []*cobra.Command{show, redrive} {
		c.Flags().StringVar(&group, "group", "", "consumer group")
		c.Flags().StringVar(&since, "since", "", "only dead letters written at or after this RFC 3339 time, or this long ago (1h)")
		c.Flags().StringVar(&key, "key", "", "only dead letters of this record key (db.table:pk)")
	}
	conn.add(show, "")
	conn.add(redrive, "its log section")
	redrive.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be redriven without publishing")
	cmd.AddCommand(show, redrive)
	return cmd
}

func origin(d *consumer.DeadLetterRecord) string {
	return fmt.Sprintf("%s/%d@%d", d.Topic, d.OriginPartition, d.OriginOffset)
}

func printDeadLetters(w io.Writer, topic string, dls []consumer.DeadLetterRecord) {
	fmt.Fprintf(w, "%s: %d dead letters\n", topic, len(dls))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tTIME\tHANDLER\tREASON\tATTEMPTS\tORIGIN\tKEY\tSEQ\tVALUE\tREDRIVEN\tERROR")
	for i := range dls {
		d := &dls[i]
		value := fmt.Sprintf("%dB", len(d.Record.Value))
		if d.TruncatedFrom > 0 {
			value = fmt.Sprintf("cut from %dB", d.TruncatedFrom)
		}
		redriven := "no"
		if d.Redriven {
			redriven = "yes"
		}
		errText := strings.ReplaceAll(d.Error, "\n", " ")
		if len(errText) > 100 {
			errText = errText[:100] + "…"
		}
		fmt.Fprintf(tw, "%d@%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.Partition, d.Offset, d.Time.UTC().Format(time.RFC3339),
			d.Handler, d.Reason, d.Attempts, origin(d), d.Key, d.Seq, value, redriven, errText)
	}
	tw.Flush()
}
