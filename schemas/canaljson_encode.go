package schemas

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
// is null for tables without a primary key (KeyFallback). OpRead becomes "INSERT";
// OpTruncate becomes Canal's DDL message of type "TRUNCATE" (isDdl true, no rows).
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
	if e.Op == OpTruncate {
		var src Source
		if e.Source != nil {
			src = *e.Source
		}
		return appendCanalTruncate(dst, &src, id, tsMs)
	}
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

// appendCanalTruncate writes a truncate as Canal writes one: a DDL message of type
// TRUNCATE with the statement in sql (kanal writes a canonical statement, not the
// source's text).
func appendCanalTruncate(dst []byte, src *Source, id, tsMs int64) []byte {
	dst = append(dst, `{"data":null,"database":`...)
	dst = appendJSONString(dst, src.DB)
	dst = append(dst, `,"es":`...)
	dst = strconv.AppendInt(dst, src.TsMs, 10)
	dst = append(dst, `,"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"isDdl":true,"mysqlType":null,"old":null,"pkNames":null,"sql":`...)
	dst = appendJSONString(dst, "TRUNCATE TABLE "+QuoteIdent(src.DB)+"."+QuoteIdent(src.Table))
	dst = append(dst, `,"sqlType":null,"table":`...)
	dst = appendJSONString(dst, src.Table)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsMs, 10)
	return append(dst, `,"type":"TRUNCATE"}`...)
}

// QuoteIdent quotes a MySQL identifier with backquotes.
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
