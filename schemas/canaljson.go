package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrDDL is wrapped (together with ErrDecode) by DecodeCanalJSON and Decode when a
// canal-json message is a DDL statement or another message that carries no row
// change (type QUERY, CREATE, ALTER, ERASE, TRUNCATE, RENAME, CINDEX, DINDEX, GTID,
// XACOMMIT, XAROLLBACK, MHEARTBEAT). Consumers of Canal topics usually skip those:
//
//	changes, err := schemas.Decode(format, value)
//	if errors.Is(err, schemas.ErrDDL) { continue }
var ErrDDL = errors.New("kanal: canal-json message is not a row change")

// java.sql.Types codes used in canal-json's sqlType map.
const (
	javaBit         = -7
	javaTinyint     = -6
	javaBigint      = -5
	javaLongVarbin  = -4
	javaVarbinary   = -3
	javaBinary      = -2
	javaChar        = 1
	javaDecimal     = 3
	javaInteger     = 4
	javaSmallint    = 5
	javaReal        = 7
	javaDouble      = 8
	javaVarchar     = 12
	javaDate        = 91
	javaTime        = 92
	javaTimestamp   = 93
	javaOther       = 1111
	javaBlob        = 2004
	javaClob        = 2005
	canalTypeInsert = "INSERT"
	canalTypeUpdate = "UPDATE"
	canalTypeDelete = "DELETE"
)

// AppendCanalJSON appends e as one Alibaba Canal FlatMessage (the canal-json format
// Canal writes to Kafka with canal.mq.flatMessage=true) to dst:
//
//	{"data":[{"id":"1","name":"a"}],"database":"shop","es":1700000000000,"id":7,
//	 "isDdl":false,"mysqlType":{"id":"bigint","name":"varchar"},"old":null,
//	 "pkNames":["id"],"sql":"","sqlType":{"id":-5,"name":12},"table":"users",
//	 "ts":1700000000123,"type":"INSERT"}
//
// Fields come in Canal's (alphabetical) order. id is Canal's message id and tsMs the
// message build time ("ts"); "es" is the binlog event time, Source.TsMs.
//
// data holds one row: the row after the change, or for a delete the deleted row. old
// is set for updates only and holds the before values of the columns whose value
// changed (null when none did, as in Canal). pkNames lists the primary-key columns and
// is null for tables without a primary key (KeyFallback). OpRead becomes "INSERT".
//
// Values are rendered as Canal renders them, as strings or null: integers in decimal,
// DECIMAL as is, FLOAT and DOUBLE as Java's Float.toString and Double.toString do
// ("1.5", "100.0", "1.0E10"), YEAR zero as "0000", bytes (BINARY, VARBINARY, BLOB,
// GEOMETRY) decoded as ISO-8859-1 (each byte becomes the code point of the same value),
// DATETIME and TIME as they are, TIMESTAMP as "2006-01-02 15:04:05[.fff]" in UTC (Canal
// uses its JVM's time zone), ENUM and SET as their text (Canal writes the ENUM index and
// the SET bit mask; see docs/formats.md). sqlType follows Canal's java.sql.Types
// choices, including its quirks (see canalSQLType).
func (e *Envelope) AppendCanalJSON(dst []byte, id int64, tsMs int64) []byte {
	row, typ := e.After, canalTypeInsert
	switch e.Op {
	case OpUpdate:
		typ = canalTypeUpdate
	case OpDelete:
		row, typ = e.Before, canalTypeDelete
	}
	var db, table string
	var es int64
	if e.Source != nil {
		db, table, es = e.Source.DB, e.Source.Table, e.Source.TsMs
	}

	dst = append(dst, `{"data":`...)
	if row == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[', '{')
		for i, c := range e.Columns {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, c.Name)
			dst = append(dst, ':')
			dst = appendCanalValue(dst, c, rowValue(row, i))
		}
		dst = append(dst, '}', ']')
	}
	dst = append(dst, `,"database":`...)
	dst = appendJSONString(dst, db)
	dst = append(dst, `,"es":`...)
	dst = strconv.AppendInt(dst, es, 10)
	dst = append(dst, `,"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"isDdl":false,"mysqlType":{`...)
	for i, c := range e.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.Name)
		dst = append(dst, ':')
		dst = appendJSONString(dst, c.Type)
	}
	dst = append(dst, `},"old":`...)
	dst = e.appendCanalOld(dst)
	dst = append(dst, `,"pkNames":`...)
	if e.KeyFallback || !hasPK(e.Columns) {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		n := 0
		for _, c := range e.Columns {
			if c.PK {
				if n > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, c.Name)
				n++
			}
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"sql":"","sqlType":{`...)
	for i, c := range e.Columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.Name)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(canalSQLType(c, rowValue(row, i))), 10)
	}
	dst = append(dst, `},"table":`...)
	dst = appendJSONString(dst, table)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsMs, 10)
	dst = append(dst, `,"type":"`...)
	dst = append(dst, typ...)
	return append(dst, '"', '}')
}

// appendCanalOld writes the "old" list of an update: the before values of the changed
// columns, compared as Canal compares them (by their rendered text, NULL equal only to
// NULL); null when nothing changed or the change is not an update.
func (e *Envelope) appendCanalOld(dst []byte) []byte {
	if e.Op != OpUpdate || e.Before == nil || e.After == nil {
		return append(dst, "null"...)
	}
	start := len(dst)
	dst = append(dst, '[', '{')
	n := 0
	var bufB, bufA []byte
	for i, c := range e.Columns {
		b, a := rowValue(e.Before, i), rowValue(e.After, i)
		if b == nil && a == nil {
			continue
		}
		if b != nil && a != nil {
			bufB = appendCanalValue(bufB[:0], c, b)
			bufA = appendCanalValue(bufA[:0], c, a)
			if bytes.Equal(bufA, bufB) {
				continue
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, c.Name)
		dst = append(dst, ':')
		dst = appendCanalValue(dst, c, b)
		n++
	}
	if n == 0 {
		return append(dst[:start], "null"...)
	}
	return append(dst, '}', ']')
}

func rowValue(row []any, i int) any {
	if i < len(row) {
		return row[i]
	}
	return nil
}

func hasPK(cols []Column) bool {
	for _, c := range cols {
		if c.PK {
			return true
		}
	}
	return false
}

// fspOf returns the fractional-second precision in a type like "datetime(3)".
func fspOf(typ string) int {
	i := strings.IndexByte(typ, '(')
	j := strings.IndexByte(typ, ')')
	if i < 0 || j < i {
		return 0
	}
	n, err := strconv.Atoi(typ[i+1 : j])
	if err != nil || n < 0 || n > 9 {
		return 0
	}
	return n
}

// appendCanalValue writes one value as a canal-json string (or null).
func appendCanalValue(dst []byte, c Column, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case []byte:
		return appendLatin1JSON(dst, x)
	case string:
		if BaseType(c.Type) == "timestamp" {
			return appendJSONString(dst, canalTimestamp(x, fspOf(c.Type)))
		}
		return appendJSONString(dst, x)
	case Decimal:
		return appendJSONString(dst, string(x))
	case float32:
		dst = append(dst, '"')
		dst = appendJavaFloat(dst, float64(x), 32)
		return append(dst, '"')
	case float64:
		dst = append(dst, '"')
		dst = appendJavaFloat(dst, x, 64)
		return append(dst, '"')
	case int64:
		if x == 0 && c.Kind() == KindYear {
			return append(dst, `"0000"`...)
		}
	case int:
		if x == 0 && c.Kind() == KindYear {
			return append(dst, `"0000"`...)
		}
	}
	switch x := v.(type) {
	case int64:
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, x, 10)
	case uint64:
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, x, 10)
	case int:
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(x), 10)
	case int32:
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(x), 10)
	case uint32:
		dst = append(dst, '"')
		dst = strconv.AppendUint(dst, uint64(x), 10)
	case bool:
		if x {
			return append(dst, `"1"`...)
		}
		return append(dst, `"0"`...)
	default:
		return appendJSONString(dst, fmt.Sprint(x))
	}
	return append(dst, '"')
}

// canalTimestamp turns kanal's RFC 3339 UTC TIMESTAMP text into Canal's
// "2006-01-02 15:04:05[.fff]" form (in UTC), with fsp fractional digits. Text that is
// not RFC 3339 (the zero timestamp) is returned as it is.
func canalTimestamp(s string, fsp int) string {
	if len(s) >= 20 && s[10] == 'T' && s[len(s)-1] == 'Z' && !strings.ContainsAny(s[11:len(s)-1], "+-Z") {
		return s[:10] + " " + s[11:len(s)-1]
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	out := t.UTC().Format("2006-01-02 15:04:05.000000000")
	if fsp == 0 {
		return out[:19]
	}
	return out[:20+fsp]
}

// appendLatin1JSON writes b as a JSON string of the code points U+0000–U+00FF with
// the bytes' values: what Java's new String(bytes, ISO_8859_1) gives.
func appendLatin1JSON(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c >= utf8.RuneSelf:
			dst = append(dst, 0xC0|c>>6, 0x80|c&0x3F)
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// appendJavaFloat formats f as Java's Double.toString (bits 64) or Float.toString
// (bits 32) does (JDK 19+, shortest digits): plain notation with at least one
// fractional digit for 1e-3 <= |f| < 1e7 ("100.0", "0.001"), else computerized
// scientific notation ("1.0E7", "1.5E-5"); "NaN", "Infinity", "-Infinity".
func appendJavaFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	var buf [40]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, bits) // d.ddde±XX
	ePos := bytes.IndexByte(e, 'e')
	if ePos == 1 {
		// One significant digit: Java (JDK 19+) then picks, among the decimals of
		// length 1 or 2 that round to f, the one closest to f (Double.MIN_VALUE is
		// "4.9E-324", not "5.0E-324").
		e2 := strconv.AppendFloat(buf[16:16], f, 'e', 1, bits)
		if g, err := strconv.ParseFloat(string(e2), bits); err == nil && g == f {
			e = e2
			ePos = bytes.IndexByte(e, 'e')
		}
	}
	exp, _ := strconv.Atoi(string(e[ePos+1:]))
	digits := make([]byte, 0, ePos)
	for _, c := range e[:ePos] {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	for len(digits) > 1 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	if exp >= -3 && exp < 7 {
		if exp < 0 {
			dst = append(dst, '0', '.')
			for i := -1; i > exp; i-- {
				dst = append(dst, '0')
			}
			return append(dst, digits...)
		}
		intLen := exp + 1
		for i := 0; i < intLen; i++ {
			if i < len(digits) {
				dst = append(dst, digits[i])
			} else {
				dst = append(dst, '0')
			}
		}
		dst = append(dst, '.')
		if intLen >= len(digits) {
			return append(dst, '0')
		}
		return append(dst, digits[intLen:]...)
	}
	dst = append(dst, digits[0], '.')
	if len(digits) > 1 {
		dst = append(dst, digits[1:]...)
	} else {
		dst = append(dst, '0')
	}
	dst = append(dst, 'E')
	return strconv.AppendInt(dst, int64(exp), 10)
}

// canalSQLType returns the java.sql.Types code Canal reports for a column holding v.
// Like Canal it depends on the value: NULLs keep the type of the binlog column
// (BINARY -2, VARBINARY and TINYBLOB/TINYTEXT -3, other BLOB/TEXT -4, JSON 1111) where
// values are BLOB 2004 or TEXT 2005; an UNSIGNED value above the signed maximum moves
// one type up (TINYINT → SMALLINT → INTEGER, INT → BIGINT, BIGINT → DECIMAL). YEAR is
// VARCHAR 12, FLOAT is REAL 7. ENUM and SET are CHAR 1 because kanal writes their text.
func canalSQLType(c Column, v any) int {
	base := BaseType(c.Type)
	null := v == nil
	over := func(max uint64) bool {
		u, ok := v.(uint64)
		return ok && u > max
	}
	switch base {
	case "tinyint", "bool", "boolean":
		if over(math.MaxInt8) {
			return javaSmallint
		}
		return javaTinyint
	case "smallint":
		if over(math.MaxInt16) {
			return javaInteger
		}
		return javaSmallint
	case "mediumint":
		return javaInteger
	case "int", "integer":
		if over(math.MaxInt32) {
			return javaBigint
		}
		return javaInteger
	case "bigint":
		if over(math.MaxInt64) {
			return javaDecimal
		}
		return javaBigint
	case "decimal", "dec", "numeric", "fixed":
		return javaDecimal
	case "float":
		return javaReal
	case "double", "real":
		return javaDouble
	case "bit":
		return javaBit
	case "datetime", "timestamp":
		return javaTimestamp
	case "date":
		return javaDate
	case "time":
		return javaTime
	case "year", "varchar":
		return javaVarchar
	case "char", "enum", "set":
		return javaChar
	case "json":
		if null {
			return javaOther
		}
		return javaVarchar
	case "binary":
		if null {
			return javaBinary
		}
		return javaBlob
	case "varbinary", "tinyblob":
		if null {
			return javaVarbinary
		}
		return javaBlob
	case "blob", "mediumblob", "longblob":
		if null {
			return javaLongVarbin
		}
		return javaBlob
	case "tinytext":
		if null {
			return javaVarbinary
		}
		return javaClob
	case "text", "mediumtext", "longtext":
		if null {
			return javaLongVarbin
		}
		return javaClob
	}
	if c.Kind() == KindBytes { // geometry types
		if null {
			return javaBinary
		}
		return javaBlob
	}
	return javaOther
}

// canalMessage is a FlatMessage as it arrives; data, old and mysqlType keep their raw
// form so that their key order (the column order) survives.
type canalMessage struct {
	Data      json.RawMessage `json:"data"`
	Database  string          `json:"database"`
	Es        int64           `json:"es"`
	ID        int64           `json:"id"`
	IsDdl     bool            `json:"isDdl"`
	MysqlType json.RawMessage `json:"mysqlType"`
	Old       json.RawMessage `json:"old"`
	PkNames   []string        `json:"pkNames"`
	SQL       string          `json:"sql"`
	SQLType   map[string]int  `json:"sqlType"`
	Table     string          `json:"table"`
	Type      string          `json:"type"`
}

// canalField is one key/value of a data or old row; Null marks JSON null.
type canalField struct {
	Name  string
	Value string
	Null  bool
}

// DecodeCanalJSON decodes one Canal FlatMessage into its row changes, one Change per
// element of data, restoring kanal's value types from mysqlType (the inverse of
// AppendCanalJSON; see there and docs/formats.md for the mapping).
//
// Columns are taken in the order their keys appear in the first data row, followed by
// any further mysqlType keys; their Type is the mysqlType text (empty when absent:
// values then stay strings). The columns named in pkNames are the key; without
// pkNames every column is, and KeyFallback is set. For UPDATE the before image is the
// after image overlaid with the matching element of old. Source carries DB, Table,
// TsMs (from es) and Row (the index in data); Seq is 0 because canal-json has no
// per-row sequence (Canal's id numbers a batch, not a row), and "r" never appears:
// INSERT decodes as OpCreate.
//
// ENUM and SET values as Canal itself writes them (the 1-based ENUM index with sqlType
// 4, the SET bit mask with sqlType -7) are turned back into their labels when
// mysqlType lists the members ("enum('a','b')").
//
// A DDL or other non-row message returns an error wrapping ErrDDL; every error wraps
// ErrDecode and names the table when it is known.
func DecodeCanalJSON(data []byte) ([]*Change, error) {
	var m canalMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: canal-json: %v", ErrDecode, err)
	}
	table := m.Database + "." + m.Table
	var op Op
	switch m.Type {
	case canalTypeInsert:
		op = OpCreate
	case canalTypeUpdate:
		op = OpUpdate
	case canalTypeDelete:
		op = OpDelete
	default:
		if m.IsDdl || canalNonRowTypes[m.Type] {
			return nil, fmt.Errorf("%w: %w: canal-json: %s: %s message (isDdl=%t)", ErrDecode, ErrDDL, table, m.Type, m.IsDdl)
		}
		return nil, fmt.Errorf("%w: canal-json: %s: unknown type %q", ErrDecode, table, m.Type)
	}
	if m.IsDdl {
		return nil, fmt.Errorf("%w: %w: canal-json: %s: %s message with isDdl=true", ErrDecode, ErrDDL, table, m.Type)
	}
	rows, err := decodeCanalRows(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: canal-json: %s data: %v", ErrDecode, table, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: canal-json: %s: %s message without data", ErrDecode, table, m.Type)
	}
	olds, err := decodeCanalRows(m.Old)
	if err != nil {
		return nil, fmt.Errorf("%w: canal-json: %s old: %v", ErrDecode, table, err)
	}
	types, err := decodeCanalRows(m.MysqlType)
	if err != nil {
		return nil, fmt.Errorf("%w: canal-json: %s mysqlType: %v", ErrDecode, table, err)
	}
	var typeRow []canalField
	if len(types) > 0 {
		typeRow = types[0]
	}
	cols := canalColumns(rows[0], typeRow, m.PkNames)
	keyFallback := len(m.PkNames) == 0
	if keyFallback {
		for i := range cols {
			cols[i].PK = true
		}
	}

	changes := make([]*Change, 0, len(rows))
	for i, r := range rows {
		vals, err := canalRowValues(cols, r, m.SQLType)
		if err != nil {
			return nil, fmt.Errorf("%w: canal-json: %s data[%d]: %v", ErrDecode, table, i, err)
		}
		c := &Change{
			Op:          op,
			Source:      Source{DB: m.Database, Table: m.Table, TsMs: m.Es, Row: i},
			Columns:     cols,
			KeyFallback: keyFallback,
		}
		switch op {
		case OpCreate:
			c.After = vals
		case OpDelete:
			c.Before = vals
		case OpUpdate:
			c.After = vals
			c.Before = make(map[string]any, len(vals))
			for k, v := range vals {
				c.Before[k] = v
			}
			if i < len(olds) {
				old, err := canalRowValues(cols, olds[i], m.SQLType)
				if err != nil {
					return nil, fmt.Errorf("%w: canal-json: %s old[%d]: %v", ErrDecode, table, i, err)
				}
				for k, v := range old {
					c.Before[k] = v
				}
			}
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// canalNonRowTypes are Canal's EventType names of messages without row data.
var canalNonRowTypes = map[string]bool{
	"QUERY": true, "CREATE": true, "ALTER": true, "ERASE": true, "TRUNCATE": true,
	"RENAME": true, "CINDEX": true, "DINDEX": true, "GTID": true, "XACOMMIT": true,
	"XAROLLBACK": true, "MHEARTBEAT": true,
}

// canalColumns builds the column list: data's key order, then mysqlType's extra keys.
func canalColumns(first, types []canalField, pkNames []string) []Column {
	typeOf := make(map[string]string, len(types))
	for _, t := range types {
		typeOf[t.Name] = t.Value
	}
	pk := make(map[string]bool, len(pkNames))
	for _, n := range pkNames {
		pk[n] = true
	}
	cols := make([]Column, 0, len(first))
	seen := make(map[string]bool, len(first))
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			cols = append(cols, Column{Name: name, Type: typeOf[name], PK: pk[name]})
		}
	}
	for _, f := range first {
		add(f.Name)
	}
	for _, t := range types {
		add(t.Name)
	}
	return cols
}

// canalRowValues converts one row's text values to kanal's Go types. Columns not in
// the row (possible in old) are left out of the map.
func canalRowValues(cols []Column, row []canalField, sqlTypes map[string]int) (map[string]any, error) {
	byName := make(map[string]int, len(cols))
	for i, c := range cols {
		byName[c.Name] = i
	}
	out := make(map[string]any, len(row))
	for _, f := range row {
		i, ok := byName[f.Name]
		if !ok {
			return nil, fmt.Errorf("column %q is not in data", f.Name)
		}
		if f.Null {
			out[f.Name] = nil
			continue
		}
		v, err := canalValue(cols[i], f.Value, sqlTypes[f.Name])
		if err != nil {
			return nil, fmt.Errorf("column %q (%s): %v", f.Name, cols[i].Type, err)
		}
		out[f.Name] = v
	}
	return out, nil
}

// canalValue converts one canal-json text value back to kanal's representation.
func canalValue(c Column, s string, sqlType int) (any, error) {
	switch c.Kind() {
	case KindInt, KindYear:
		return strconv.ParseInt(s, 10, 64)
	case KindUint, KindBit:
		return strconv.ParseUint(s, 10, 64)
	case KindDecimal:
		return Decimal(s), nil
	case KindFloat:
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case KindDouble:
		return strconv.ParseFloat(s, 64)
	case KindBytes:
		return latin1Bytes(s)
	}
	switch BaseType(c.Type) {
	case "timestamp":
		return kanalTimestamp(s), nil
	case "enum":
		if sqlType == javaInteger {
			return enumLabel(c.Type, s)
		}
	case "set":
		if sqlType == javaBit {
			return setLabels(c.Type, s)
		}
	}
	return s, nil
}

// kanalTimestamp turns Canal's "2006-01-02 15:04:05[.fff]" (taken as UTC) into kanal's
// RFC 3339 UTC form; other text (the zero timestamp) stays as it is.
func kanalTimestamp(s string) string {
	if len(s) < 19 || s[10] != ' ' || strings.HasPrefix(s, "0000-00-00") {
		return s
	}
	if _, err := time.Parse("2006-01-02 15:04:05", s[:19]); err != nil {
		return s
	}
	return s[:10] + "T" + s[11:] + "Z"
}

// latin1Bytes inverts Java's new String(bytes, ISO_8859_1).
func latin1Bytes(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return nil, fmt.Errorf("binary value has code point U+%04X, not ISO-8859-1", r)
		}
		out = append(out, byte(r))
	}
	return out, nil
}

// typeMembers parses the quoted members of "enum('a','b')" or "set(...)"; a
// doubled quote inside a member stands for one quote.
func typeMembers(typ string) ([]string, bool) {
	i := strings.IndexByte(typ, '(')
	if i < 0 {
		return nil, false
	}
	var members []string
	s := typ[i+1:]
	for {
		if len(s) == 0 || s[0] != '\'' {
			return nil, false
		}
		var b strings.Builder
		j := 1
		for ; j < len(s); j++ {
			if s[j] == '\'' {
				if j+1 < len(s) && s[j+1] == '\'' {
					b.WriteByte('\'')
					j++
					continue
				}
				break
			}
			b.WriteByte(s[j])
		}
		if j >= len(s) {
			return nil, false
		}
		members = append(members, b.String())
		s = s[j+1:]
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, ")"):
			return members, true
		default:
			return nil, false
		}
	}
}

// enumLabel maps Canal's 1-based ENUM index to its label (0 is MySQL's invalid-value
// index, the empty string). Without a member list the index stays as text.
func enumLabel(typ, s string) (any, error) {
	members, ok := typeMembers(typ)
	if !ok {
		return s, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > len(members) {
		return nil, fmt.Errorf("enum index %q out of range (%d members)", s, len(members))
	}
	if n == 0 {
		return "", nil
	}
	return members[n-1], nil
}

// setLabels maps Canal's SET bit mask to "a,b". Without a member list the mask stays
// as text.
func setLabels(typ, s string) (any, error) {
	members, ok := typeMembers(typ)
	if !ok {
		return s, nil
	}
	mask, err := strconv.ParseUint(s, 10, 64)
	if err != nil || (len(members) < 64 && mask>>uint(len(members)) != 0) {
		return nil, fmt.Errorf("set mask %q out of range (%d members)", s, len(members))
	}
	var b strings.Builder
	for i, m := range members {
		if mask&(1<<uint(i)) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(m)
		}
	}
	return b.String(), nil
}

// decodeCanalRows decodes null, an object, or a list of objects whose values are
// strings or null, keeping key order. Numbers keep their JSON text and booleans
// become "1"/"0", so messages from Canal-compatible writers that use typed JSON
// values decode too; nested values keep their JSON text.
func decodeCanalRows(raw json.RawMessage) ([][]canalField, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == json.Delim('{') {
		row, err := decodeCanalObject(dec)
		if err != nil {
			return nil, err
		}
		return [][]canalField{row}, nil
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("want a list of objects, got %v", tok)
	}
	var rows [][]canalField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == nil { // a null row
			rows = append(rows, nil)
			continue
		}
		if tok != json.Delim('{') {
			return nil, fmt.Errorf("want an object, got %v", tok)
		}
		row, err := decodeCanalObject(dec)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, err
	}
	return rows, nil
}

// decodeCanalObject reads the members of an object whose '{' was consumed.
func decodeCanalObject(dec *json.Decoder) ([]canalField, error) {
	var row []canalField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("want a key, got %v", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		f := canalField{Name: name}
		switch {
		case bytes.Equal(v, []byte("null")):
			f.Null = true
		case v[0] == '"':
			if err := json.Unmarshal(v, &f.Value); err != nil {
				return nil, err
			}
		case bytes.Equal(v, []byte("true")):
			f.Value = "1"
		case bytes.Equal(v, []byte("false")):
			f.Value = "0"
		default:
			f.Value = string(v)
		}
		row = append(row, f)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	return row, nil
}

// Decode decodes a record value in the given format, as named by the kanal.format
// header: FormatJSON ("json") yields one change, FormatCanalJSON ("canal-json") one
// change per row of the message. With format "" the shape decides: a top-level "op"
// field means kanal JSON, "type" and "data" canal-json. Errors wrap ErrDecode (and
// ErrDDL for canal-json DDL messages); an unknown format is an error naming it.
func Decode(format string, value []byte) ([]*Change, error) {
	d := decoders.Get().(*Decoder)
	defer decoders.Put(d)
	return d.Decode(format, value)
}

// Decode is the package-level Decode with this decoder's cache.
func (d *Decoder) Decode(format string, value []byte) ([]*Change, error) {
	if format == "" {
		// What the fast path takes is kanal JSON (it has "op"): skip sniffing.
		if c, ok := d.fastJSON(value); ok {
			return []*Change{c}, nil
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(value, &top); err != nil {
			return nil, fmt.Errorf("%w: record value is not a JSON object: %v", ErrDecode, err)
		}
		_, hasOp := top["op"]
		_, hasType := top["type"]
		_, hasData := top["data"]
		switch {
		case hasOp:
			format = FormatJSON
		case hasType && hasData:
			format = FormatCanalJSON
		default:
			return nil, fmt.Errorf("%w: record value is neither kanal json nor canal-json", ErrDecode)
		}
	}
	switch format {
	case FormatJSON:
		c, err := d.DecodeJSON(value)
		if err != nil {
			return nil, err
		}
		return []*Change{c}, nil
	case FormatCanalJSON:
		return DecodeCanalJSON(value)
	}
	return nil, fmt.Errorf("%w: unknown format %q", ErrDecode, format)
}
