package rabbitmqsink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var names atomic.Int32

// config is a configuration for a fresh exchange on url publishing the given
// table patterns.
func config(url string, tables ...string) rabbitmqsink.Config {
	cfg := rabbitmqsink.DefaultConfig()
	cfg.URL = url
	cfg.Exchange = fmt.Sprintf("kanal-test-%d", names.Add(1))
	for _, m := range tables {
		cfg.Tables = append(cfg.Tables, rabbitmqsink.TableConfig{Match: m})
	}
	return cfg
}

func newHandler(t testing.TB, cfg rabbitmqsink.Config) *rabbitmqsink.Handler {
	t.Helper()
	h, err := rabbitmqsink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// channel opens a channel of a connection closed at the end of the test.
func channel(t testing.TB, url string) *amqp.Channel {
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

// bindQueue declares the exchange (as the handler does) and a durable queue
// bound to it with pattern, and returns the queue's name.
func bindQueue(t testing.TB, url, exchange, pattern string) string {
	t.Helper()
	ch := channel(t, url)
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("%s-q%d", exchange, names.Add(1))
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, pattern, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

// message is one received message, decoded.
type message struct {
	key, op string
	seq     uint64
	change  *schemas.Change // nil for a lone tombstone's message
	d       amqp.Delivery
}

// drain gets every message the queue holds now.
func drain(t testing.TB, ch *amqp.Channel, queue string) []message {
	t.Helper()
	var out []message
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		m := message{d: d, seq: rabbitmqsink.PublishedSeq(d.Headers)}
		m.key, _ = d.Headers[rabbitmqsink.HeaderKey].(string)
		m.op, _ = d.Headers[rabbitmqsink.HeaderOp].(string)
		if d.Headers[rabbitmqsink.HeaderTombstone] != "true" {
			cs, err := schemas.Decode(schemas.FormatJSON, d.Body)
			if err != nil || len(cs) != 1 {
				t.Fatalf("message %s of %s: %v (%d changes)", d.MessageId, m.key, err, len(cs))
			}
			m.change = cs[0]
		} else {
			var body struct {
				Key       string `json:"key"`
				Seq       uint64 `json:"seq"`
				Tombstone bool   `json:"tombstone"`
			}
			if err := json.Unmarshal(d.Body, &body); err != nil || body.Key != m.key || body.Seq != m.seq || !body.Tombstone {
				t.Fatalf("tombstone message %q: %v", d.Body, err)
			}
		}
		out = append(out, m)
	}
}

// model is what a consumer builds from the messages with the documented dedupe:
// per key, a message whose kanal.seq is not above the last one applied is a
// duplicate and dropped.
type model struct {
	rows    map[string]map[string]string
	last    map[string]uint64
	applied map[uint64]int // seq → times applied (must be 1)
	seen    map[string]map[uint64]bool
	// received counts every message, duplicates included.
	received int
}

func newModel() *model {
	return &model{rows: map[string]map[string]string{}, last: map[string]uint64{},
		applied: map[uint64]int{}, seen: map[string]map[uint64]bool{}}
}

// add applies messages in arrival order. A dropped message must be a duplicate
// of one applied before: otherwise a change of the key arrived after a newer one
// (per-key order broken) and dedupe would lose it.
func (m *model) add(t testing.TB, msgs []message) {
	t.Helper()
	for _, msg := range msgs {
		m.received++
		if m.seen[msg.key] == nil {
			m.seen[msg.key] = map[uint64]bool{}
		}
		if msg.seq <= m.last[msg.key] {
			if !m.seen[msg.key][msg.seq] && msg.change != nil {
				t.Errorf("key %s: seq %d arrived after seq %d and was never applied: per-key order broken", msg.key, msg.seq, m.last[msg.key])
			}
			continue
		}
		m.seen[msg.key][msg.seq] = true
		m.last[msg.key] = msg.seq
		if msg.change == nil {
			delete(m.rows, msg.key)
			continue
		}
		m.applied[msg.seq]++
		switch msg.change.Op {
		case schemas.OpDelete:
			delete(m.rows, msg.key)
		default:
			m.rows[msg.key] = cdctest.RenderRow(msg.change.After)
		}
	}
}

// handle hands recs to h as one batch of partition 0.
func handle(t testing.TB, h consumer.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}

var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "note", Type: "text"},
	{Name: "data", Type: "blob"},
}

// rec makes the record the Runner would deliver for a change of table t.<table>.
func rec(table string, op schemas.Op, seq uint64, id int64, off int64) consumer.Record {
	row := map[string]any{"id": id, "note": fmt.Sprint("n", seq), "data": []byte{0, 0xff}}
	c := &schemas.Change{Op: op, Seq: seq, Columns: orderCols,
		Source: schemas.Source{Name: "src", File: "binlog.000002", Pos: uint32(1000 + seq), DB: "t", Table: table}}
	if op == schemas.OpDelete {
		c.Before = row
	} else {
		c.After = row
	}
	return consumer.Record{Topic: "kanal.t." + table, Offset: off, Key: c.Key(), Table: c.Table(), Op: op, Seq: seq, Change: c,
		Timestamp: time.UnixMilli(1700000000000)}
}
