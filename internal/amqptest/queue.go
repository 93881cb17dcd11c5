package amqptest

import (
	"encoding/json"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
)

// Channel opens a channel of a connection to url closed at the end of the test.
func Channel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// BindQueue declares the exchange as the sink does (durable topic exchange)
// and a durable queue bound to it with pattern.
func BindQueue(t testing.TB, ch *amqp.Channel, exchange, queue, pattern string) {
	t.Helper()
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, pattern, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
}

// Message is one received message, decoded.
type Message struct {
	// Key, Op and Seq are the kanal.key, kanal.op and kanal.seq headers.
	Key, Op string
	Seq     uint64
	// Change is the body (kanal JSON); nil for a lone tombstone's message.
	Change   *schemas.Change
	Delivery amqp.Delivery
}

// Drain gets every message the queue holds now, acknowledging them.
func Drain(t testing.TB, ch *amqp.Channel, queue string) []Message {
	t.Helper()
	var out []Message
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		m := Message{Delivery: d, Seq: rabbitmqsink.PublishedSeq(d.Headers)}
		m.Key, _ = d.Headers[rabbitmqsink.HeaderKey].(string)
		m.Op, _ = d.Headers[schemas.HeaderOp].(string)
		if d.Headers[rabbitmqsink.HeaderTombstone] != "true" {
			cs, err := schemas.Decode(schemas.FormatJSON, d.Body)
			if err != nil || len(cs) != 1 {
				t.Fatalf("message %s of %s: %v (%d changes)", d.MessageId, m.Key, err, len(cs))
			}
			m.Change = cs[0]
		} else {
			var body struct {
				Key       string `json:"key"`
				Seq       uint64 `json:"seq"`
				Tombstone bool   `json:"tombstone"`
			}
			if err := json.Unmarshal(d.Body, &body); err != nil || body.Key != m.Key || body.Seq != m.Seq || !body.Tombstone {
				t.Fatalf("tombstone message %q: %v", d.Body, err)
			}
		}
		out = append(out, m)
	}
}
