package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Format names of the Avro formats.
const (
	// FormatAvro is Avro single-object encoding: C3 01, the schema's 8-byte
	// CRC-64-AVRO fingerprint (little-endian), the body. Schemas are published to
	// SchemasTopic keyed by fingerprint.
	FormatAvro = "avro"
	// FormatAvroConfluent is the Confluent wire format: 0x00, the 4-byte
	// big-endian schema id of a schema registry, the body.
	FormatAvroConfluent = "avro-confluent"
)

// SchemaRegistry is a Confluent-compatible schema registry as the avro-confluent
// encoder uses it.
type SchemaRegistry interface {
	// Register registers schema (Avro JSON) under subject and returns its id.
	// It retries transient failures for a while; an error that retrying cannot
	// fix (the registry refuses the schema as incompatible) wraps
	// ErrSchemaRejected.
	Register(ctx context.Context, subject, schema string) (int, error)
}

// ErrSchemaRejected is wrapped by registration errors that retrying cannot fix.
var ErrSchemaRejected = errors.New("schema registry refused the schema")

// SubjectName is the registry subject of a topic's record values
// (Confluent's TopicNameStrategy).
func SubjectName(topic string) string { return topic + "-value" }

// avroEncoder writes both Avro formats; they differ in the header and in where
// the schema goes.
type avroEncoder struct {
	confluent bool
	prefix    string
	reg       SchemaRegistry
	// announced: fingerprints already written to the schemas topic by this
	// encoder (one producer session: any failure ends it, so nothing announced
	// here can have been rolled back).
	announced map[uint64]bool
	event     uint64
	src       []byte // the source of event, without the row index
}

func newAvroEncoder(cfg EncoderConfig) (Encoder, error) {
	return &avroEncoder{prefix: cfg.TopicPrefix, announced: map[uint64]bool{}}, nil
}

func newAvroConfluentEncoder(cfg EncoderConfig) (Encoder, error) {
	if cfg.Registry == nil {
		return nil, fmt.Errorf("format %s needs a schema registry (kafka.schema_registry.url)", FormatAvroConfluent)
	}
	return &avroEncoder{confluent: true, prefix: cfg.TopicPrefix, reg: cfg.Registry}, nil
}

func (e *avroEncoder) Format() string {
	if e.confluent {
		return FormatAvroConfluent
	}
	return FormatAvro
}

func (e *avroEncoder) Table(t *TableVersion) (TableEncoder, error) {
	s, err := newAvroTableSchema(t, !e.confluent)
	if err != nil {
		return nil, err
	}
	at := &avroTable{enc: e, schema: s, topic: t.Topic, table: t.DB + "." + t.Table, cols: t.Columns}
	if !e.confluent {
		at.fp = avroFingerprint(s.schema)
		at.header = binary.LittleEndian.AppendUint64([]byte{0xc3, 0x01}, at.fp)
	}
	return at, nil
}

// avroTable encodes one table version.
type avroTable struct {
	enc    *avroEncoder
	schema *avroTableSchema
	topic  string
	table  string
	cols   []Column
	fp     uint64 // avro: the schema fingerprint
	header []byte // what precedes every body; avro-confluent: set by Prepare
}

// Prepare publishes or registers the schema (TablePreparer).
func (t *avroTable) Prepare(ctx context.Context) ([]OutRecord, error) {
	e := t.enc
	if e.confluent {
		subject := SubjectName(t.topic)
		id, err := e.reg.Register(ctx, subject, t.schema.json)
		if err != nil {
			return nil, fmt.Errorf("register the schema of %s under subject %s: %w", t.table, subject, err)
		}
		t.header = binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
		return nil, nil
	}
	if e.announced[t.fp] {
		return nil, nil
	}
	e.announced[t.fp] = true
	return []OutRecord{{Topic: SchemasTopic(e.prefix), Key: []byte(FingerprintKey(t.fp)), Value: []byte(t.schema.json)}}, nil
}

// FingerprintKey is the key of a schema in SchemasTopic: the fingerprint as 16
// lower-case hex digits of its little-endian bytes, as they appear in the
// record after C3 01.
func FingerprintKey(fp uint64) string {
	return fmt.Sprintf("%016x", binary.LittleEndian.AppendUint64(nil, fp))
}

// SchemaJSON returns the Avro schema of a table version as avro publishes it;
// tools and tests use it.
func SchemaJSON(t *TableVersion) (string, error) {
	s, err := newAvroTableSchema(t, true)
	if err != nil {
		return "", err
	}
	return s.json, nil
}

func (t *avroTable) AppendValue(dst []byte, c *RowChange) ([]byte, error) {
	if t.header == nil {
		return dst, fmt.Errorf("%s: avro record encoded before its schema was registered", t.table)
	}
	dst = append(dst, t.header...)
	var err error
	if dst, err = t.appendRow(dst, c.Before); err != nil {
		return dst, fmt.Errorf("%s before: %w", t.table, err)
	}
	if dst, err = t.appendRow(dst, c.After); err != nil {
		return dst, fmt.Errorf("%s after: %w", t.table, err)
	}
	dst = appendAvroString(dst, string(c.Op))
	dst = appendAvroLong(dst, int64(c.Seq))
	e := t.enc
	if e.src == nil || c.Event != e.event {
		e.src = appendAvroSourcePrefix(e.src[:0], c.Source)
		e.event = c.Event
	}
	dst = append(dst, e.src...)
	return appendAvroLong(dst, int64(c.Source.Row)), nil
}

func appendAvroSourcePrefix(dst []byte, s *Source) []byte {
	dst = appendAvroString(dst, s.Name)
	dst = appendAvroLong(dst, int64(s.ServerID))
	dst = appendAvroString(dst, s.File)
	dst = appendAvroLong(dst, int64(s.Pos))
	if s.GTID == "" {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 2) // union branch 1
		dst = appendAvroString(dst, s.GTID)
	}
	dst = appendAvroLong(dst, s.TsMs)
	dst = appendAvroString(dst, s.DB)
	return appendAvroString(dst, s.Table)
}

func (t *avroTable) appendRow(dst []byte, row []Value) ([]byte, error) {
	if row == nil {
		return append(dst, 0), nil
	}
	if len(row) != len(t.cols) {
		return dst, fmt.Errorf("row has %d values, the schema %d columns", len(row), len(t.cols))
	}
	dst = append(dst, 2)
	var err error
	for i := range row {
		ac := &t.schema.cols[i]
		v := row[i]
		if ac.nullable {
			if v.kind == ValueNull {
				dst = append(dst, 0)
				continue
			}
			dst = append(dst, 2)
		} else if v.kind == ValueNull {
			return dst, fmt.Errorf("column %s: NULL in a NOT NULL column", t.cols[i].Name)
		}
		if dst, err = appendAvroValue(dst, ac, v); err != nil {
			return dst, fmt.Errorf("column %s (%s): %w", t.cols[i].Name, t.cols[i].Type, err)
		}
	}
	return dst, nil
}

func appendAvroValue(dst []byte, ac *avroColumn, v Value) ([]byte, error) {
	switch ac.w {
	case awInt:
		switch v.kind {
		case ValueInt:
			return appendAvroLong(dst, int64(v.bits)), nil
		case ValueUint:
			if v.bits > math.MaxInt64 {
				return dst, fmt.Errorf("%d does not fit a long", v.bits)
			}
			return appendAvroLong(dst, int64(v.bits)), nil
		}
	case awUintDecimal:
		if v.kind == ValueUint {
			return appendAvroBytes(dst, unsignedTwosComplement(v.bits)), nil
		}
	case awDecimal:
		if v.kind == ValueDecimal || v.kind == ValueString {
			return appendAvroDecimal(dst, v.str, ac.scale)
		}
	case awFloat:
		if v.kind == ValueFloat32 {
			return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(math.Float64frombits(v.bits)))), nil
		}
	case awDouble:
		if v.kind == ValueFloat64 {
			return binary.LittleEndian.AppendUint64(dst, v.bits), nil
		}
	case awBitBytes:
		if v.kind == ValueUint {
			dst = append(dst, 16) // length 8
			return binary.BigEndian.AppendUint64(dst, v.bits), nil
		}
	case awString:
		switch v.kind {
		case ValueString, ValueDecimal:
			return appendAvroText(dst, v.str), nil
		}
	case awTimestamp:
		if v.kind == ValueString {
			us, err := timestampMicros(v.str)
			if err != nil {
				return dst, err
			}
			return appendAvroLong(dst, us), nil
		}
	case awSet:
		if v.kind == ValueString {
			return appendAvroSet(dst, v.str), nil
		}
	case awBytes:
		if v.kind == ValueBytes {
			return appendAvroString(dst, v.str), nil
		}
	}
	return dst, fmt.Errorf("unexpected %s value", valueKindName(v.kind))
}

func valueKindName(k ValueKind) string {
	names := [...]string{"NULL", "integer", "unsigned integer", "float", "double", "decimal", "text", "bytes"}
	if int(k) < len(names) {
		return names[k]
	}
	return "unknown"
}

// appendAvroLong writes v zig-zag encoded as a variable-length integer (Avro's
// int and long).
func appendAvroLong(dst []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

func appendAvroString(dst []byte, s string) []byte {
	dst = appendAvroLong(dst, int64(len(s)))
	return append(dst, s...)
}

func appendAvroBytes(dst, b []byte) []byte {
	dst = appendAvroLong(dst, int64(len(b)))
	return append(dst, b...)
}

// appendAvroText writes text as an Avro string. Avro strings are UTF-8: each
// byte that is not part of valid UTF-8 becomes U+FFFD, exactly as the JSON
// envelope writes it, so both formats give the same Change.
func appendAvroText(dst []byte, s string) []byte {
	if isASCII(s) || utf8.ValidString(s) {
		return appendAvroString(dst, s)
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return appendAvroString(dst, b.String())
}

// isASCII reports whether s is plain ASCII, eight bytes at a time: most text
// values are, and utf8.ValidString was the Avro encoder's largest cost.
func isASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if load8(s, i)&swarHigh != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// appendAvroSet writes a SET's labels ("a,b"; labels cannot contain commas) as
// an array of strings.
func appendAvroSet(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, 0)
	}
	n := strings.Count(s, ",") + 1
	dst = appendAvroLong(dst, int64(n))
	for {
		label, rest, more := strings.Cut(s, ",")
		dst = appendAvroText(dst, label)
		if !more {
			break
		}
		s = rest
	}
	return append(dst, 0)
}

// unsignedTwosComplement is v as the shortest big-endian two's complement
// integer (9 bytes from 2^63 up: a leading zero keeps it positive).
func unsignedTwosComplement(v uint64) []byte {
	var buf [9]byte
	binary.BigEndian.PutUint64(buf[1:], v)
	i := 0
	for i < 8 && buf[i] == 0 && buf[i+1] < 0x80 {
		i++
	}
	return buf[i:]
}

// appendAvroDecimal writes decimal text ("-12.50") as the unscaled value of a
// decimal(p, scale): big-endian two's complement bytes.
func appendAvroDecimal(dst []byte, text string, scale int) ([]byte, error) {
	neg := strings.HasPrefix(text, "-")
	digits := strings.TrimPrefix(text, "-")
	intPart, frac, _ := strings.Cut(digits, ".")
	if len(frac) > scale {
		return dst, fmt.Errorf("%q has more than %d fractional digits", text, scale)
	}
	var buf [80]byte
	u := append(append(buf[:0], intPart...), frac...)
	for i := len(frac); i < scale; i++ {
		u = append(u, '0')
	}
	if len(u) == 0 {
		return dst, fmt.Errorf("%q is not a decimal number", text)
	}
	if len(u) <= 18 {
		var n int64
		for _, c := range u {
			if c < '0' || c > '9' {
				return dst, fmt.Errorf("%q is not a decimal number", text)
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return appendAvroBytes(dst, int64TwosComplement(n)), nil
	}
	n, ok := new(big.Int).SetString(string(u), 10)
	if !ok {
		return dst, fmt.Errorf("%q is not a decimal number", text)
	}
	if neg {
		n.Neg(n)
	}
	return appendAvroBytes(dst, bigTwosComplement(n)), nil
}

func int64TwosComplement(n int64) []byte {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	i := 0
	// Drop leading bytes that only repeat the sign.
	for i < 7 && (buf[i] == 0 && buf[i+1] < 0x80 || buf[i] == 0xff && buf[i+1] >= 0x80) {
		i++
	}
	return buf[i:]
}

func bigTwosComplement(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0] >= 0x80 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// -n = ^(n-1): take the magnitude minus one and invert it.
	m := new(big.Int).Neg(n)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0] < 0x80 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// timestampMicros parses a TIMESTAMP value as the producer writes it
// ("2038-01-19T03:14:07.999Z") into microseconds since the epoch. MySQL's zero
// timestamp ("0000-00-00 00:00:00[.000]") is 0: 1970-01-01 00:00:00 UTC itself is
// outside TIMESTAMP's range, so 0 is never a real value.
func timestampMicros(s string) (int64, error) {
	if strings.HasPrefix(s, "0000-00-00 00:00:00") && strings.Trim(s[19:], ".0") == "" {
		return 0, nil
	}
	bad := func() (int64, error) { return 0, fmt.Errorf("timestamp %q is not YYYY-MM-DDTHH:MM:SS[.ffffff]Z", s) }
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return bad()
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for _, c := range []byte(s[a:b]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	h, ok4 := num(11, 13)
	mi, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return bad()
	}
	us := 0
	if rest := s[19 : len(s)-1]; rest != "" {
		if rest[0] != '.' || len(rest) > 7 || len(rest) < 2 {
			return bad()
		}
		f, ok := num(20, len(s)-1)
		if !ok {
			return bad()
		}
		for i := len(rest) - 1; i < 6; i++ {
			f *= 10
		}
		us = f
	}
	days := daysFromCivil(y, mo, d)
	return ((days*24+int64(h))*60+int64(mi))*60*1e6 + int64(sec)*1e6 + int64(us), nil
}

// daysFromCivil counts days from 1970-01-01 to y-m-d in the proleptic Gregorian
// calendar (Howard Hinnant's algorithm), without time.Date's normalisation.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// formatTimestampMicros is the inverse of timestampMicros for a column of fsp
// fractional digits.
func formatTimestampMicros(dst []byte, us int64, fsp int) []byte {
	if us == 0 {
		dst = append(dst, "0000-00-00 00:00:00"...)
		if fsp > 0 {
			dst = append(dst, '.')
			dst = append(dst, "000000"[:fsp]...)
		}
		return dst
	}
	days := us / 86400e6
	rem := us % 86400e6
	if rem < 0 {
		rem += 86400e6
		days--
	}
	y, m, d := civilFromDays(days)
	dst = appendPaddedInt(dst, y, 4)
	dst = append(dst, '-')
	dst = appendPaddedInt(dst, m, 2)
	dst = append(dst, '-')
	dst = appendPaddedInt(dst, d, 2)
	dst = append(dst, 'T')
	sec := rem / 1e6
	dst = appendPaddedInt(dst, int(sec/3600), 2)
	dst = append(dst, ':')
	dst = appendPaddedInt(dst, int(sec/60%60), 2)
	dst = append(dst, ':')
	dst = appendPaddedInt(dst, int(sec%60), 2)
	if fsp > 0 {
		dst = append(dst, '.')
		frac := appendPaddedInt(nil, int(rem%1e6), 6)
		dst = append(dst, frac[:fsp]...)
	}
	return append(dst, 'Z')
}

func civilFromDays(z int64) (int, int, int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
}

func appendPaddedInt(dst []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}
