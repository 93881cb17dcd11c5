package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// Collector gathers Reports from one Kafka cluster. It keeps one client;
// Close it when done.
type Collector struct {
	cfg kafkaconn.Config
	cl  *kgo.Client
	adm *kadm.Client
	// Now is the clock (tests may replace it).
	Now func() time.Time
	// ProbeTimeout bounds reading the records around one group's committed
	// offsets; a partition not read by then has unknown freshness.
	ProbeTimeout time.Duration
}

// NewCollector connects to the cluster of cfg (lazily, as franz-go does).
func NewCollector(cfg kafkaconn.Config) (*Collector, error) {
	cl, err := kgo.NewClient(append(cfg.ClientOptions(), kgo.ClientID("kanal-status"))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &Collector{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), Now: time.Now, ProbeTimeout: 5 * time.Second}, nil
}

// Close closes the client.
func (c *Collector) Close() { c.cl.Close() }

// Collect reads the installation's state now.
func (c *Collector) Collect(ctx context.Context) (*Report, error) {
	now := c.Now()
	prefix := c.cfg.TopicPrefix
	rep := &Report{GeneratedAt: now.UTC(), Prefix: prefix, Sources: []Source{}, Groups: []Group{}}

	topics, err := c.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	positions := map[string]schemas.Position{}
	if topics.Has(schemas.PositionsTopic(prefix)) {
		latest, err := c.readLatest(ctx, schemas.PositionsTopic(prefix))
		if err != nil {
			return nil, err
		}
		for k, v := range latest {
			if p, err := schemas.DecodePosition(v); err == nil {
				positions[k] = p
			}
		}
	}
	statuses := map[string]*schemas.StatusRecord{}
	if topics.Has(schemas.StatusTopic(prefix)) {
		latest, err := c.readLatest(ctx, schemas.StatusTopic(prefix))
		if err != nil {
			return nil, err
		}
		for k, v := range latest {
			s, err := schemas.DecodeStatus(v)
			if err != nil {
				continue
			}
			// A process that died without a tombstone stops refreshing its record.
			if now.Sub(time.UnixMilli(s.TsMs)) > max(3*time.Duration(s.IntervalMs)*time.Millisecond, 3*time.Second) {
				continue
			}
			statuses[k] = s
		}
	}
	heartbeats := map[string]int64{}
	if topics.Has(schemas.HeartbeatsTopic(prefix)) {
		if heartbeats, err = c.newestHeartbeats(ctx, schemas.HeartbeatsTopic(prefix)); err != nil {
			return nil, err
		}
	}

	listed, err := c.adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	var groupNames []string
	producerGroups := map[string]bool{}
	for _, name := range listed.Groups() {
		if src, ok := strings.CutPrefix(name, schemas.ProducerGroup("")); ok {
			producerGroups[src] = true
		}
		groupNames = append(groupNames, name)
	}
	described := kadm.DescribedGroups{}
	if len(groupNames) > 0 {
		if described, err = c.adm.DescribeGroups(ctx, groupNames...); err != nil {
			return nil, fmt.Errorf("describe groups: %w", err)
		}
	}

	rep.Sources = c.sources(now, positions, statuses, heartbeats, producerGroups, described)
	// The freshness of a caught-up partition: the last time the producers
	// confirmed having read their source (the least recent, when several
	// sources share the prefix).
	var confirmed int64
	for _, s := range rep.Sources {
		t := heartbeats[s.Name]
		if s.Position != nil && s.Position.WrittenMs > t {
			t = s.Position.WrittenMs
		}
		if t > 0 && (confirmed == 0 || t < confirmed) {
			confirmed = t
		}
	}
	groups, err := c.groups(ctx, now, topics, groupNames, described, statuses, confirmed)
	if err != nil {
		return nil, err
	}
	rep.Groups = groups
	return rep, nil
}

func (c *Collector) sources(now time.Time, positions map[string]schemas.Position, statuses map[string]*schemas.StatusRecord,
	heartbeats map[string]int64, producerGroups map[string]bool, described kadm.DescribedGroups) []Source {
	names := map[string]bool{}
	for n := range positions {
		names[n] = true
	}
	for n := range producerGroups {
		names[n] = true
	}
	for _, s := range statuses {
		if s.Kind == schemas.StatusProducer {
			names[s.Name] = true
		}
	}
	positionsTopic := schemas.PositionsTopic(c.cfg.TopicPrefix)
	var out []Source
	for name := range names {
		s := Source{Name: name, Standbys: []Member{}}
		if p, ok := positions[name]; ok {
			s.Position = &p
			if p.WrittenMs > 0 {
				s.PositionAgeSeconds = seconds(now.Sub(time.UnixMilli(p.WrittenMs)))
			}
		}
		if hb, ok := heartbeats[name]; ok {
			s.HeartbeatAgeSeconds = seconds(now.Sub(time.UnixMilli(hb)))
		}
		record := func(instance string) *schemas.StatusRecord {
			return statuses[schemas.StatusKey(schemas.StatusProducer, name, instance)]
		}
		if g, ok := described[schemas.ProducerGroup(name)]; ok && g.Err == nil && len(g.Members) > 0 {
			s.Election = g.State
			for _, m := range g.Members {
				mem := Member{Instance: strings.TrimPrefix(m.ClientID, "kanal-produce-"), MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
				if r := record(mem.Instance); r != nil {
					mem.AdminAddr = r.AdminAddr
				}
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range a.Topics {
						mem.Partitions += len(t.Partitions)
						if t.Topic == positionsTopic && len(t.Partitions) > 0 {
							s.Active = &mem
						}
					}
				}
				if s.Active == nil || s.Active.MemberID != mem.MemberID {
					s.Standbys = append(s.Standbys, mem)
				}
			}
		}
		// Producers without the election (ha.enabled false) say so themselves.
		for _, r := range statuses {
			if r.Kind != schemas.StatusProducer || r.Name != name || r.Producer == nil {
				continue
			}
			if s.Active == nil && r.Producer.Role == "active" {
				s.Active = &Member{Instance: r.Instance, MemberID: r.MemberID, AdminAddr: r.AdminAddr}
			}
		}
		if s.Active != nil {
			if r := record(s.Active.Instance); r != nil && r.Producer != nil {
				p := r.Producer
				if p.LagSeconds >= 0 {
					s.LagSeconds = &p.LagSeconds
				}
				if p.BytesBehind >= 0 {
					s.BytesBehind = &p.BytesBehind
				}
				if p.RetentionMarginBytes != -1 || p.RetentionMarginFiles != -1 {
					s.RetentionMarginFiles, s.RetentionMarginBytes = &p.RetentionMarginFiles, &p.RetentionMarginBytes
				}
			}
		}
		sort.Slice(s.Standbys, func(i, j int) bool { return s.Standbys[i].Instance < s.Standbys[j].Instance })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type tp struct {
	topic     string
	partition int32
}

func (c *Collector) groups(ctx context.Context, now time.Time, topics kadm.TopicDetails, names []string,
	described kadm.DescribedGroups, statuses map[string]*schemas.StatusRecord, confirmed int64) ([]Group, error) {
	prefix := c.cfg.TopicPrefix
	var tableTopics []string
	for _, t := range topics.Names() {
		if isTableTopic(prefix, t) {
			tableTopics = append(tableTopics, t)
		}
	}
	out := []Group{}
	if len(tableTopics) == 0 || len(names) == 0 {
		return out, nil
	}
	lso, err := c.adm.ListCommittedOffsets(ctx, tableTopics...)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	starts, err := c.adm.ListStartOffsets(ctx, tableTopics...)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	fetched := c.adm.FetchManyOffsets(ctx, names...)
	for _, name := range names {
		if strings.HasPrefix(name, schemas.ProducerGroup("")) {
			continue
		}
		d := described[name]
		committed := map[tp]int64{}
		if r, ok := fetched[name]; ok && r.Err == nil {
			r.Fetched.Each(func(o kadm.OffsetResponse) {
				if o.Err == nil && isTableTopic(prefix, o.Topic) && o.At >= 0 {
					committed[tp{o.Topic, o.Partition}] = o.At
				}
			})
		}
		g := Group{Name: name, State: d.State, Members: []Member{}, Tables: []Table{}, Halted: []schemas.StatusHalted{},
			DLQTopic: schemas.DLQTopic(prefix, name)}
		assigned := map[string]bool{}
		for _, m := range d.Members {
			mem := Member{Instance: m.ClientID, MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
			if m.InstanceID != nil {
				mem.Instance = *m.InstanceID
			}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if isTableTopic(prefix, t.Topic) {
						mem.Partitions += len(t.Partitions)
						assigned[t.Topic] = true
					}
				}
			}
			g.Members = append(g.Members, mem)
		}
		handlers := map[string]bool{}
		hasStatus := false
		for _, s := range statuses {
			if s.Kind != schemas.StatusConsumer || s.Name != name || s.Consumer == nil {
				continue
			}
			hasStatus = true
			for _, h := range s.Consumer.Handlers {
				handlers[h] = true
			}
			g.Halted = append(g.Halted, s.Consumer.Halted...)
		}
		for h := range handlers {
			g.Handlers = append(g.Handlers, h)
		}
		sort.Strings(g.Handlers)
		reads := map[string]bool{}
		for t := range committed {
			reads[t.topic] = true
		}
		for t := range assigned {
			reads[t] = true
		}
		if len(reads) == 0 && !hasStatus {
			continue // not a kanal consumer group
		}
		// Partitions without a commit are read from the start.
		for t := range reads {
			for p := range topics[t].Partitions {
				k := tp{t, p}
				if _, ok := committed[k]; !ok {
					if o, ok := starts.Lookup(t, p); ok && o.Err == nil {
						committed[k] = o.Offset
					}
				}
			}
		}
		oldest, err := c.probe(ctx, committed, lso)
		if err != nil {
			return nil, err
		}
		halted := map[string]int{}
		for _, h := range g.Halted {
			halted[h.Topic]++
		}
		byTopic := map[string]*Table{}
		for k, off := range committed {
			t := byTopic[k.topic]
			if t == nil {
				t = &Table{Table: tableName(prefix, k.topic), Topic: k.topic, Halted: halted[k.topic]}
				byTopic[k.topic] = t
			}
			t.Partitions++
			end, ok := lso.Lookup(k.topic, k.partition)
			if !ok || end.Err != nil {
				continue
			}
			var fresh *float64
			pr := oldest[k]
			switch {
			case off < end.Offset && !pr.read:
				t.LagRecords += end.Offset - off // freshness unknown
			case pr.lagging:
				t.LagRecords += end.Offset - off
				fresh = seconds(now.Sub(pr.ts))
			case confirmed > 0:
				fresh = seconds(now.Sub(time.UnixMilli(confirmed)))
			}
			if fresh != nil && (t.FreshnessSeconds == nil || *fresh > *t.FreshnessSeconds) {
				t.FreshnessSeconds = fresh
			}
		}
		for _, t := range byTopic {
			g.Tables = append(g.Tables, *t)
		}
		sort.Slice(g.Tables, func(i, j int) bool { return g.Tables[i].Table < g.Tables[j].Table })
		sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].Instance < g.Members[j].Instance })
		sort.Slice(g.Halted, func(i, j int) bool {
			a, b := g.Halted[i], g.Halted[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		if g.DeadLetters, err = c.countRecords(ctx, topics, g.DLQTopic); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// probed is what probe learnt about one partition.
type probed struct {
	read    bool      // the partition was read within ProbeTimeout
	lagging bool      // a committed change lies at or after the committed offset
	ts      time.Time // that change's timestamp (the binlog event's time)
}

// probe reads, for each partition whose committed offset lies below its
// stable end, the first committed record at or after it: the oldest change
// the group has not applied. Transaction markers alone there mean the group
// is caught up.
func (c *Collector) probe(ctx context.Context, committed map[tp]int64, lso kadm.ListedOffsets) (map[tp]probed, error) {
	out := map[tp]probed{}
	parts := map[string]map[int32]kgo.Offset{}
	ends := map[tp]int64{}
	for k, off := range committed {
		end, ok := lso.Lookup(k.topic, k.partition)
		if !ok || end.Err != nil || off >= end.Offset {
			continue
		}
		if parts[k.topic] == nil {
			parts[k.topic] = map[int32]kgo.Offset{}
		}
		parts[k.topic][k.partition] = kgo.NewOffset().At(off)
		ends[k] = end.Offset
	}
	if len(ends) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append(c.cfg.ClientOptions(), kgo.ClientID("kanal-status"),
		kgo.ConsumePartitions(parts), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, c.ProbeTimeout)
	defer cancel()
	for len(ends) > 0 {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			k := tp{r.Topic, r.Partition}
			end, open := ends[k]
			switch {
			case !open:
			case !r.Attrs.IsControl():
				out[k] = probed{read: true, lagging: true, ts: r.Timestamp}
				delete(ends, k)
			case r.Offset >= end-1:
				out[k] = probed{read: true}
				delete(ends, k)
			}
		})
	}
	return out, nil
}

// countRecords is the number of records in topic (0 when it does not exist).
func (c *Collector) countRecords(ctx context.Context, topics kadm.TopicDetails, topic string) (int64, error) {
	if !topics.Has(topic) {
		return 0, nil
	}
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	starts, err := c.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && o.Err == nil && s.Err == nil {
			n += o.Offset - s.Offset
		}
	})
	return n, nil
}

// readLatest reads a compacted topic to its end and returns each key's
// latest value (keys whose latest record is a tombstone are left out).
func (c *Collector) readLatest(ctx context.Context, topic string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := c.readRange(ctx, topic, func(kadm.ListedOffset) int64 { return -2 }, func(r *kgo.Record) {
		if r.Value == nil {
			delete(out, string(r.Key))
		} else {
			out[string(r.Key)] = r.Value
		}
	})
	return out, err
}

// newestHeartbeats returns each source's newest heartbeat time (ms) among
// the last records of the heartbeat topic.
func (c *Collector) newestHeartbeats(ctx context.Context, topic string) (map[string]int64, error) {
	out := map[string]int64{}
	err := c.readRange(ctx, topic, func(end kadm.ListedOffset) int64 { return max(0, end.Offset-200) }, func(r *kgo.Record) {
		var hb schemas.Heartbeat
		if r.Value != nil && json.Unmarshal(r.Value, &hb) == nil && hb.TsMs > out[hb.Source] {
			out[hb.Source] = hb.TsMs
		}
	})
	return out, err
}

// readRange reads the committed records of topic from from(end) (-2: the
// start) to its end at the time of the call.
func (c *Collector) readRange(ctx context.Context, topic string, from func(kadm.ListedOffset) int64, each func(*kgo.Record)) error {
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	parts := map[string]map[int32]kgo.Offset{topic: {}}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset == 0 {
			return
		}
		want[o.Partition] = o.Offset
		if f := from(o); f >= 0 {
			parts[topic][o.Partition] = kgo.NewOffset().At(f)
		} else {
			parts[topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(c.cfg.ClientOptions(), kgo.ClientID("kanal-status"),
		kgo.ConsumePartitions(parts), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	idle := 0
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("read %s: %w", topic, ctx.Err())
		}
		if fs.NumRecords() == 0 {
			// Compaction may have removed the records just below the end, or an
			// open transaction holds the stable end below it.
			if idle++; idle >= 3 {
				return nil
			}
			continue
		}
		idle = 0
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
				ferr = fmt.Errorf("read %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= want[r.Partition]-1 {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				each(r)
			}
		})
	}
	return nil
}

// isTableTopic reports whether topic is "<prefix>.<db>.<table>" (kanal's own
// topics are "<prefix>._…").
func isTableTopic(prefix, topic string) bool {
	rest, ok := strings.CutPrefix(topic, prefix+".")
	return ok && rest != "" && rest[0] != '_' && strings.Count(rest, ".") == 1
}

func tableName(prefix, topic string) string { return strings.TrimPrefix(topic, prefix+".") }

func seconds(d time.Duration) *float64 {
	v := float64(max(0, d).Milliseconds()) / 1000
	return &v
}
