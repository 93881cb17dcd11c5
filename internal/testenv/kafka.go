package testenv

import (
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
