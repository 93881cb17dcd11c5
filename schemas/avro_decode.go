package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"unsafe"

	"github.com/hamba/avro/v2"
)

// SchemaResolver finds the writer schema of an Avro record. The consumer gives
// one to its decoders (Decoder.Schemas); package schemastore has the
// implementations (the schemas topic, a Confluent-compatible registry).
type SchemaResolver interface {
	// SchemaByFingerprint returns the schema (Avro JSON) published in
	// SchemasTopic under fp (format avro).
	SchemaByFingerprint(ctx context.Context, fp uint64) (string, error)
	// SchemaByID returns the registry's schema with this id (format avro-confluent).
	SchemaByID(ctx context.Context, id int) (string, error)
}

var (
	// ErrSchemaNotFound is wrapped by resolver errors meaning the schema does
	// not exist: the record can never be decoded (the consumer dead-letters it).
	// Decoding errors wrap it together with ErrDecode.
	ErrSchemaNotFound = errors.New("writer schema not found")
	// ErrSchemaUnavailable is wrapped by decoding errors that are worth retrying:
	// the schema could not be looked up (registry or Kafka unreachable). Such
	// errors do not wrap ErrDecode.
	ErrSchemaUnavailable = errors.New("writer schema unavailable")
)

// avroSchemaKey names a writer schema: a fingerprint (avro) or a registry id
// (avro-confluent).
type avroSchemaKey struct {
	confluent bool
	id        uint64
}

func (k avroSchemaKey) String() string {
	if k.confluent {
		return fmt.Sprintf("schema id %d", k.id)
	}
	return "schema fingerprint " + FingerprintKey(k.id)
}

// maxCachedAvroPlans bounds a Decoder's compiled Avro schemas.
const maxCachedAvroPlans = 1024

type avroFormatDecoder struct {
	d         *Decoder
	confluent bool
}

func (a avroFormatDecoder) Decode(ctx context.Context, value []byte) ([]*Change, error) {
	format := FormatAvro
	if a.confluent {
		format = FormatAvroConfluent
	}
	key, body, err := avroHeader(value, a.confluent)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecode, format, err)
	}
	plan, err := a.d.avroPlan(ctx, key)
	if err != nil {
		return nil, err
	}
	c, err := plan.decode(body, a.d.Alias)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s (%s): %v", ErrDecode, format, plan.table, key, err)
	}
	return []*Change{c}, nil
}

// avroHeader splits a record value into its schema key and body.
func avroHeader(value []byte, confluent bool) (avroSchemaKey, []byte, error) {
	if confluent {
		if len(value) < 5 || value[0] != 0 {
			return avroSchemaKey{}, nil, errors.New("value does not start with the Confluent magic byte 0 and a schema id")
		}
		return avroSchemaKey{confluent: true, id: uint64(binary.BigEndian.Uint32(value[1:5]))}, value[5:], nil
	}
	if len(value) < 10 || value[0] != 0xc3 || value[1] != 0x01 {
		return avroSchemaKey{}, nil, errors.New("value does not start with the single-object marker C3 01 and a fingerprint")
	}
	return avroSchemaKey{id: binary.LittleEndian.Uint64(value[2:10])}, value[10:], nil
}

// avroPlan returns the compiled writer schema of key, resolving it when it is
// not cached.
func (d *Decoder) avroPlan(ctx context.Context, key avroSchemaKey) (*avroPlan, error) {
	if p, ok := d.avro[key]; ok {
		return p, nil
	}
	if d.Schemas == nil {
		return nil, fmt.Errorf("%w: %s: no schema resolver to look it up (consumers get one from kanal's Kafka settings)", ErrDecode, key)
	}
	var js string
	var err error
	if key.confluent {
		js, err = d.Schemas.SchemaByID(ctx, int(key.id))
	} else {
		js, err = d.Schemas.SchemaByFingerprint(ctx, key.id)
	}
	switch {
	case errors.Is(err, ErrSchemaNotFound):
		return nil, fmt.Errorf("%w: %w: %s: %v", ErrDecode, ErrSchemaNotFound, key, err)
	case err != nil:
		if !errors.Is(err, ErrSchemaUnavailable) {
			err = fmt.Errorf("%w: %s: %w", ErrSchemaUnavailable, key, err)
		}
		return nil, err
	}
	p, err := compileAvroPlan(js)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecode, key, err)
	}
	if d.avro == nil || len(d.avro) >= maxCachedAvroPlans {
		d.avro = map[avroSchemaKey]*avroPlan{}
	}
	d.avro[key] = p
	return p, nil
}

// Envelope fields as the plan reads them.
const (
	efSkip = iota
	efBefore
	efAfter
	efOp
	efSeq
	efSource
)

// avroField is one field of a record in the writer schema.
type avroField struct {
	which  int // efBefore…; for source fields the index into sourceFields
	schema avro.Schema
}

// avroPlan is a writer schema compiled for decoding kanal envelopes.
type avroPlan struct {
	table       string
	env         []avroField
	source      []avroField
	row         []avroColPlan
	rowNull     int // union branch of null in before/after
	cols        []Column
	keyFallback bool
}

// The reading of one column value.
type avroRead uint8

const (
	arInt avroRead = iota
	arUint
	arUintDecimal
	arDecimal
	arFloat
	arDouble
	arBitBytes
	arString
	arDecimalString
	arTimestamp
	arSet
	arBytes
)

type avroColPlan struct {
	name     string
	read     avroRead
	nullable bool
	nullIdx  int64
	scale    int
	fsp      int
}

var sourceFields = []string{"name", "server_id", "file", "pos", "gtid", "ts_ms", "db", "table", "row"}

func compileAvroPlan(js string) (*avroPlan, error) {
	s, err := avro.ParseWithCache(js, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("writer schema: %v", err)
	}
	env, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, errors.New("writer schema is not a record")
	}
	p := &avroPlan{}
	db, _ := env.Prop(avroPropDB).(string)
	table, _ := env.Prop(avroPropTable).(string)
	p.table = db + "." + table
	p.keyFallback, _ = env.Prop(avroPropKeyFallback).(bool)
	var seen [efSource + 1]bool
	for _, f := range env.Fields() {
		af := avroField{schema: f.Type()}
		switch f.Name() {
		case "before", "after":
			rec, nullIdx, err := nullableRecord(f.Type())
			if err != nil {
				return nil, fmt.Errorf("field %s: %v", f.Name(), err)
			}
			if p.row == nil {
				if p.row, p.cols, err = compileAvroRow(rec); err != nil {
					return nil, err
				}
				p.rowNull = nullIdx
			}
			af.which = efBefore
			if f.Name() == "after" {
				af.which = efAfter
			}
		case "op":
			af.which = efOp
		case "seq":
			af.which = efSeq
		case "source":
			rec, ok := derefSchema(f.Type()).(*avro.RecordSchema)
			if !ok {
				return nil, errors.New("field source is not a record")
			}
			for _, sf := range rec.Fields() {
				sa := avroField{which: -1, schema: sf.Type()}
				for i, n := range sourceFields {
					if n == sf.Name() {
						sa.which = i
					}
				}
				p.source = append(p.source, sa)
			}
			af.which = efSource
		}
		if seen[af.which] && af.which != efSkip {
			return nil, fmt.Errorf("field %s twice", f.Name())
		}
		seen[af.which] = true
		p.env = append(p.env, af)
	}
	if !seen[efBefore] || !seen[efAfter] || !seen[efOp] || !seen[efSeq] || !seen[efSource] {
		return nil, errors.New("writer schema is not a kanal envelope (before, after, op, seq, source)")
	}
	return p, nil
}

func derefSchema(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// nullableRecord checks that s is a union of null and a record.
func nullableRecord(s avro.Schema) (*avro.RecordSchema, int, error) {
	u, ok := s.(*avro.UnionSchema)
	if !ok || len(u.Types()) != 2 {
		return nil, 0, errors.New("not a union of null and a record")
	}
	for i, t := range u.Types() {
		if rec, ok := derefSchema(t).(*avro.RecordSchema); ok && u.Types()[1-i].Type() == avro.Null {
			return rec, 1 - i, nil
		}
	}
	return nil, 0, errors.New("not a union of null and a record")
}

func compileAvroRow(rec *avro.RecordSchema) ([]avroColPlan, []Column, error) {
	plans := make([]avroColPlan, len(rec.Fields()))
	cols := make([]Column, len(rec.Fields()))
	for i, f := range rec.Fields() {
		typ, _ := f.Prop(avroPropType).(string)
		if typ == "" {
			return nil, nil, fmt.Errorf("field %s has no %s property: not a kanal schema", f.Name(), avroPropType)
		}
		name, _ := f.Prop(avroPropColumn).(string)
		if name == "" {
			name = f.Name()
		}
		pk, _ := f.Prop(avroPropPK).(bool)
		cols[i] = Column{Name: name, Type: typ, PK: pk}
		cp := avroColPlan{name: name, nullIdx: -1}
		vt := f.Type()
		if u, ok := vt.(*avro.UnionSchema); ok {
			if len(u.Types()) != 2 {
				return nil, nil, fmt.Errorf("column %s: unions other than [null, T] are not kanal's", name)
			}
			for j, t := range u.Types() {
				if t.Type() == avro.Null {
					cp.nullIdx = int64(j)
					vt = u.Types()[1-j]
				}
			}
			if cp.nullIdx < 0 {
				return nil, nil, fmt.Errorf("column %s: unions other than [null, T] are not kanal's", name)
			}
			cp.nullable = true
		}
		var err error
		if cp.read, cp.scale, cp.fsp, err = avroReadOf(cols[i], vt); err != nil {
			return nil, nil, fmt.Errorf("column %s: %v", name, err)
		}
		plans[i] = cp
	}
	return plans, cols, nil
}

// avroReadOf decides how a column's values are read from the Avro type the
// writer used and the column's kanal type.
func avroReadOf(c Column, s avro.Schema) (avroRead, int, int, error) {
	kind := c.Kind()
	var logical avro.LogicalSchema
	if ls, ok := s.(avro.LogicalTypeSchema); ok {
		logical = ls.Logical()
	}
	switch s.Type() {
	case avro.Int, avro.Long:
		switch {
		case logical != nil && logical.Type() == avro.TimestampMicros:
			_, args, _ := typeArgs(c.Type)
			fsp := 0
			if len(args) == 1 {
				fsp = args[0]
			}
			if fsp < 0 || fsp > 6 {
				return 0, 0, 0, fmt.Errorf("timestamp fsp %d", fsp)
			}
			return arTimestamp, 0, fsp, nil
		case kind == KindInt || kind == KindYear:
			return arInt, 0, 0, nil
		case kind == KindUint || kind == KindBit:
			return arUint, 0, 0, nil
		}
	case avro.Float:
		if kind == KindFloat {
			return arFloat, 0, 0, nil
		}
	case avro.Double:
		if kind == KindDouble {
			return arDouble, 0, 0, nil
		}
	case avro.Bytes:
		if d, ok := logical.(*avro.DecimalLogicalSchema); ok {
			switch kind {
			case KindUint:
				if d.Scale() == 0 {
					return arUintDecimal, 0, 0, nil
				}
			case KindDecimal:
				return arDecimal, d.Scale(), 0, nil
			}
			break
		}
		switch kind {
		case KindBytes:
			return arBytes, 0, 0, nil
		case KindBit:
			return arBitBytes, 0, 0, nil
		}
	case avro.String:
		switch kind {
		case KindString:
			return arString, 0, 0, nil
		case KindDecimal:
			return arDecimalString, 0, 0, nil
		}
	case avro.Array:
		if a, ok := s.(*avro.ArraySchema); ok && a.Items().Type() == avro.String && kind == KindString {
			return arSet, 0, 0, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("avro type %s does not hold %s values", s.Type(), c.Type)
}

// avroReader reads Avro binary data from a byte slice. Lengths are checked
// against what is left, so a corrupt record cannot make it allocate more than
// the record's size.
type avroReader struct {
	b   []byte
	i   int
	err error
}

func (r *avroReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: "+format, append([]any{r.i}, args...)...)
	}
}

func (r *avroReader) long() int64 {
	var u uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.i >= len(r.b) {
			r.fail("truncated integer")
			return 0
		}
		c := r.b[r.i]
		r.i++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1)
		}
	}
	r.fail("integer longer than 10 bytes")
	return 0
}

func (r *avroReader) raw(n int) []byte {
	if n < 0 || n > len(r.b)-r.i {
		r.fail("length %d exceeds the %d bytes left", n, len(r.b)-r.i)
		return nil
	}
	b := r.b[r.i : r.i+n : r.i+n]
	r.i += n
	return b
}

func (r *avroReader) bytes() []byte { return r.raw(int(r.long())) }

// str returns a string value: a copy, or with alias a view of the input.
func (r *avroReader) str(alias bool) string {
	b := r.bytes()
	if alias {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

// skip skips a value of schema s.
func (r *avroReader) skip(s avro.Schema) {
	switch s.Type() {
	case avro.Null:
	case avro.Boolean:
		r.raw(1)
	case avro.Int, avro.Long, avro.Enum:
		r.long()
	case avro.Float:
		r.raw(4)
	case avro.Double:
		r.raw(8)
	case avro.String, avro.Bytes:
		r.bytes()
	case avro.Fixed:
		r.raw(s.(*avro.FixedSchema).Size())
	case avro.Ref:
		r.skip(s.(*avro.RefSchema).Schema())
	case avro.Record:
		for _, f := range s.(*avro.RecordSchema).Fields() {
			r.skip(f.Type())
		}
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		i := r.long()
		if i < 0 || int(i) >= len(types) {
			r.fail("union branch %d of %d", i, len(types))
			return
		}
		r.skip(types[i])
	case avro.Array, avro.Map:
		for r.err == nil {
			n := r.long()
			if n == 0 {
				return
			}
			if n < 0 {
				r.long() // block size in bytes
				n = -n
			}
			for ; n > 0 && r.err == nil; n-- {
				if s.Type() == avro.Map {
					r.bytes()
					r.skip(s.(*avro.MapSchema).Values())
				} else {
					r.skip(s.(*avro.ArraySchema).Items())
				}
			}
		}
	default:
		r.fail("cannot skip %s", s.Type())
	}
}

func (p *avroPlan) decode(body []byte, alias bool) (*Change, error) {
	r := &avroReader{b: body}
	c := &Change{Columns: p.cols, KeyFallback: p.keyFallback}
	for _, f := range p.env {
		switch f.which {
		case efBefore:
			c.Before = p.readRow(r, alias)
		case efAfter:
			c.After = p.readRow(r, alias)
		case efOp:
			c.Op = Op(r.str(false))
		case efSeq:
			c.Seq = uint64(r.long())
		case efSource:
			p.readSource(r, &c.Source, alias)
		default:
			r.skip(f.schema)
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	if r.i != len(r.b) {
		return nil, fmt.Errorf("%d bytes after the record", len(r.b)-r.i)
	}
	if err := checkImages(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *avroPlan) readSource(r *avroReader, s *Source, alias bool) {
	for _, f := range p.source {
		switch f.which {
		case 0:
			s.Name = r.str(alias)
		case 1:
			s.ServerID = uint32(r.long())
		case 2:
			s.File = r.str(alias)
		case 3:
			s.Pos = uint32(r.long())
		case 4:
			if u, ok := f.schema.(*avro.UnionSchema); ok {
				i := r.long()
				if i >= 0 && int(i) < len(u.Types()) && u.Types()[i].Type() == avro.String {
					s.GTID = r.str(alias)
				} else if i < 0 || int(i) >= len(u.Types()) || u.Types()[i].Type() != avro.Null {
					r.fail("source.gtid: union branch %d", i)
				}
			} else {
				s.GTID = r.str(alias)
			}
		case 5:
			s.TsMs = r.long()
		case 6:
			s.DB = r.str(alias)
		case 7:
			s.Table = r.str(alias)
		case 8:
			s.Row = int(r.long())
		default:
			r.skip(f.schema)
		}
	}
}

func (p *avroPlan) readRow(r *avroReader, alias bool) map[string]any {
	if b := r.long(); b == int64(p.rowNull) || r.err != nil {
		return nil
	} else if b != int64(1-p.rowNull) {
		r.fail("row union branch %d", b)
		return nil
	}
	row := make(map[string]any, len(p.row))
	for i := range p.row {
		cp := &p.row[i]
		if cp.nullable {
			b := r.long()
			if b == cp.nullIdx {
				row[cp.name] = nil
				continue
			}
			if b != 1-cp.nullIdx {
				r.fail("column %s: union branch %d", cp.name, b)
				return nil
			}
		}
		v, err := cp.value(r, alias)
		if err != nil {
			r.fail("column %s: %v", cp.name, err)
		}
		if r.err != nil {
			return nil
		}
		row[cp.name] = v
	}
	return row
}

func (cp *avroColPlan) value(r *avroReader, alias bool) (any, error) {
	switch cp.read {
	case arInt:
		return r.long(), nil
	case arUint:
		v := r.long()
		if v < 0 {
			return nil, fmt.Errorf("negative value %d for an unsigned column", v)
		}
		return uint64(v), nil
	case arUintDecimal:
		b := r.bytes()
		n := twosComplementBig(b)
		if n.Sign() < 0 || n.BitLen() > 64 {
			return nil, fmt.Errorf("%s is not an unsigned 64-bit value", n)
		}
		return n.Uint64(), nil
	case arDecimal:
		return Decimal(decimalText(twosComplementBig(r.bytes()), cp.scale)), nil
	case arFloat:
		b := r.raw(4)
		if b == nil {
			return nil, nil
		}
		return math.Float32frombits(binary.LittleEndian.Uint32(b)), nil
	case arDouble:
		b := r.raw(8)
		if b == nil {
			return nil, nil
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	case arBitBytes:
		b := r.bytes()
		if len(b) > 8 {
			return nil, fmt.Errorf("BIT value of %d bytes", len(b))
		}
		var v uint64
		for _, x := range b {
			v = v<<8 | uint64(x)
		}
		return v, nil
	case arString:
		return r.str(alias), nil
	case arDecimalString:
		return Decimal(r.str(false)), nil
	case arTimestamp:
		return string(formatTimestampMicros(nil, r.long(), cp.fsp)), nil
	case arSet:
		var labels []string
		for r.err == nil {
			n := r.long()
			if n == 0 {
				break
			}
			if n < 0 {
				r.long()
				n = -n
			}
			for ; n > 0 && r.err == nil; n-- {
				labels = append(labels, r.str(false))
			}
		}
		return strings.Join(labels, ","), nil
	case arBytes:
		b := r.bytes()
		if b == nil {
			return nil, nil
		}
		return append([]byte{}, b...), nil
	}
	return nil, fmt.Errorf("unknown read %d", cp.read)
}

// twosComplementBig reads big-endian two's complement bytes.
func twosComplementBig(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0] >= 0x80 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
	}
	return n
}

// decimalText renders an unscaled value as MySQL prints a DECIMAL of this
// scale: exactly scale fractional digits, "0" before the point when below one.
func decimalText(n *big.Int, scale int) string {
	neg := n.Sign() < 0
	digits := new(big.Int).Abs(n).String()
	if scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}
