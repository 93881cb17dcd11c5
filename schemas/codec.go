package schemas

import (
	"context"
	"fmt"
	"time"
)

// The codec seam: a record value format is one entry of the formats table below,
// with an Encoder for the producer and a FormatDecoder for consumers. The producer
// chooses the encoder by kafka.format; a consumer chooses the decoder per record by
// its kanal.format header, so one topic may carry several formats across a
// migration. Adding a format means adding one entry here.

// Encoder writes changes as record values of one format. The producer makes one per
// connection and asks it for a TableEncoder for every table version it sees (every
// table map with a new shape): per-table work that repeats from row to row (column
// lists, schemas) is done there once. An Encoder and its TableEncoders are used by
// one goroutine.
type Encoder interface {
	// Format is the format's name: the kafka.format value and kanal.format header.
	Format() string
	// Table returns the encoder of one table version.
	Table(t *TableVersion) (TableEncoder, error)
}

// TableVersion is a table as one table map described it.
type TableVersion struct {
	DB, Table string
	// Topic is the Kafka topic the table's records go to (subjects of a schema
	// registry are named after it).
	Topic string
	// Columns in table order, as Change.Columns; the encoder may keep the slice.
	Columns []Column
	// Nullable tells, per column, whether the source column may hold NULL (nil:
	// every column may). Formats with typed schemas (Avro) make only these
	// nullable.
	Nullable []bool
	// KeyFallback: no primary key, every column forms the key.
	KeyFallback bool
}

// nullable reports whether column i may hold NULL.
func (t *TableVersion) nullable(i int) bool {
	return t.Nullable == nil || i >= len(t.Nullable) || t.Nullable[i]
}

// TableEncoder encodes the changes of one table version.
type TableEncoder interface {
	// AppendValue appends the record value of c to dst and returns it. An error
	// (a value the format cannot represent) names the column; dst is then to be
	// discarded.
	AppendValue(dst []byte, c *RowChange) ([]byte, error)
}

// TablePreparer is implemented by table encoders that have work to do before
// the first record of their table version is produced: register the schema
// with a registry (avro-confluent), or publish it to the schemas topic in the
// same Kafka transaction as that record (avro). The producer calls Prepare once
// per table version, inside the Kafka transaction that will hold its first
// record, and writes the records it returns ahead of that record.
type TablePreparer interface {
	Prepare(ctx context.Context) ([]OutRecord, error)
}

// OutRecord is a record an encoder asks the producer to write.
type OutRecord struct {
	Topic      string
	Key, Value []byte
}

// EncoderConfig is what formats other than JSON need to know to encode.
type EncoderConfig struct {
	// TopicPrefix is kafka.topic_prefix: avro publishes its schemas to
	// SchemasTopic(TopicPrefix).
	TopicPrefix string
	// Registry registers schemas for avro-confluent; required by that format.
	Registry SchemaRegistry
	// Source is source.name, the Source.Name of the changes: json-compact puts
	// it in its descriptors instead of every record (a change of another name
	// carries its own).
	Source string
}

// RowChange is one change in the producer's positional form: row images as values
// aligned with the table version's columns.
type RowChange struct {
	Op  Op
	Seq uint64
	// Source of the change. Changes with the same Event come from one rows event and
	// share everything in Source but Row, so encoders may reuse what they derived
	// from it.
	Source *Source
	Event  uint64
	// Before is nil for creates, After for deletes.
	Before, After []Value
}

// FormatDecoder decodes record values of one format into changes (several for
// formats that carry several rows per record). A FormatDecoder is used by one
// goroutine; errors wrap ErrDecode.
type FormatDecoder interface {
	Decode(ctx context.Context, value []byte) ([]*Change, error)
}

// format is one record value format.
type format struct {
	name       string
	newEncoder func(cfg EncoderConfig) (Encoder, error)
	// decoder returns the format's decoder bound to d's caches.
	decoder func(d *Decoder) FormatDecoder
	// registry: the format needs a schema registry (kafka.schema_registry).
	registry bool
	// schemasTopic: the format publishes to SchemasTopic.
	schemasTopic bool
}

// formats is the one place where formats are listed.
var formats = []format{
	{name: FormatJSON, newEncoder: func(EncoderConfig) (Encoder, error) { return &jsonEncoder{}, nil },
		decoder: func(d *Decoder) FormatDecoder { return jsonFormatDecoder{d} }},
	{name: FormatCanalJSON, newEncoder: func(EncoderConfig) (Encoder, error) { return &canalEncoder{now: time.Now}, nil },
		decoder: func(*Decoder) FormatDecoder { return canalFormatDecoder{} }},
	{name: FormatAvro, newEncoder: newAvroEncoder, schemasTopic: true,
		decoder: func(d *Decoder) FormatDecoder { return avroFormatDecoder{d: d} }},
	{name: FormatAvroConfluent, newEncoder: newAvroConfluentEncoder, registry: true,
		decoder: func(d *Decoder) FormatDecoder { return avroFormatDecoder{d: d, confluent: true} }},
	{name: FormatJSONCompact, newEncoder: newCompactEncoder, schemasTopic: true,
		decoder: func(d *Decoder) FormatDecoder { return compactFormatDecoder{d} }},
}

func lookupFormat(name string) *format {
	for i := range formats {
		if formats[i].name == name {
			return &formats[i]
		}
	}
	return nil
}

// Formats lists the names of the known formats.
func Formats() []string {
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = f.name
	}
	return names
}

// KnownFormat reports whether name is a known format.
func KnownFormat(name string) bool { return lookupFormat(name) != nil }

// FormatNeedsRegistry reports whether the named format registers its schemas
// with a schema registry (kafka.schema_registry must then be set).
func FormatNeedsRegistry(name string) bool {
	f := lookupFormat(name)
	return f != nil && f.registry
}

// FormatUsesSchemasTopic reports whether the named format publishes schemas or
// descriptors to SchemasTopic (the producer then creates that topic).
func FormatUsesSchemasTopic(name string) bool {
	f := lookupFormat(name)
	return f != nil && f.schemasTopic
}

// NewEncoder returns an encoder of the named format.
func NewEncoder(name string, cfg EncoderConfig) (Encoder, error) {
	f := lookupFormat(name)
	if f == nil {
		return nil, fmt.Errorf("unknown format %q (known: %v)", name, Formats())
	}
	return f.newEncoder(cfg)
}

// jsonEncoder writes the kanal JSON envelope. The source object of a rows event is
// encoded once for all of its rows (AppendSourcePrefixJSON).
type jsonEncoder struct {
	event     uint64
	srcPrefix []byte
}

func (e *jsonEncoder) Format() string { return FormatJSON }

func (e *jsonEncoder) Table(t *TableVersion) (TableEncoder, error) {
	return &jsonTable{enc: e, env: Envelope{Columns: t.Columns, ColumnsJSON: AppendColumnsJSON(nil, t.Columns),
		ColumnKeys: ColumnKeysJSON(t.Columns), KeyFallback: t.KeyFallback}}, nil
}

type jsonTable struct {
	enc *jsonEncoder
	env Envelope
}

func (t *jsonTable) AppendValue(dst []byte, c *RowChange) ([]byte, error) {
	e := t.enc
	if e.srcPrefix == nil || c.Event != e.event {
		e.srcPrefix = AppendSourcePrefixJSON(e.srcPrefix[:0], c.Source)
		e.event = c.Event
	}
	t.env.Op, t.env.Seq, t.env.Source = c.Op, c.Seq, c.Source
	return t.env.AppendJSONValues(dst, e.srcPrefix, c.Before, c.After), nil
}

// canalEncoder writes Canal FlatMessages, one row per message, numbered from 1 per
// encoder as Canal numbers its messages.
type canalEncoder struct {
	id         int64
	now        func() time.Time
	anyA, anyB []any
}

func (e *canalEncoder) Format() string { return FormatCanalJSON }

func (e *canalEncoder) Table(t *TableVersion) (TableEncoder, error) {
	return &canalTable{enc: e, env: Envelope{Columns: t.Columns, KeyFallback: t.KeyFallback}}, nil
}

type canalTable struct {
	enc *canalEncoder
	env Envelope
}

func (t *canalTable) AppendValue(dst []byte, c *RowChange) ([]byte, error) {
	e := t.enc
	e.id++
	if c.Op == OpTruncate {
		return appendCanalTruncate(dst, c.Source, e.id, e.now().UnixMilli()), nil
	}
	t.env.Op, t.env.Seq, t.env.Source = c.Op, c.Seq, c.Source
	t.env.Before, t.env.After = boxRow(&e.anyA, c.Before), boxRow(&e.anyB, c.After)
	dst = t.env.AppendCanalJSON(dst, e.id, e.now().UnixMilli())
	clear(e.anyA) // the boxed copies are garbage once encoded
	clear(e.anyB)
	t.env.Before, t.env.After = nil, nil
	return dst, nil
}

// boxRow returns row boxed into *buf (nil for a nil row), for encoders that take
// []any.
func boxRow(buf *[]any, row []Value) []any {
	if row == nil {
		return nil
	}
	if cap(*buf) < len(row) {
		*buf = make([]any, len(row))
	}
	out := (*buf)[:len(row)]
	for i, v := range row {
		out[i] = v.Any()
	}
	return out
}

type jsonFormatDecoder struct{ d *Decoder }

func (j jsonFormatDecoder) Decode(_ context.Context, value []byte) ([]*Change, error) {
	return j.d.decodeOneJSON(value)
}

type canalFormatDecoder struct{}

func (canalFormatDecoder) Decode(_ context.Context, value []byte) ([]*Change, error) {
	return DecodeCanalJSON(value)
}
