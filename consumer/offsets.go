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
	// Owner is the member the partition is assigned to, nil when none is.
	Owner *Member
}

// Member is a live member of a consumer group.
type Member struct {
	ID         string
	InstanceID string // "" for a dynamic member
	ClientID   string
	Host       string
}

// String is "<client id>@<host>", with the instance id of a static member.
func (m *Member) String() string {
	s := m.ClientID + "@" + strings.TrimPrefix(m.Host, "/")
	if m.InstanceID != "" {
		s += " (" + m.InstanceID + ")"
	}
	return s
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
	owners := map[string]map[int32]*Member{}
	for _, m := range dg.Members {
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		mem := &Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
		if m.InstanceID != nil {
			mem.InstanceID = *m.InstanceID
		}
		for _, t := range a.Topics {
			if owners[t.Topic] == nil {
				owners[t.Topic] = map[int32]*Member{}
			}
			for _, p := range t.Partitions {
				owners[t.Topic][p] = mem
			}
		}
	}
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
		p := PartitionOffsets{Topic: e.Topic, Partition: e.Partition, Committed: -1, End: e.Offset, Owner: owners[e.Topic][e.Partition]}
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
		return nil, fmt.Errorf("%w: group %s: no topics to reset (it has no committed offsets on its topics; name them with --tables)", ErrConfig, group)
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

// SkipRecord moves a stopped group past one record on purpose: the record at
// offset of topic/partition, where the group stands (its committed offset there
// must be offset, so that nothing else is skipped). It commits offset+1 and,
// when the group's handler keeps its progress in its sink (resetter not nil),
// writes it there too. It refuses with ErrGroupActive while the group has
// members.
func SkipRecord(ctx context.Context, adm *kadm.Client, group, topic string, partition int32, offset int64, resetter OffsetResetter) error {
	if err := checkIdle(ctx, adm, group); err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	at := int64(-1)
	if c, ok := committed.Lookup(topic, partition); ok && c.Err == nil {
		at = c.At
	}
	if at < 0 {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return fmt.Errorf("list start offsets of %s: %w", topic, err)
		}
		s, ok := starts.Lookup(topic, partition)
		if !ok || s.Err != nil {
			return fmt.Errorf("%w: %s/%d: no such partition", ErrConfig, topic, partition)
		}
		at = s.Offset
	}
	if at != offset {
		return fmt.Errorf("%w: group %s stands at offset %d of %s/%d, not %d: skip moves only past the record the group stopped at (offsets reset moves further)",
			ErrConfig, group, at, topic, partition, offset)
	}
	next := map[string]map[int32]int64{topic: {partition: offset + 1}}
	if err := CommitReset(ctx, adm, group, next); err != nil {
		return err
	}
	if resetter != nil {
		if err := resetter.ResetOffsets(ctx, group, next); err != nil {
			return fmt.Errorf("group %s: the Kafka offset was moved but the sink's was not: %w", group, err)
		}
	}
	return nil
}
