package kafkaconn

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureCompactedTopic creates topic with one partition and cleanup.policy
// compact if it does not exist yet (replicationFactor -1 is the brokers'
// default). Positions, producer status and consumer status are such topics:
// one current record per key, read whole at start.
func EnsureCompactedTopic(ctx context.Context, cl *kgo.Client, topic string, replicationFactor int16) error {
	compact := "compact"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, replicationFactor, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}
