package producer

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kanal-cdc/kanal/schemas"
)

// Topic configuration names kanal sets on the table topics it creates.
const (
	topicCleanupPolicy    = "cleanup.policy"
	topicMinCompactionLag = "min.compaction.lag.ms"
	topicMaxMessageBytes  = "max.message.bytes"
)

// TableTopicConfigs returns the topic configuration kanal creates table topics
// with: cleanup.policy, max.message.bytes (kafka.max_record_bytes plus the
// batch framing) and, for compacted topics, min.compaction.lag.ms.
func (k *KafkaConfig) TableTopicConfigs() map[string]string {
	m := map[string]string{topicCleanupPolicy: k.CleanupPolicy, topicMaxMessageBytes: strconv.Itoa(int(k.batchLimit()))}
	if strings.Contains(k.CleanupPolicy, "compact") {
		m[topicMinCompactionLag] = strconv.FormatInt(k.MinCompactionLag.Milliseconds(), 10)
	}
	return m
}

// TopicDrift is one setting of an existing table topic that differs from what
// the configuration would create it with.
type TopicDrift struct {
	Topic string
	// Key is the topic configuration name (cleanup.policy, min.compaction.lag.ms).
	Key string
	// Have is the topic's current value ("" when the broker reports none), Want
	// the configured one.
	Have, Want string
}

func (d TopicDrift) String() string {
	return fmt.Sprintf("%s: %s is %q, configured %q", d.Topic, d.Key, d.Have, d.Want)
}

// CheckTableTopics compares the existing table topics of the configured prefix
// (those matching topicRE too, when it is not nil) with TableTopicConfigs and
// returns every difference, sorted by topic and key. A broker that reports no
// min.compaction.lag.ms for a topic has its default, 0.
func CheckTableTopics(ctx context.Context, adm *kadm.Client, k *KafkaConfig, topicRE *regexp.Regexp) ([]TopicDrift, error) {
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var topics []string
	for _, t := range listed.Names() {
		if schemas.IsTableTopic(k.TopicPrefix, t) && (topicRE == nil || topicRE.MatchString(t)) {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	want := k.TableTopicConfigs()
	var out []TopicDrift
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("describe configs of topic %s: %w", rc.Name, rc.Err)
		}
		have := map[string]string{topicMinCompactionLag: "0"}
		for _, c := range rc.Configs {
			if c.Value != nil {
				have[c.Key] = *c.Value
			}
		}
		for key, w := range want {
			if h := have[key]; h != w && !(key == topicMaxMessageBytes && atLeast(h, w)) {
				out = append(out, TopicDrift{Topic: rc.Name, Key: key, Have: h, Want: w})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Key < b.Key
	})
	return out, nil
}

// atLeast reports whether the number have is at least want: a topic that takes
// larger records than kanal writes does not differ in a way that matters.
func atLeast(have, want string) bool {
	h, err1 := strconv.Atoi(have)
	w, err2 := strconv.Atoi(want)
	return err1 == nil && err2 == nil && h >= w
}

// AlterTableTopics sets the wanted value of every drift (incrementally: other
// settings of the topics stay). It returns the first error, naming the topic.
func AlterTableTopics(ctx context.Context, adm *kadm.Client, drifts []TopicDrift) error {
	byTopic := map[string][]kadm.AlterConfig{}
	var order []string
	for _, d := range drifts {
		if byTopic[d.Topic] == nil {
			order = append(order, d.Topic)
		}
		v := d.Want
		byTopic[d.Topic] = append(byTopic[d.Topic], kadm.AlterConfig{Op: kadm.SetConfig, Name: d.Key, Value: &v})
	}
	for _, t := range order {
		resp, err := adm.AlterTopicConfigs(ctx, byTopic[t], t)
		if err == nil {
			for _, r := range resp {
				if r.Err != nil {
					err = fmt.Errorf("%w %s", r.Err, r.ErrMessage)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("alter configs of topic %s: %w", t, err)
		}
	}
	return nil
}
