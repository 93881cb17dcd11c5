package testenv

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaCluster is an in-process kfake cluster. kfake supports transactions,
// read_committed, consumer groups and compaction, but has no replication.
type KafkaCluster struct {
	// Brokers are the "127.0.0.1:port" seed addresses.
	Brokers []string
	// Cluster is the fake itself, for fault injection (ControlKey, Close,
	// ...). Closing it early is allowed and cleanup's second Close is a
	// no-op, but clients still open then take about 2s each to close.
	Cluster *kfake.Cluster
}

// Kafka starts a one-broker kfake cluster on a random 127.0.0.1 port and
// closes it when the test ends. The compaction check runs every 200ms
// (log.cleaner.backoff.ms) so tests can observe compacted topics; opts are
// applied after these defaults and may override them.
func Kafka(t T, opts ...kfake.Opt) *KafkaCluster {
	t.Helper()
	all := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "200"}),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("testenv: start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &KafkaCluster{Brokers: c.ListenAddrs(), Cluster: c}
}

// Client returns a franz-go client seeded with the cluster's brokers and
// closed when the test ends; opts are applied after the seeds.
func (k *KafkaCluster) Client(t T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// RefuseProduce makes the broker answer produce requests to topic (which must
// exist) with the error code, as a broker refusing the writes would (not
// authorized, policy violation), while the returned flag is set.
func (k *KafkaCluster) RefuseProduce(t T, topic string, code int16) *atomic.Bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := kadm.NewClient(k.Client(t)).ListTopics(ctx, topic)
	if err == nil {
		err = td[topic].Err
	}
	if err != nil {
		t.Fatalf("testenv: topic %s: %v", topic, err)
	}
	id := td[topic].ID
	var on atomic.Bool
	on.Store(true)
	k.Cluster.ControlKey(kmsg.Produce.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range req.Topics {
			hit = hit || rt.Topic == topic || rt.TopicID == id
		}
		if !on.Load() || !hit {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, p := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = p.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return &on
}
