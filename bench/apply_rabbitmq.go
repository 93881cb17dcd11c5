package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
)

// The exchange and queue of the RabbitMQ stages. The queue is bound to every
// routing key (the sink publishes mandatory messages, which need a queue), is
// purged before each run, and keeps at most amqpQueueMax messages (the oldest
// are dropped), so the full run's million persistent messages do not pile up.
const (
	amqpExchange = "kanal-bench"
	amqpQueue    = "kanal-bench"
	amqpQueueMax = 100_000
)

// amqpSetup declares the exchange and queue and purges the queue.
func amqpSetup(env *Env) (*testenv.RabbitMQServer, error) {
	srv, err := env.RabbitMQ()
	if err != nil {
		return nil, err
	}
	conn, err := amqp.Dial(srv.URL)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(amqpExchange, "topic", true, false, false, false, nil); err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(amqpQueue, true, false, false, false, amqp.Table{"x-max-length": int32(amqpQueueMax)}); err != nil {
		return nil, err
	}
	if err := ch.QueueBind(amqpQueue, "#", amqpExchange, false, nil); err != nil {
		return nil, err
	}
	if _, err := ch.QueuePurge(amqpQueue, false); err != nil {
		return nil, err
	}
	return srv, nil
}

// amqpPlain is RabbitMQ's own rate for the sink's messages: a plain amqp091
// program publishing the workload's row count of persistent, mandatory
// messages with publisher confirms (amqptest.PublishConfirmed: windows of the
// sink's default size, every confirmation awaited before the next window) —
// bodies are the sampled change records' values (the kanal JSON envelope, as
// the sink sends), headers kanal.seq, kanal.op and kanal.key — over one
// channel per partition of the workload topic, as many as the Runner applies
// at once.
func amqpPlain(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := amqpSetup(env)
	if err != nil {
		return 0, 0, err
	}
	samples, err := env.sample(ctx)
	if err != nil {
		return 0, 0, err
	}
	conn, err := amqp.Dial(srv.URL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	channels := int(producer.DefaultConfig().Kafka.Partitions)
	chs := make([]*amqp.Channel, channels)
	for i := range chs {
		if chs[i], err = conn.Channel(); err != nil {
			return 0, 0, err
		}
		if err := chs[i].Confirm(false); err != nil {
			return 0, 0, err
		}
	}
	window := rabbitmqsink.DefaultConfig().Window
	total := env.Workload.RowChanges
	errs := make([]error, channels)
	var wg sync.WaitGroup
	began := time.Now()
	for c := range channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Channel c publishes messages c, c+channels, …, a window at a time.
			msgs := make([]amqptest.Publish, 0, window)
			for i := c; i < total; {
				msgs = msgs[:0]
				for ; i < total && len(msgs) < window; i += channels {
					s := &samples[i%len(samples)]
					msgs = append(msgs, amqptest.Publish{Key: "bench.orders", Msg: amqp.Publishing{
						DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: s.value,
						Headers: amqp.Table{schemas.HeaderSeq: strconv.Itoa(i + 1), schemas.HeaderOp: string(s.change.Op),
							rabbitmqsink.HeaderKey: s.key}}})
				}
				if err := amqptest.PublishConfirmed(ctx, chs[c], amqpExchange, window, msgs); err != nil {
					errs[c] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	dur := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, fmt.Errorf("plain publisher: %w", err)
	}
	return uint64(total), dur, nil
}

// rabbitmqSink runs the RabbitMQ sink (default settings: kanal JSON bodies,
// persistent, mandatory, confirms in windows of 1000) in a consumer.Runner over
// the workload's topic, to the same exchange and queue as amqpPlain.
func rabbitmqSink(ctx context.Context, env *Env) (uint64, time.Duration, error) {
	srv, err := amqpSetup(env)
	if err != nil {
		return 0, 0, err
	}
	cfg := rabbitmqsink.DefaultConfig()
	cfg.URL = srv.URL
	cfg.Exchange = amqpExchange
	cfg.Tables = []rabbitmqsink.TableConfig{{Match: "bench.orders"}}
	h, err := rabbitmqsink.New(cfg, discardLog)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	rows, dur, err := timeHandler(ctx, env, "rabbitmq", h)
	if err == nil {
		if s := h.Stats(); s.Returned+s.Nacked > 0 {
			err = fmt.Errorf("the broker returned %d and nacked %d messages", s.Returned, s.Nacked)
		}
	}
	return rows, dur, err
}
