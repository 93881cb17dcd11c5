package rabbitmqsink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
)

// TestRabbitMQ runs every check against one private broker (it takes seconds to
// start), in order; the last one restarts it.
func TestRabbitMQ(t *testing.T) {
	srv := testenv.RabbitMQ(t)
	t.Run("Conformance", func(t *testing.T) { conformance(t, srv) })
	t.Run("MessagesAndHeaders", func(t *testing.T) { messagesAndHeaders(t, srv) })
	t.Run("Truncate", func(t *testing.T) { truncate(t, srv) })
	t.Run("UnroutableDeadLetters", func(t *testing.T) { unroutable(t, srv) })
	t.Run("EndToEndConsumerKilled", func(t *testing.T) { endToEnd(t, srv) })
	t.Run("BrokerDown", func(t *testing.T) { brokerDown(t, srv) })
}

// conformance runs the consumertest suite. The sink's state is what a consumer of
// a queue bound to the exchange builds with the documented dedupe (drop a message
// whose kanal.seq is not above the key's last one); it also fails when a change
// arrives after a newer change of its key without having been applied.
func conformance(t *testing.T, srv *testenv.RabbitMQServer) {
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		cfg := config(srv.URL, "ct.*")
		q := bindQueue(t, srv.URL, cfg.Exchange, "#")
		h := newHandler(t, cfg)
		ch := amqptest.Channel(t, srv.URL)
		m := amqptest.NewModel()
		state := func(ctx context.Context) (map[string]map[string]string, error) {
			m.Add(t, amqptest.Drain(t, ch, q))
			return m.Rows, nil
		}
		return consumertest.Sink{Handler: h, State: state, Versioned: true}
	})
}

// messagesAndHeaders: routing key template, persistent delivery, headers, the
// kanal envelope and canal-json bodies.
func messagesAndHeaders(t *testing.T, srv *testenv.RabbitMQServer) {
	for _, format := range []string{rabbitmqsink.FormatJSON, rabbitmqsink.FormatCanalJSON} {
		t.Run(format, func(t *testing.T) {
			cfg := config(srv.URL, "t.*")
			cfg.Format = format
			cfg.RoutingKey = "cdc.{db}.{table}.{op}"
			q := bindQueue(t, srv.URL, cfg.Exchange, "cdc.t.orders.*")
			h := newHandler(t, cfg)
			r := rec("orders", schemas.OpUpdate, 42, 7, 3)
			r.Change.Before = map[string]any{"id": int64(7), "note": "old", "data": nil}
			handle(t, h, r)
			ch := amqptest.Channel(t, srv.URL)
			d, ok, err := ch.Get(q, true)
			if err != nil || !ok {
				t.Fatalf("get: %v %v", ok, err)
			}
			if d.RoutingKey != "cdc.t.orders.u" || d.DeliveryMode != amqp.Persistent || d.MessageId != "42" || d.ContentType != "application/json" {
				t.Errorf("routing key %q, delivery mode %d, message id %q, content type %q", d.RoutingKey, d.DeliveryMode, d.MessageId, d.ContentType)
			}
			for k, want := range map[string]string{"kanal.seq": "42", "kanal.op": "u", "kanal.pos": "binlog.000002:1042",
				"kanal.key": "t.orders:7", "kanal.table": "t.orders"} {
				if got, _ := d.Headers[k].(string); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			cs, err := schemas.Decode(format, d.Body)
			if err != nil || len(cs) != 1 {
				t.Fatalf("decode %s body %s: %v", format, d.Body, err)
			}
			c := cs[0]
			if c.Op != schemas.OpUpdate || c.Table() != "t.orders" || c.Key() != "t.orders:7" || c.After["note"] != "n42" {
				t.Errorf("decoded %+v", c)
			}
			if format == rabbitmqsink.FormatJSON && c.Seq != 42 {
				t.Errorf("envelope seq %d", c.Seq)
			}
			if format == rabbitmqsink.FormatCanalJSON && !strings.Contains(string(d.Body), `"type":"UPDATE"`) {
				t.Errorf("canal-json body %s", d.Body)
			}
		})
	}
}

// truncate: a truncate record is published like a change, op t: headers
// kanal.op t, kanal.key "<db>.<table>", its seq and position; {pk} renders
// empty (the key names no row); the body is the kanal envelope with op t, or
// Canal's TRUNCATE DDL message in canal-json.
func truncate(t *testing.T, srv *testenv.RabbitMQServer) {
	for _, format := range []string{rabbitmqsink.FormatJSON, rabbitmqsink.FormatCanalJSON} {
		t.Run(format, func(t *testing.T) {
			cfg := config(srv.URL, "t.*")
			cfg.Format = format
			cfg.RoutingKey = "cdc.{table}.{op}.{pk}"
			q := bindQueue(t, srv.URL, cfg.Exchange, "cdc.orders.#")
			h := newHandler(t, cfg)
			c := &schemas.Change{Op: schemas.OpTruncate, Seq: 50, Source: schemas.Source{Name: "src", File: "binlog.000002", Pos: 1050, DB: "t", Table: "orders"}}
			tr := consumer.Record{Topic: "kanal.t.orders", Partition: 1, Offset: 9, Key: c.Key(), Table: "t.orders", Op: schemas.OpTruncate,
				Seq: 50, Change: c, Timestamp: time.UnixMilli(1700000000000)}
			if err := h.Handle(ctxT(t), consumer.Batch{Topic: tr.Topic, Partition: 1, Records: []consumer.Record{rec("orders", schemas.OpCreate, 49, 7, 8), tr}}); err != nil {
				t.Fatal(err)
			}
			ch := amqptest.Channel(t, srv.URL)
			if _, ok, err := ch.Get(q, true); !ok || err != nil { // the create
				t.Fatalf("get: %v %v", ok, err)
			}
			d, ok, err := ch.Get(q, true)
			if err != nil || !ok {
				t.Fatalf("get the truncate: %v %v", ok, err)
			}
			if d.RoutingKey != "cdc.orders.t." || d.Type != "t" || d.MessageId != "50" {
				t.Errorf("routing key %q, type %q, message id %q", d.RoutingKey, d.Type, d.MessageId)
			}
			for k, want := range map[string]string{"kanal.seq": "50", "kanal.op": "t", "kanal.pos": "binlog.000002:1050",
				"kanal.key": "t.orders", "kanal.table": "t.orders"} {
				if got, _ := d.Headers[k].(string); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			cs, err := schemas.Decode(format, d.Body)
			if err != nil || len(cs) != 1 || cs[0].Op != schemas.OpTruncate || cs[0].Table() != "t.orders" || cs[0].Before != nil || cs[0].After != nil {
				t.Fatalf("decode %s body %s: %v %+v", format, d.Body, err, cs)
			}
			if format == rabbitmqsink.FormatJSON && cs[0].Seq != 50 {
				t.Errorf("envelope seq %d", cs[0].Seq)
			}
			if format == rabbitmqsink.FormatCanalJSON && !strings.Contains(string(d.Body), `"isDdl":true`) {
				t.Errorf("canal-json body %s", d.Body)
			}
			t.Logf("%s: %s", format, d.Body)
		})
	}
}

// unroutable: a mandatory message no queue is bound for fails its record with a
// permanent error naming table, key, offset and the broker's reason. While the
// Runner splits the batch, records the broker confirmed are not published again.
func unroutable(t *testing.T, srv *testenv.RabbitMQServer) {
	cfg := config(srv.URL, "t.*")
	q := bindQueue(t, srv.URL, cfg.Exchange, "t.orders")
	h := newHandler(t, cfg)
	recs := []consumer.Record{rec("orders", schemas.OpCreate, 1, 1, 10), rec("lost", schemas.OpCreate, 2, 1, 11), rec("orders", schemas.OpCreate, 3, 2, 12)}
	for i := range recs {
		recs[i].Topic = "kanal.t.mixed"
	}
	b := consumer.Batch{Topic: "kanal.t.mixed", Partition: 1, Records: recs}
	err := h.Handle(ctxT(t), b)
	if !consumer.IsPermanent(err) || !errors.Is(err, rabbitmqsink.ErrUnroutable) {
		t.Fatalf("Handle: %v (permanent %v), want a permanent ErrUnroutable", err, consumer.IsPermanent(err))
	}
	for _, want := range []string{"kanal.t.mixed/1", "table t.lost", `key "t.lost:1"`, "offset 11", "NO_ROUTE", `routing key "t.lost"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// The Runner's split: the first half, then the other. Confirmed records are
	// skipped, the returned one fails again at once.
	before := h.Stats()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: b.Topic, Partition: 1, Records: recs[:1]}); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: b.Topic, Partition: 1, Records: recs[1:2]}); !errors.Is(err, rabbitmqsink.ErrUnroutable) {
		t.Fatalf("the returned record alone: %v", err)
	}
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: b.Topic, Partition: 1, Records: recs[2:]}); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats(); s.Published != before.Published {
		t.Errorf("the split published %d messages again", s.Published-before.Published)
	}
	got := amqptest.Drain(t, amqptest.Channel(t, srv.URL), q)
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 {
		t.Errorf("queue holds %d messages %+v, want seq 1 and 3 once each", len(got), got)
	}
	// A batch after the failed one starts afresh.
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: b.Topic, Partition: 1, Records: []consumer.Record{rec("lost", schemas.OpUpdate, 4, 1, 13)}}); !errors.Is(err, rabbitmqsink.ErrUnroutable) {
		t.Fatalf("a new unroutable record: %v", err)
	}
}

// brokerDown: with the broker stopped, Handle retries with backoff, no message is
// lost, and once the broker is back the batch is confirmed; the durable queue
// holds every message.
func brokerDown(t *testing.T, srv *testenv.RabbitMQServer) {
	cfg := config(srv.URL, "t.*")
	cfg.Retry = rabbitmqsink.RetryConfig{MaxAttempts: 1000, InitialInterval: 50 * time.Millisecond, MaxInterval: 300 * time.Millisecond}
	q := bindQueue(t, srv.URL, cfg.Exchange, "#")
	h := newHandler(t, cfg)
	handle(t, h, rec("orders", schemas.OpCreate, 1, 1, 0)) // connected
	srv.Stop()
	var recs []consumer.Record
	for i := range 200 {
		recs = append(recs, rec("orders", schemas.OpCreate, uint64(2+i), int64(2+i), int64(1+i)))
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		done <- h.Handle(ctx, consumer.Batch{Topic: "kanal.t.orders", Records: recs})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for h.Stats().Retried < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no retries while the broker is down: %+v", h.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Handle returned while the broker was down: %v", err)
	default:
	}
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatalf("Handle after the broker came back: %v", err)
	}
	m := amqptest.NewModel()
	m.Add(t, amqptest.Drain(t, amqptest.Channel(t, srv.URL), q))
	for seq := uint64(1); seq <= 201; seq++ {
		if m.Applied[seq] != 1 {
			t.Fatalf("seq %d applied %d times, want once (%d messages received)", seq, m.Applied[seq], m.Received)
		}
	}
	t.Logf("stats %+v; %d messages received for 201 changes", h.Stats(), m.Received)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*rabbitmqsink.Config)
		want string
	}{
		{func(c *rabbitmqsink.Config) { c.URL = "" }, "url: required"},
		{func(c *rabbitmqsink.Config) { c.URL = "http://u:secret@h/" }, "url:"},
		{func(c *rabbitmqsink.Config) { c.ExchangeType = "x" }, "exchange_type:"},
		{func(c *rabbitmqsink.Config) { c.RoutingKey = "{db}.{column}" }, "routing_key:"},
		{func(c *rabbitmqsink.Config) { c.Format = "avro" }, "format:"},
		{func(c *rabbitmqsink.Config) { c.Window = 0 }, "window:"},
		{func(c *rabbitmqsink.Config) { c.Exchange = "" }, "exchange:"},
		{func(c *rabbitmqsink.Config) { c.Retry.MaxInterval = time.Millisecond }, "retry.max_interval:"},
		{func(c *rabbitmqsink.Config) { c.Tables[0].Match = "x" }, "tables[0].match:"},
		{func(c *rabbitmqsink.Config) { c.Tables[0].RoutingKey = "{" }, "tables[0].routing_key:"},
	} {
		cfg := config("amqp://u:secret@127.0.0.1:1/", "t.*")
		tc.mod(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, rabbitmqsink.ErrConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("want an error naming %q without the password, got %v", tc.want, err)
		}
	}
	cfg := config("amqp://u:secret@127.0.0.1:1/", "t.*")
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if s := cfg.LogValue().String(); strings.Contains(s, "secret") {
		t.Errorf("LogValue shows the password: %s", s)
	}
}
