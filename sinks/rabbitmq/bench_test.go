package rabbitmqsink_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// BenchmarkPublish measures changes/s through Handle — batches of 1000 changes,
// each a persistent message to a topic exchange with one bound queue, the batch
// done when every message is confirmed — against a plain amqp091 publisher
// doing the same (same bodies, same window, deferred confirms) in the same run:
// "plain-changes/s" is that ceiling and "x-plain" the ratio. The goal is
// 30k changes/s. The queue is purged between rounds so it does not grow.
//
//	go test -run x -bench Publish ./sinks/rabbitmq
func BenchmarkPublish(b *testing.B) {
	srv := testenv.RabbitMQ(b)
	cfg := config(srv.URL, "t.*")
	q := bindQueue(b, srv.URL, cfg.Exchange, "#")
	h := newHandler(b, cfg)
	admin := amqptest.Channel(b, srv.URL)
	pub := amqptest.Channel(b, srv.URL)
	if err := pub.Confirm(false); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	var seq uint64
	var applied, plain time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		recs := make([]consumer.Record, batch)
		for j := range recs {
			seq++
			recs[j] = rec("orders", schemas.OpUpdate, seq, int64(j), int64(seq))
		}
		start := time.Now()
		if err := h.Handle(context.Background(), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
			b.Fatal(err)
		}
		applied += time.Since(start)
		n += batch

		msgs := make([]amqptest.Publish, batch)
		for j := range recs {
			body, _ := recs[j].Change.MarshalJSON()
			msgs[j] = amqptest.Publish{Key: "t.orders", Msg: amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json",
				Body: body, Headers: amqp.Table{"kanal.seq": "1", "kanal.op": "u", "kanal.key": recs[j].Key}}}
		}
		start = time.Now()
		if err := amqptest.PublishConfirmed(context.Background(), pub, cfg.Exchange, batch, msgs); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
		if _, err := admin.QueuePurge(q, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/applied.Seconds(), "changes/s")
	b.ReportMetric(float64(n)/plain.Seconds(), "plain-changes/s")
	b.ReportMetric(plain.Seconds()/applied.Seconds(), "x-plain")
}
