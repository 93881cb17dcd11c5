package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/kafkaconn"
)

func offsetsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "offsets", Short: "Show or reset a consumer group's offsets"}
	var brokers, prefix, cfgPath, group, tables, to string
	var dryRun bool
	resolve := func() (*kafkaconn.Config, *config.File, error) {
		if group == "" {
			return nil, nil, usageError{errors.New("--group is required")}
		}
		if cfgPath != "" {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return nil, nil, err
			}
			return &f.Kafka.Config, f, nil
		}
		if brokers == "" {
			return nil, nil, usageError{errors.New("give --config, or --brokers")}
		}
		return &kafkaconn.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: prefix}, nil, nil
	}
	topicRE := func(k *kafkaconn.Config) (string, error) {
		if tables == "" {
			return "", nil
		}
		re, err := consumer.TopicPattern(k.TopicPrefix, strings.Split(tables, ","))
		if err != nil {
			return "", usageError{err}
		}
		return re, nil
	}
	show := &cobra.Command{
		Use:   "show --group G",
		Short: "Print committed offset, end and lag per partition",
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, _, err := resolve()
			if err != nil {
				return err
			}
			re, err := topicRE(k)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			g, err := consumer.DescribeOffsets(cmd.Context(), kadm.NewClient(cl), group, re)
			if err != nil {
				return err
			}
			printOffsets(os.Stdout, g)
			return nil
		},
	}
	reset := &cobra.Command{
		Use:   "reset --group G --to earliest|latest|<RFC3339 time>|<offset> [--tables db.t,..]",
		Short: "Move a stopped group's offsets (and the progress its handler keeps in its sink) for replay",
		Long: `reset commits new offsets for every partition of the group's topics (or of the
topics of --tables): the oldest retained record, the end, the first record at or after
a time, or an absolute offset (clamped to each partition). It refuses while the group
has live members. With --config, handlers of that group that keep their offsets in
their sink get the same offsets written there.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, f, err := resolve()
			if err != nil {
				return err
			}
			target, err := consumer.ParseResetTo(to)
			if err != nil {
				return usageError{err}
			}
			re, err := topicRE(k)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			if dryRun {
				plan, err := consumer.PlanReset(cmd.Context(), adm, group, re, target)
				if err != nil {
					return err
				}
				printPlan(os.Stdout, plan)
				fmt.Fprintln(os.Stderr, "dry run: nothing changed")
				return nil
			}
			var resetter consumer.OffsetResetter
			if f != nil {
				resetter, err = handlers.Builtin().Resetter(&f.Consumers, group, handlers.Env{Log: f.Log.Logger(os.Stderr), Stdout: io.Discard})
				if err != nil {
					return usageError{err}
				}
			}
			switch c := resetter.(type) { // its connection pools
			case io.Closer:
				defer c.Close()
			case interface{ Close() }:
				defer c.Close()
			}
			plan, err := consumer.ResetGroup(cmd.Context(), adm, group, re, target, resetter)
			if err != nil {
				return err
			}
			printPlan(os.Stdout, plan)
			what := "Kafka offsets"
			if resetter != nil {
				what += " and the progress its handler keeps in its sink"
			}
			fmt.Fprintf(os.Stderr, "group %s: %s reset to %s\n", group, what, target)
			return nil
		},
	}
	for _, c := range []*cobra.Command{show, reset} {
		c.Flags().StringVar(&cfgPath, "config", "", "configuration file (for Kafka, prefix and the handlers)")
		c.Flags().StringVar(&brokers, "brokers", "", "comma-separated Kafka brokers")
		c.Flags().StringVar(&prefix, "prefix", "kanal", "topic prefix")
		c.Flags().StringVar(&group, "group", "", "consumer group")
		c.Flags().StringVar(&tables, "tables", "", "comma-separated db.table patterns (default: the topics the group has offsets for)")
	}
	reset.Flags().StringVar(&to, "to", "", "earliest, latest, an RFC 3339 time or an offset")
	reset.Flags().BoolVar(&dryRun, "dry-run", false, "print the offsets without changing anything")
	cmd.AddCommand(show, reset)
	return cmd
}

func printOffsets(w io.Writer, g consumer.GroupOffsets) {
	fmt.Fprintf(w, "group %s: %s, %d members\n", g.Group, g.State, g.Members)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
	var total int64
	for _, p := range g.Partitions {
		committed := "-"
		if p.Committed >= 0 {
			committed = fmt.Sprint(p.Committed)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", p.Topic, p.Partition, committed, p.End, p.Lag)
		total += p.Lag
	}
	tw.Flush()
	fmt.Fprintf(w, "total lag %d\n", total)
}

func printPlan(w io.Writer, plan map[string]map[int32]int64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tNEW OFFSET")
	for _, t := range slices.Sorted(maps.Keys(plan)) {
		for _, p := range slices.Sorted(maps.Keys(plan[t])) {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", t, p, plan[t][p])
		}
	}
	tw.Flush()
}
