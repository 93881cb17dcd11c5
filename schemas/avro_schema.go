package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/pkg/crc64"
)

// Avro record schemas: one per table version, derived from the table map's
// columns (docs/formats.md has the type table). The schema carries kanal's
// column metadata as properties (kanal.type, kanal.pk, kanal.column,
// kanal.key_fallback), so a decoder rebuilds the same Change.Columns as the JSON
// envelope's.
//
// Properties and logical types are not part of Avro's Parsing Canonical Form,
// which the single-object fingerprint covers: DECIMAL(10,2) and DECIMAL(10,3),
// or VARCHAR and TEXT, would get one fingerprint, and a reader could decode a
// record with the other version's scale. The avro format therefore puts a hash
// of the full schema into the envelope's namespace ("….v1a2b3c4d5e6f7a8b"), which
// the canonical form keeps. Avro's resolution rules compare unqualified record
// names, so versions stay resolvable against each other.

// Avro property names kanal sets.
const (
	avroPropType        = "kanal.type"         // field: Column.Type
	avroPropPK          = "kanal.pk"           // field: true on key columns
	avroPropColumn      = "kanal.column"       // field: the column name, when the field name had to differ
	avroPropKeyFallback = "kanal.key_fallback" // envelope: true for tables without a primary key
	avroPropDB          = "kanal.db"           // envelope: the source database
	avroPropTable       = "kanal.table"        // envelope: the source table
)

// avroWriter says how one column's values are written.
type avroWriter uint8

const (
	awInt         avroWriter = iota // int or long from a signed or unsigned integer
	awUintDecimal                   // BIGINT UNSIGNED: bytes, decimal(20,0)
	awDecimal                       // DECIMAL(p,s): bytes, decimal(p,s)
	awFloat                         // FLOAT
	awDouble                        // DOUBLE
	awBitBytes                      // BIT(64): 8 bytes, big-endian
	awString                        // text
	awTimestamp                     // TIMESTAMP: long, timestamp-micros
	awSet                           // SET: array of strings
	awBytes                         // binary strings
)

// avroColumn is a column's Avro mapping.
type avroColumn struct {
	w        avroWriter
	nullable bool
	scale    int // awDecimal
	fsp      int // awTimestamp
}

// typeArgs splits a kanal column type into its lower-case base name, the
// numbers in its parentheses and whether it is unsigned: "decimal(12,2)" →
// "decimal", [12 2], false.
func typeArgs(typ string) (base string, args []int, unsigned bool) {
	typ = strings.ToLower(typ)
	unsigned = strings.Contains(typ, " unsigned")
	base = typ
	if i := strings.IndexAny(base, "( "); i >= 0 {
		base = base[:i]
	}
	if i := strings.IndexByte(typ, '('); i >= 0 {
		if j := strings.IndexByte(typ[i:], ')'); j > 0 {
			for _, a := range strings.Split(typ[i+1:i+j], ",") {
				n, err := strconv.Atoi(strings.TrimSpace(a))
				if err != nil {
					return base, nil, unsigned // enum('a','b'): not numbers
				}
				args = append(args, n)
			}
		}
	}
	return base, args, unsigned
}

// avroColumnType returns the Avro type of a column (without the null branch) and
// how its values are written.
func avroColumnType(c Column) (avro.Schema, avroColumn, error) {
	base, args, _ := typeArgs(c.Type)
	prim := func(t avro.Type) avro.Schema { return avro.NewPrimitiveSchema(t, nil) }
	switch KindOf(c.Type) {
	case KindInt, KindYear:
		if base == "bigint" || base == "int8" {
			return prim(avro.Long), avroColumn{w: awInt}, nil
		}
		return prim(avro.Int), avroColumn{w: awInt}, nil
	case KindUint:
		switch base {
		case "bigint", "int8":
			return avro.NewPrimitiveSchema(avro.Bytes, avro.NewDecimalLogicalSchema(20, 0)), avroColumn{w: awUintDecimal}, nil
		case "int", "integer", "int4":
			return prim(avro.Long), avroColumn{w: awInt}, nil
		}
		return prim(avro.Int), avroColumn{w: awInt}, nil
	case KindDecimal:
		if len(args) != 2 || args[0] < 1 || args[1] < 0 || args[1] > args[0] {
			return nil, avroColumn{}, fmt.Errorf("column %s: type %q has no precision and scale", c.Name, c.Type)
		}
		return avro.NewPrimitiveSchema(avro.Bytes, avro.NewDecimalLogicalSchema(args[0], args[1])),
			avroColumn{w: awDecimal, scale: args[1]}, nil
	case KindFloat:
		return prim(avro.Float), avroColumn{w: awFloat}, nil
	case KindDouble:
		return prim(avro.Double), avroColumn{w: awDouble}, nil
	case KindBit:
		if len(args) == 1 && args[0] == 64 {
			return prim(avro.Bytes), avroColumn{w: awBitBytes}, nil
		}
		return prim(avro.Long), avroColumn{w: awInt}, nil
	case KindBytes:
		return prim(avro.Bytes), avroColumn{w: awBytes}, nil
	}
	switch base {
	case "timestamp":
		fsp := 0
		if len(args) == 1 {
			fsp = args[0]
		}
		return avro.NewPrimitiveSchema(avro.Long, avro.NewPrimitiveLogicalSchema(avro.TimestampMicros)),
			avroColumn{w: awTimestamp, fsp: fsp}, nil
	case "set":
		return avro.NewArraySchema(prim(avro.String)), avroColumn{w: awSet}, nil
	}
	return prim(avro.String), avroColumn{w: awString}, nil
}

// avroDefault is the default of a NOT NULL field of type s: the value MySQL
// gives existing rows when such a column is added without a default, so that a
// reader with a newer schema can read older records (and registries checking
// BACKWARD compatibility accept the new version).
func avroDefault(s avro.Schema) any {
	switch s.Type() {
	case avro.Int:
		return 0
	case avro.Long:
		return int64(0)
	case avro.Float:
		return float32(0)
	case avro.Double:
		return 0.0
	case avro.Bytes:
		if ls, ok := s.(*avro.PrimitiveSchema); ok && ls.Logical() != nil {
			return "\u0000" // decimal zero: one byte, 0x00
		}
		return ""
	case avro.Array:
		return []any{}
	}
	return ""
}

// avroName turns s into a valid Avro name ([A-Za-z_][A-Za-z0-9_]*).
func avroName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || (i > 0 && c >= '0' && c <= '9')) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// avroTableSchema is a table version's Avro schema.
type avroTableSchema struct {
	schema avro.Schema
	json   string // the full schema, properties included: what is published
	cols   []avroColumn
}

// newAvroTableSchema builds the envelope schema of t. With hashed set, the
// namespace ends in a hash of the full schema (see above).
func newAvroTableSchema(t *TableVersion, hashed bool) (*avroTableSchema, error) {
	ns := "kanal." + avroName(t.DB) + "." + avroName(t.Table)
	env, cols, err := buildAvroEnvelope(t, ns)
	if err != nil {
		return nil, err
	}
	full, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("avro schema of %s.%s: %w", t.DB, t.Table, err)
	}
	if hashed {
		sum := sha256.Sum256(full)
		if env, _, err = buildAvroEnvelope(t, ns+".v"+hex.EncodeToString(sum[:8])); err != nil {
			return nil, err
		}
		if full, err = json.Marshal(env); err != nil {
			return nil, fmt.Errorf("avro schema of %s.%s: %w", t.DB, t.Table, err)
		}
	}
	return &avroTableSchema{schema: env, json: string(full), cols: cols}, nil
}

func buildAvroEnvelope(t *TableVersion, ns string) (*avro.RecordSchema, []avroColumn, error) {
	fail := func(err error) (*avro.RecordSchema, []avroColumn, error) {
		return nil, nil, fmt.Errorf("avro schema of %s.%s: %w", t.DB, t.Table, err)
	}
	cols := make([]avroColumn, len(t.Columns))
	fields := make([]*avro.Field, 0, len(t.Columns))
	used := map[string]bool{}
	for i, c := range t.Columns {
		typ, ac, err := avroColumnType(c)
		if err != nil {
			return fail(err)
		}
		name := avroName(c.Name)
		for n := 2; used[name]; n++ {
			name = avroName(c.Name) + "_" + strconv.Itoa(n)
		}
		used[name] = true
		props := map[string]any{avroPropType: c.Type}
		if c.PK {
			props[avroPropPK] = true
		}
		if name != c.Name {
			props[avroPropColumn] = c.Name
		}
		opts := []avro.SchemaOption{avro.WithProps(props)}
		if t.nullable(i) {
			ac.nullable = true
			u, err := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), typ})
			if err != nil {
				return fail(err)
			}
			typ = u
			opts = append(opts, avro.WithDefault(nil))
		} else {
			opts = append(opts, avro.WithDefault(avroDefault(typ)))
		}
		f, err := avro.NewField(name, typ, opts...)
		if err != nil {
			return fail(fmt.Errorf("column %s: %w", c.Name, err))
		}
		cols[i] = ac
		fields = append(fields, f)
	}
	row, err := avro.NewRecordSchema("Row", ns, fields)
	if err != nil {
		return fail(err)
	}
	src, err := avroSourceSchema()
	if err != nil {
		return fail(err)
	}
	nullable := func(s avro.Schema) (avro.Schema, error) {
		return avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), s})
	}
	before, err := nullable(row)
	if err != nil {
		return fail(err)
	}
	after, err := nullable(avro.NewRefSchema(row))
	if err != nil {
		return fail(err)
	}
	var efields []*avro.Field
	for _, f := range []struct {
		name string
		typ  avro.Schema
		opts []avro.SchemaOption
	}{
		{"before", before, []avro.SchemaOption{avro.WithDefault(nil)}},
		{"after", after, []avro.SchemaOption{avro.WithDefault(nil)}},
		{"op", avro.NewPrimitiveSchema(avro.String, nil), nil},
		{"seq", avro.NewPrimitiveSchema(avro.Long, nil), nil},
		{"source", src, nil},
	} {
		ef, err := avro.NewField(f.name, f.typ, f.opts...)
		if err != nil {
			return fail(err)
		}
		efields = append(efields, ef)
	}
	props := map[string]any{avroPropDB: t.DB, avroPropTable: t.Table}
	if t.KeyFallback {
		props[avroPropKeyFallback] = true
	}
	env, err := avro.NewRecordSchema("Envelope", ns, efields, avro.WithProps(props))
	if err != nil {
		return fail(err)
	}
	return env, cols, nil
}

// avroSourceSchema is the schema of Source, in the order AppendValue writes it
// (row last, so the rest is encoded once per rows event).
func avroSourceSchema() (*avro.RecordSchema, error) {
	str := avro.NewPrimitiveSchema(avro.String, nil)
	long := avro.NewPrimitiveSchema(avro.Long, nil)
	gtid, err := avro.NewUnionSchema([]avro.Schema{avro.NewNullSchema(), str})
	if err != nil {
		return nil, err
	}
	var fields []*avro.Field
	for _, f := range []struct {
		name string
		typ  avro.Schema
		def  bool
	}{
		{"name", str, false}, {"server_id", long, false}, {"file", str, false}, {"pos", long, false},
		{"gtid", gtid, true}, {"ts_ms", long, false}, {"db", str, false}, {"table", str, false},
		{"row", avro.NewPrimitiveSchema(avro.Int, nil), false},
	} {
		var opts []avro.SchemaOption
		if f.def {
			opts = append(opts, avro.WithDefault(nil))
		}
		sf, err := avro.NewField(f.name, f.typ, opts...)
		if err != nil {
			return nil, err
		}
		fields = append(fields, sf)
	}
	return avro.NewRecordSchema("Source", "kanal", fields)
}

// avroFingerprint is the CRC-64-AVRO fingerprint of s's Parsing Canonical Form,
// as the Avro specification defines it (and Apache Avro's Java implementation,
// the reference, computes it). hamba/avro's own canonical form keeps logical
// types, which the specification strips, so its fingerprints differ from
// other implementations' for schemas with decimals or timestamps.
func avroFingerprint(s avro.Schema) uint64 {
	h := crc64.New()
	_, _ = h.Write([]byte(canonicalForm(s)))
	return h.Sum64()
}

// canonicalForm renders s in Parsing Canonical Form: full names, only the
// attributes that matter for parsing (type, name, fields, symbols, items,
// values, size), primitives in their simple form, each named type spelled out
// once and referred to by full name afterwards.
func canonicalForm(s avro.Schema) string {
	var b strings.Builder
	writeCanonical(&b, s, map[string]bool{})
	return b.String()
}

func writeCanonical(b *strings.Builder, s avro.Schema, seen map[string]bool) {
	quote := func(x string) {
		q, _ := json.Marshal(x)
		b.Write(q)
	}
	switch x := s.(type) {
	case *avro.RefSchema:
		quote(x.Schema().FullName())
	case *avro.RecordSchema:
		if seen[x.FullName()] {
			quote(x.FullName())
			return
		}
		seen[x.FullName()] = true
		b.WriteString(`{"name":`)
		quote(x.FullName())
		b.WriteString(`,"type":"record","fields":[`)
		for i, f := range x.Fields() {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"name":`)
			quote(f.Name())
			b.WriteString(`,"type":`)
			writeCanonical(b, f.Type(), seen)
			b.WriteByte('}')
		}
		b.WriteString(`]}`)
	case *avro.EnumSchema:
		if seen[x.FullName()] {
			quote(x.FullName())
			return
		}
		seen[x.FullName()] = true
		b.WriteString(`{"name":`)
		quote(x.FullName())
		b.WriteString(`,"type":"enum","symbols":`)
		syms, _ := json.Marshal(x.Symbols())
		b.Write(syms)
		b.WriteByte('}')
	case *avro.FixedSchema:
		if seen[x.FullName()] {
			quote(x.FullName())
			return
		}
		seen[x.FullName()] = true
		b.WriteString(`{"name":`)
		quote(x.FullName())
		b.WriteString(`,"type":"fixed","size":`)
		b.WriteString(strconv.Itoa(x.Size()))
		b.WriteByte('}')
	case *avro.ArraySchema:
		b.WriteString(`{"type":"array","items":`)
		writeCanonical(b, x.Items(), seen)
		b.WriteByte('}')
	case *avro.MapSchema:
		b.WriteString(`{"type":"map","values":`)
		writeCanonical(b, x.Values(), seen)
		b.WriteByte('}')
	case *avro.UnionSchema:
		b.WriteByte('[')
		for i, t := range x.Types() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, t, seen)
		}
		b.WriteByte(']')
	default:
		quote(string(s.Type()))
	}
}
