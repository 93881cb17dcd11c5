package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

func offsetsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "offsets", Short: "Show, reset or skip a consumer group's offsets"}
	var conn connFlags
	var group, tables, to, topic string
	var dryRun bool
	var partition int32
	var offset int64
	resolve := func(cmd *cobra.Command) (*kafkaconn.Config, *config.File, error) {
		if group == "" {
			return nil, nil, usageError{errors.New("--group is required")}
		}
		return conn.resolve(cmd)
	}
	// topicRE is the topics a command works on: those of --tables, else exactly
	// those the group subscribes to (see groupTopicRE).
	topicRE := func(ctx context.Context, k *kafkaconn.Config, f *config.File, cl *kgo.Client) (string, error) {
		if tables == "" {
			return groupTopicRE(ctx, kadm.NewClient(cl), k, f, group)
		}
		re, err := consumer.TopicPattern(k.TopicPrefix, strings.Split(tables, ","))
		if err != nil {
			return "", usageError{err}
		}
		return re, nil
	}
	// resetter builds the handler of the group that keeps its progress in its
	// sink, if any (close it with closeResetter).
	resetter := func(f *config.File) (consumer.OffsetResetter, error) {
		if f == nil {
			return nil, nil
		}
		r, err := handlers.Builtin().Resetter(&f.Consumers, group, handlers.Env{Log: f.Log.Logger(os.Stderr), Stdout: io.Discard})
		if err != nil {
			return nil, usageError{err}
		}
		return r, nil
	}
	show := &cobra.Command{
		Use:   "show --group G",
		Short: "Print committed offset, end and lag per partition",
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, f, err := resolve(cmd)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			re, err := topicRE(cmd.Context(), k, f, cl)
			if err != nil {
				return err
			}
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
		Long: `reset commits new offsets for every partition of the topics the group subscribes
to (or of the topics of --tables): the oldest retained record, the end, the first
record at or after a time, or an absolute offset (clamped to each partition). It
refuses while the group has live members. With --config, handlers of that group that
keep their offsets in their sink get the same offsets written there.

The group's topics are, with --config, the table topics of its handlers' tables and
its retry topic; without, the table topics of --prefix and the retry topic that the
group has committed offsets for. Topics of other prefixes are never touched.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, f, err := resolve(cmd)
			if err != nil {
				return err
			}
			target, err := consumer.ParseResetTo(to)
			if err != nil {
				return usageError{err}
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			re, err := topicRE(cmd.Context(), k, f, cl)
			if err != nil {
				return err
			}
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
			resetter, err := resetter(f)
			if err != nil {
				return err
			}
			defer closeResetter(resetter)
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
	skip := &cobra.Command{
		Use:   "skip --group G --topic T --partition P --offset O",
		Short: "Step a stopped group over one record on purpose (the one it stopped at)",
		Long: `skip commits offset O+1 for partition P of topic T, so that the group goes on after
the record at O without applying it — for a record that halts its partition and
should neither be applied nor dead-lettered. The group must be stopped (no members)
and stand exactly at O (its committed offset), so nothing else is skipped. With
--config, a handler of the group that keeps its offsets in its sink gets the new
offset too. The skip is logged with the record's key.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, f, err := resolve(cmd)
			if err != nil {
				return err
			}
			if topic == "" || partition < 0 || offset < 0 {
				return usageError{errors.New("--topic, --partition and --offset are required")}
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			resetter, err := resetter(f)
			if err != nil {
				return err
			}
			defer closeResetter(resetter)
			log := config.LogConfig{Level: "info", Format: "text"}.Logger(os.Stderr)
			if f != nil {
				log = f.Log.Logger(os.Stderr)
			}
			key := recordKey(cmd.Context(), k, topic, partition, offset)
			if err := consumer.SkipRecord(cmd.Context(), kadm.NewClient(cl), group, topic, partition, offset, resetter); err != nil {
				if errors.Is(err, consumer.ErrConfig) {
					return usageError{err}
				}
				return err
			}
			log.Warn("skipped a record: the group goes on after it without applying it",
				"group", group, "topic", topic, "partition", partition, "offset", offset, "key", key)
			return nil
		},
	}
	for _, c := range []*cobra.Command{show, reset, skip} {
		conn.add(c, "its consumers section (the group's topics and handlers)")
		c.Flags().StringVar(&group, "group", "", "consumer group")
	}
	for _, c := range []*cobra.Command{show, reset} {
		c.Flags().StringVar(&tables, "tables", "", "comma-separated db.table patterns (default: the topics the group subscribes to)")
	}
	reset.Flags().StringVar(&to, "to", "", "earliest, latest, an RFC 3339 time or an offset")
	reset.Flags().BoolVar(&dryRun, "dry-run", false, "print the offsets without changing anything")
	skip.Flags().StringVar(&topic, "topic", "", "topic of the record")
	skip.Flags().Int32Var(&partition, "partition", -1, "partition of the record")
	skip.Flags().Int64Var(&offset, "offset", -1, "offset of the record")
	cmd.AddCommand(show, reset, skip)
	return cmd
}

// groupTopicRE is a regular expression of exactly the topics group subscribes
// to: with a configuration naming the group's handlers, the table topics of
// their tables and the group's retry topic; otherwise the table topics of the
// prefix and the retry topic that the group has committed offsets for or its
// members are assigned.
func groupTopicRE(ctx context.Context, adm *kadm.Client, k *kafkaconn.Config, f *config.File, group string) (string, error) {
	retry := "^" + regexp.QuoteMeta(schemas.RetryTopic(k.TopicPrefix, group)) + "$"
	var alts []string
	if f != nil {
		for i := range f.Consumers.Handlers {
			h := &f.Consumers.Handlers[i]
			if h.GroupName() != group {
				continue
			}
			re, err := consumer.TopicPattern(k.TopicPrefix, h.Tables)
			if err != nil {
				return "", usageError{err}
			}
			alts = append(alts, "(?:"+re+")")
		}
	}
	if len(alts) > 0 {
		return strings.Join(append(alts, retry), "|"), nil
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return "", fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	topics := map[string]bool{}
	for t := range committed {
		topics[t] = true
	}
	// A running group's members say what they are assigned, committed or not.
	if dgs, err := adm.DescribeGroups(ctx, group); err == nil {
		dg := dgs[group]
		for t := range dg.AssignedPartitions() {
			topics[t] = true
		}
	}
	retryTopic := schemas.RetryTopic(k.TopicPrefix, group)
	for _, t := range slices.Sorted(maps.Keys(topics)) {
		if schemas.IsTableTopic(k.TopicPrefix, t) || t == retryTopic {
			alts = append(alts, regexp.QuoteMeta(t))
		}
	}
	if len(alts) == 0 {
		return "^$", nil // no topic: the commands say so
	}
	return "^(?:" + strings.Join(alts, "|") + ")$", nil
}

// recordKey returns the key of one record, for the log of a skip ("" when it
// cannot be read).
func recordKey(ctx context.Context, k *kafkaconn.Config, topic string, partition int32, offset int64) string {
	cl, err := kgo.NewClient(append(k.ClientOptions(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)}}), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return ""
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, r := range cl.PollFetches(ctx).Records() {
			if r.Offset == offset {
				return string(r.Key)
			}
			return ""
		}
	}
	return ""
}

// closeResetter closes a handler built for its offsets (its connection pools).
func closeResetter(r consumer.OffsetResetter) {
	switch c := r.(type) {
	case io.Closer:
		c.Close()
	case interface{ Close() }:
		c.Close()
	}
}

func printOffsets(w io.Writer, g consumer.GroupOffsets) {
	fmt.Fprintf(w, "group %s: %s, %d members\n", g.Group, g.State, g.Members)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tOWNER")
	var total int64
	for _, p := range g.Partitions {
		committed, owner := "-", "-"
		if p.Committed >= 0 {
			committed = fmt.Sprint(p.Committed)
		}
		if p.Owner != nil {
			owner = p.Owner.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", p.Topic, p.Partition, committed, p.End, p.Lag, owner)
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
