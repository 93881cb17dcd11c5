package amqptest

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publish is one message for PublishConfirmed.
type Publish struct {
	// Key is the routing key.
	Key string
	Msg amqp.Publishing
}

// PublishConfirmed publishes msgs to exchange as a plain amqp091 program with
// publisher confirms does, the sink's own pattern without its bookkeeping:
// mandatory, in windows of window messages whose deferred confirmations are
// all awaited before the next window. ch must be in confirm mode. A nack, a
// closed channel or ctx ending is an error.
func PublishConfirmed(ctx context.Context, ch *amqp.Channel, exchange string, window int, msgs []Publish) error {
	dcs := make([]*amqp.DeferredConfirmation, 0, window)
	for start := 0; start < len(msgs); start += window {
		dcs = dcs[:0]
		for i := start; i < min(start+window, len(msgs)); i++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, msgs[i].Key, true, false, msgs[i].Msg)
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			dcs = append(dcs, dc)
		}
		for _, dc := range dcs {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return fmt.Errorf("waiting for confirms: %w", err)
			}
			if !ok {
				return fmt.Errorf("the broker nacked message %d", dc.DeliveryTag)
			}
		}
	}
	return nil
}
