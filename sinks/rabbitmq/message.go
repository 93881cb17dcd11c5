package rabbitmqsink

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
)

// errValue is wrapped by errors about a record the sink cannot publish; they are
// permanent.
var errValue = errors.New("cannot publish record")

// template is a parsed routing key template.
type template struct{ sinkconf.Template }

// parseTemplate parses a routing key template; "{{" and "}}" are literal
// braces. Its literal text must leave room in AMQP's 255 bytes.
func parseTemplate(s string) (template, error) {
	t, err := sinkconf.ParseTemplate(s, "db", "table", "op", "key", "pk")
	if err != nil {
		return template{}, err
	}
	if n := len(t.Literals()); n > 255 {
		return template{}, fmt.Errorf("%q: longer than 255 bytes", s)
	}
	return template{t}, nil
}

// render fills the template in for a record.
func (t *template) render(rec *consumer.Record) string {
	db, tbl, pk := sinkconf.KeyParts(rec.Table, rec.Key)
	if rec.Key == rec.Table {
		pk = "" // a truncate's key names no row
	}
	return t.Render(db, tbl, string(rec.Op), rec.Key, pk)
}

// message builds the publishing of a record: body in the configured format,
// persistent, with the kanal headers. The routing key is capped at AMQP's 255
// bytes (a longer one is an error).
func (h *Handler) message(rec *consumer.Record, rk *template) (msg amqp.Publishing, key string, err error) {
	key = rk.render(rec)
	if len(key) > 255 {
		return msg, "", fmt.Errorf("%w: routing key of %d bytes (AMQP allows 255)", errValue, len(key))
	}
	seq := strconv.FormatUint(rec.Seq, 10)
	headers := amqp.Table{
		schemas.HeaderSeq: seq,
		schemas.HeaderOp:  string(rec.Op),
		HeaderKey:         rec.Key,
		HeaderTable:       rec.Table,
	}
	// The Kafka record's headers of the same names (docs/formats.md).
	if pos := rec.Header(schemas.HeaderPos); pos != "" {
		headers[schemas.HeaderPos] = pos
	} else if c := rec.Change; c != nil && c.Source.File != "" {
		headers[schemas.HeaderPos] = c.Source.File + ":" + strconv.FormatUint(uint64(c.Source.Pos), 10)
	}
	ts := rec.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	msg = amqp.Publishing{
		Headers:      headers,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    seq,
		Timestamp:    ts,
		Type:         string(rec.Op),
		AppId:        "kanal",
	}
	if rec.Tombstone {
		// The delete this tombstone follows is gone (compaction): all there is
		// to say is that the row with this key no longer exists.
		headers[HeaderTombstone] = "true"
		b := append([]byte(`{"op":"d","seq":`), seq...)
		b = append(b, `,"key":`...)
		b = schemas.AppendJSONString(b, rec.Key)
		msg.Body = append(b, `,"tombstone":true}`...)
		return msg, key, nil
	}
	c := rec.Change
	if c == nil {
		return msg, "", fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	switch h.cfg.Format {
	case FormatCanalJSON:
		msg.Body = canalJSON(c, ts)
	default:
		if rec.Raw != nil && rec.Raw.Value != nil && rec.Header(schemas.HeaderFormat) == schemas.FormatJSON {
			// The record already is the envelope of this one change.
			msg.Body = rec.Raw.Value
		} else if msg.Body, err = c.MarshalJSON(); err != nil {
			return msg, "", fmt.Errorf("%w: %v", errValue, err)
		}
	}
	return msg, key, nil
}

// canalJSON renders a change as a Canal FlatMessage: its id is the change's
// sequence, its ts the Kafka record's time.
func canalJSON(c *schemas.Change, ts time.Time) []byte {
	e := schemas.Envelope{Op: c.Op, Seq: c.Seq, Source: &c.Source, Columns: c.Columns, KeyFallback: c.KeyFallback,
		Before: rowSlice(c.Columns, c.Before), After: rowSlice(c.Columns, c.After)}
	return e.AppendCanalJSON(nil, int64(c.Seq), ts.UnixMilli())
}

func rowSlice(cols []schemas.Column, m map[string]any) []any {
	if m == nil {
		return nil
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = m[c.Name]
	}
	return out
}
