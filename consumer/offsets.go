package consumer

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrGroupActive is returned by ResetOffsets while the group has members: their
// next commit would overwrite the reset (Kafka's own tool refuses too).
var ErrGroupActive = errors.New("consumer group has active members; stop them first")

// PartitionOffsets is where a group stands on one partition.
type PartitionOffsets struct {
	Topic     string
	Partition int32
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64
	// Start and End are the partition's first and next offsets (End is the last
	// stable offset: what a read_committed consumer can reach).
	Start, End int64
	// Lag is End − Committed (End − Start without a commit).
	Lag int64
}

// GroupOffsets describes a group's progress.
type GroupOffsets struct {
	Group   string
	State   string // Empty, Stable, PreparingRebalance, Dead, …
	Members int
	// Partitions are sorted by topic and partition.
	Partitions []PartitionOffsets
}

// DescribeOffsets reports committed offset, end and lag for every partition of
// the topics matching topicRE ("" = the topics the group has commits for).
func DescribeOffsets(ctx context.Context, adm *kadm.Client, group, topicRE string) (GroupOffsets, error) {
	out := GroupOffsets{Group: group}
	dg, err := describeGroup(ctx, adm, group)
	if err != nil {
		return out, err
	}
	out.State, out.Members = dg.State, len(dg.Members)
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return out, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	topics, err := groupTopics(ctx, adm, committed, topicRE)
	if err != nil || len(topics) == 0 {
		return out, err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return out, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return out, fmt.Errorf("list end offsets: %w", err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		if e.Err != nil || e.Partition < 0 {
			return
		}
		p := PartitionOffsets{Topic: e.Topic, Partition: e.Partition, Committed: -1, End: e.Offset}
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
			p.Start = s.Offset
		}
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil && c.At >= 0 {
			p.Committed = c.At
			p.Lag = max(p.End-c.At, 0)
		} else {
			p.Lag = p.End - p.Start
		}
		out.Partitions = append(out.Partitions, p)
	})
	sort.Slice(out.Partitions, func(i, j int) bool {
		a, b := out.Partitions[i], out.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return out, nil
}

func describeGroup(ctx context.Context, adm *kadm.Client, group string) (kadm.DescribedGroup, error) {
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return kadm.DescribedGroup{}, fmt.Errorf("describe group %s: %w", group, err)
	}
	dg := gs[group]
	if dg.Err != nil && !errors.Is(dg.Err, kerr.GroupIDNotFound) {
		return dg, fmt.Errorf("describe group %s: %w", group, dg.Err)
	}
	return dg, nil
}

// groupTopics returns the topics matching topicRE, or, with no pattern, the topics
// the group has committed offsets for.
func groupTopics(ctx context.Context, adm *kadm.Client, committed kadm.OffsetResponses, topicRE string) ([]string, error) {
	if topicRE == "" {
		var topics []string
		for t := range committed {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		return topics, nil
	}
	re, err := regexp.Compile(topicRE)
	if err != nil {
		return nil, fmt.Errorf("%w: topic pattern: %w", ErrConfig, err)
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var topics []string
	for _, t := range all.Names() {
		if re.MatchString(t) {
			topics = append(topics, t)
		}
	}
	sort.Strings(topics)
	return topics, nil
}

// ResetTo says where ResetOffsets moves a group: earliest, latest, the first
// record at or after a time, or an absolute offset.
type ResetTo struct {
	Earliest, Latest bool
	Time             time.Time
	Offset           int64 // used when none of the above is set
}

// ParseResetTo parses "earliest", "latest", an RFC 3339 time or an offset.
func ParseResetTo(s string) (ResetTo, error) {
	switch s {
	case "earliest":
		return ResetTo{Earliest: true}, nil
	case "latest":
		return ResetTo{Latest: true}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ResetTo{Time: t}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return ResetTo{Offset: n}, nil
	}
	return ResetTo{}, fmt.Errorf("%w: --to %q is not earliest, latest, an RFC 3339 time or an offset", ErrConfig, s)
}

// String is the form ParseResetTo reads.
func (r ResetTo) String() string {
	switch {
	case r.Earliest:
		return "earliest"
	case r.Latest:
		return "latest"
	case !r.Time.IsZero():
		return r.Time.Format(time.RFC3339Nano)
	}
	return strconv.FormatInt(r.Offset, 10)
}

// PlanReset computes the offsets a reset would commit: for every partition of
// the topics matching topicRE ("" = the topics the group has commits for). An
// absolute offset is clamped to each partition's [start, end].
func PlanReset(ctx context.Context, adm *kadm.Client, group, topicRE string, to ResetTo) (map[string]map[int32]int64, error) {
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	topics, err := groupTopics(ctx, adm, committed, topicRE)
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("%w: group %s has no committed offsets and no topics were named (--tables)", ErrConfig, group)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	var at kadm.ListedOffsets
	switch {
	case to.Earliest:
		at = starts
	case to.Latest:
		at = ends
	case !to.Time.IsZero():
		if at, err = adm.ListOffsetsAfterMilli(ctx, to.Time.UnixMilli(), topics...); err != nil {
			return nil, fmt.Errorf("list offsets after %s: %w", to.Time.Format(time.RFC3339), err)
		}
	default:
		at = ends
	}
	out := map[string]map[int32]int64{}
	var errs []string
	at.Each(func(o kadm.ListedOffset) {
		if o.Partition < 0 {
			return
		}
		if o.Err != nil {
			errs = append(errs, fmt.Sprintf("%s/%d: %v", o.Topic, o.Partition, o.Err))
			return
		}
		off := o.Offset
		if !to.Earliest && !to.Latest && to.Time.IsZero() {
			s, _ := starts.Lookup(o.Topic, o.Partition)
			off = min(max(to.Offset, s.Offset), o.Offset)
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = off
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("list offsets: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// CommitReset commits offsets for the group, refusing with ErrGroupActive while
// the group has members.
func CommitReset(ctx context.Context, adm *kadm.Client, group string, offsets map[string]map[int32]int64) error {
	if err := checkIdle(ctx, adm, group); err != nil {
		return err
	}
	os := kadm.Offsets{}
	for t, ps := range offsets {
		for p, at := range ps {
			os.Add(kadm.Offset{Topic: t, Partition: p, At: at, LeaderEpoch: -1})
		}
	}
	resp, err := adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	return nil
}

// ResetGroup moves a stopped group to `to` on the topics matching topicRE ("" =
// the topics it has commits for): it commits the new offsets to Kafka and, when
// the group's handler keeps its offsets in its sink (resetter not nil), writes
// them there too, so that the handler replays from the same place. It returns
// the offsets it set.
func ResetGroup(ctx context.Context, adm *kadm.Client, group, topicRE string, to ResetTo, resetter OffsetResetter) (map[string]map[int32]int64, error) {
	if err := checkIdle(ctx, adm, group); err != nil {
		return nil, err
	}
	plan, err := PlanReset(ctx, adm, group, topicRE, to)
	if err != nil {
		return nil, err
	}
	if err := CommitReset(ctx, adm, group, plan); err != nil {
		return nil, err
	}
	if resetter != nil {
		if err := resetter.ResetOffsets(ctx, group, plan); err != nil {
			return nil, fmt.Errorf("group %s: Kafka offsets were reset but the sink's were not: %w", group, err)
		}
	}
	return plan, nil
}

func checkIdle(ctx context.Context, adm *kadm.Client, group string) error {
	dg, err := describeGroup(ctx, adm, group)
	if err != nil {
		return err
	}
	if len(dg.Members) > 0 {
		return fmt.Errorf("group %s (%s, %d members): %w", group, dg.State, len(dg.Members), ErrGroupActive)
	}
	return nil
}
