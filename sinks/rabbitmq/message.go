package rabbitmqsink

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// errValue is wrapped by errors about a record the sink cannot publish; they are
// permanent.
var errValue = errors.New("cannot publish record")

// template is a parsed routing key template: literal parts and placeholders,
// alternating, starting with a literal.
type template struct {
	lits  []string
	parts []string
}

func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i+1:], '}')
			if j < 0 {
				return t, fmt.Errorf("%q: unclosed '{'", s)
			}
			name := s[i+1 : i+1+j]
			switch name {
			case "db", "table", "op", "key", "pk":
			default:
				return t, fmt.Errorf("%q: unknown placeholder {%s} (want {db}, {table}, {op}, {key} or {pk})", s, name)
			}
			t.lits = append(t.lits, lit.String())
			lit.Reset()
			t.parts = append(t.parts, name)
			i += j + 1
		case c == '}':
			return t, fmt.Errorf("%q: unmatched '}' (write '}}' for a literal brace)", s)
		default:
			lit.WriteByte(c)
		}
	}
	t.lits = append(t.lits, lit.String())
	if n := len(strings.Join(t.lits, "")); n > 255 {
		return t, fmt.Errorf("%q: longer than 255 bytes", s)
	}
	return t, nil
}

// render fills the template in for a record.
func (t *template) render(rec *consumer.Record) string {
	if len(t.parts) == 0 {
		return t.lits[0]
	}
	db, tbl, _ := strings.Cut(rec.Table, ".")
	var b strings.Builder
	for i, p := range t.parts {
		b.WriteString(t.lits[i])
		switch p {
		case "db":
			b.WriteString(db)
		case "table":
			b.WriteString(tbl)
		case "op":
			b.WriteString(string(rec.Op))
		case "key":
			b.WriteString(rec.Key)
		case "pk":
			b.WriteString(strings.TrimPrefix(rec.Key, rec.Table+":"))
		}
	}
	b.WriteString(t.lits[len(t.parts)])
	return b.String()
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
		HeaderSeq:   seq,
		HeaderOp:    string(rec.Op),
		HeaderKey:   rec.Key,
		HeaderTable: rec.Table,
	}
	// The Kafka record's headers of the same names (docs/formats.md).
	if pos := rec.Header(HeaderPos); pos != "" {
		headers[HeaderPos] = pos
	} else if c := rec.Change; c != nil && c.Source.File != "" {
		headers[HeaderPos] = c.Source.File + ":" + strconv.FormatUint(uint64(c.Source.Pos), 10)
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
		if rec.Raw != nil && rec.Raw.Value != nil && rec.Header("kanal.format") == schemas.FormatJSON {
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
