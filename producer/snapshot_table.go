package producer

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/schemas"
)

// snapTable is a table as a backfill reads it: the live schema from
// information_schema, turned into the table map the binlog would carry for it, so
// that newTableInfo — the binlog's own path — derives the columns, key and value
// decoders. Rows read by SELECT then become the same values, keys and envelope
// columns as rows read from the binlog.
type snapTable struct {
	db, table string
	ti        *tableInfo
	cols      []snapColumn
	// selectList is the SELECT's column list (see snapColumn.expr).
	selectList string
	// orderBy lists the key columns in key order.
	orderBy string
}

// snapColumn is what the SELECT needs beyond the decoder.
type snapColumn struct {
	name      string
	dataType  string // information_schema DATA_TYPE, lower case
	charset   string // CHARACTER_SET_NAME ("" for non-text)
	collation string
	// expr is how the column is selected: as it is, but ENUM, SET and BIT as
	// col+0 (the index, mask and number the binlog carries).
	expr string
}

// errUnsupportedColumn marks a column type a backfill cannot read faithfully.
var errUnsupportedColumn = errors.New("column type not supported by snapshots")

// quoteIdent quotes a MySQL identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// loadSnapTable reads the live definition of db.table. It runs inside the
// chunk's transaction (after its consistent snapshot began), so the shape is the
// one of the rows the chunk reads.
func loadSnapTable(ctx context.Context, q querier, text *sourceText, db, table string) (*snapTable, error) {
	rows, err := q.QueryContext(ctx, `SELECT c.COLUMN_NAME, LOWER(c.DATA_TYPE), LOWER(c.COLUMN_TYPE), c.IS_NULLABLE,
		IFNULL(c.NUMERIC_PRECISION, 0), IFNULL(c.NUMERIC_SCALE, 0), IFNULL(c.DATETIME_PRECISION, 0),
		IFNULL(c.CHARACTER_OCTET_LENGTH, 0), IFNULL(c.CHARACTER_SET_NAME, ''), IFNULL(c.COLLATION_NAME, ''), IFNULL(co.ID, 0)
		FROM information_schema.COLUMNS c LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME
		WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION`, db, table)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	tm := &replication.TableMapEvent{Schema: []byte(db), Table: []byte(table)}
	st := &snapTable{db: db, table: table}
	var nullable, unsigned []bool
	type enumCol struct {
		i       int
		set     bool
		charset string
	}
	var enums []enumCol
	// Read every column first: the connection takes no other query while the
	// rows are open (collationID below asks it).
	type colRow struct {
		name, dataType, colType, isNull, charset, collation string
		prec, scale, fsp, octets                            int64
		collID                                              uint64
	}
	var cols []colRow
	for rows.Next() {
		var c colRow
		if err := rows.Scan(&c.name, &c.dataType, &c.colType, &c.isNull, &c.prec, &c.scale, &c.fsp, &c.octets, &c.charset, &c.collation, &c.collID); err != nil {
			return nil, fmt.Errorf("read the columns of %s.%s: %w", db, table, err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s.%s: %w", db, table, err)
	}
	rows.Close()
	for _, cr := range cols {
		name, dataType, colType, isNull, charset, collation := cr.name, cr.dataType, cr.colType, cr.isNull, cr.charset, cr.collation
		prec, scale, fsp, octets, collID := cr.prec, cr.scale, cr.fsp, cr.octets, cr.collID
		i := len(st.cols)
		if collID == 0 && collation != "" {
			collID = collationID(ctx, q, collation, charset)
		}
		tp, meta, err := binlogType(dataType, colType, prec, scale, fsp, octets)
		if err != nil {
			return nil, fmt.Errorf("%s.%s column %s (%s): %w", db, table, name, colType, err)
		}
		c := snapColumn{name: name, dataType: dataType, charset: charset, collation: collation, expr: quoteIdent(name)}
		switch dataType {
		case "enum", "set", "bit":
			c.expr = "(" + quoteIdent(name) + "+0)"
		}
		st.cols = append(st.cols, c)
		tm.ColumnType = append(tm.ColumnType, tp)
		tm.ColumnMeta = append(tm.ColumnMeta, meta)
		tm.ColumnName = append(tm.ColumnName, []byte(name))
		nullable = append(nullable, isNull == "YES")
		unsigned = append(unsigned, strings.Contains(colType, "unsigned"))
		switch {
		case dataType == "enum" || dataType == "set":
			enums = append(enums, enumCol{i: i, set: dataType == "set", charset: charset})
			tm.EnumSetColumnCharset = append(tm.EnumSetColumnCharset, collID)
		case isCharacterType(tp), tp == mysql.MYSQL_TYPE_GEOMETRY && text.mariadb:
			// MariaDB's table maps list GEOMETRY columns with the text ones.
			if collID == 0 {
				collID = binaryCollation // binary strings have no collation in information_schema
			}
			tm.ColumnCharset = append(tm.ColumnCharset, collID)
		}
	}
	if len(st.cols) == 0 {
		return nil, fmt.Errorf("%w: %s.%s", errNoSuchTable, db, table)
	}
	n := len(st.cols)
	tm.ColumnCount = uint64(n)
	tm.NullBitmap = make([]byte, (n+7)/8)
	for i, ok := range nullable {
		if ok {
			tm.NullBitmap[i/8] |= 1 << (uint(i) % 8)
		}
	}
	// The signedness bitmap has one bit per numeric column, most significant first.
	var numeric []bool
	for i := range st.cols {
		if tm.IsNumericColumn(i) {
			numeric = append(numeric, unsigned[i])
		}
	}
	tm.SignednessBitmap = make([]byte, (len(numeric)+7)/8)
	for j, u := range numeric {
		if u {
			tm.SignednessBitmap[j/8] |= 0x80 >> (uint(j) % 8)
		}
	}
	// ENUM and SET labels in the column's character set, as the binlog has them
	// (information_schema holds them in utf8).
	for _, e := range enums {
		var def []byte
		expr := "COLUMN_TYPE"
		if e.charset != "" {
			expr = "CONVERT(COLUMN_TYPE USING " + e.charset + ")"
		}
		if err := q.QueryRowContext(ctx, "SELECT CAST("+expr+" AS BINARY) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
			db, table, st.cols[e.i].name).Scan(&def); err != nil {
			return nil, fmt.Errorf("read the labels of %s.%s column %s: %w", db, table, st.cols[e.i].name, err)
		}
		labels, err := parseEnumLabels(def)
		if err != nil {
			return nil, fmt.Errorf("%s.%s column %s: %w", db, table, st.cols[e.i].name, err)
		}
		if e.set {
			tm.SetStrValue = append(tm.SetStrValue, labels)
		} else {
			tm.EnumStrValue = append(tm.EnumStrValue, labels)
		}
	}
	pk, err := q.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`, db, table)
	if err != nil {
		return nil, fmt.Errorf("read the primary key of %s.%s: %w", db, table, err)
	}
	defer pk.Close()
	for pk.Next() {
		var name string
		if err := pk.Scan(&name); err != nil {
			return nil, fmt.Errorf("read the primary key of %s.%s: %w", db, table, err)
		}
		for i, c := range st.cols {
			if c.name == name {
				tm.PrimaryKey = append(tm.PrimaryKey, uint64(i))
			}
		}
	}
	if err := pk.Err(); err != nil {
		return nil, fmt.Errorf("read the primary key of %s.%s: %w", db, table, err)
	}
	ti, err := newTableInfo(tm, text)
	if err != nil {
		return nil, err
	}
	st.ti = ti
	exprs := make([]string, n)
	for i, c := range st.cols {
		exprs[i] = c.expr
	}
	st.selectList = strings.Join(exprs, ", ")
	order := make([]string, len(ti.pk))
	for i, c := range ti.pk {
		order[i] = quoteIdent(st.cols[c].name)
	}
	st.orderBy = strings.Join(order, ", ")
	return st, nil
}

var errNoSuchTable = errors.New("no such table")

// collationID finds the id of a collation information_schema.COLLATIONS does
// not list: MariaDB 10.10+ lists its UCA 14.0 collations' ids only in
// COLLATION_CHARACTER_SET_APPLICABILITY. Failing that, the character set's
// default collation stands in (decoding depends on the character set only).
func collationID(ctx context.Context, q querier, collation, charset string) uint64 {
	var id uint64
	if q.QueryRowContext(ctx, "SELECT ID FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE FULL_COLLATION_NAME = ?",
		collation).Scan(&id) == nil && id != 0 {
		return id
	}
	if q.QueryRowContext(ctx, "SELECT ID FROM information_schema.COLLATIONS WHERE CHARACTER_SET_NAME = ? AND IS_DEFAULT = 'Yes'",
		charset).Scan(&id) == nil {
		return id
	}
	return 0
}

// querier is what loadSnapTable needs of a connection or transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func isCharacterType(tp byte) bool {
	switch tp {
	case mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BLOB:
		return true
	}
	return false
}

// binlogType returns the type code and metadata a table map carries for a column
// (see go-mysql's TableMapEvent.decodeMeta and MySQL's Field::save_field_metadata).
func binlogType(dataType, colType string, prec, scale, fsp, octets int64) (byte, uint16, error) {
	switch dataType {
	case "tinyint", "bool", "boolean":
		return mysql.MYSQL_TYPE_TINY, 0, nil
	case "smallint":
		return mysql.MYSQL_TYPE_SHORT, 0, nil
	case "mediumint":
		return mysql.MYSQL_TYPE_INT24, 0, nil
	case "int", "integer":
		return mysql.MYSQL_TYPE_LONG, 0, nil
	case "bigint":
		return mysql.MYSQL_TYPE_LONGLONG, 0, nil
	case "decimal", "numeric":
		return mysql.MYSQL_TYPE_NEWDECIMAL, uint16(prec)<<8 | uint16(scale), nil
	case "float":
		return mysql.MYSQL_TYPE_FLOAT, 4, nil
	case "double", "real", "double precision":
		return mysql.MYSQL_TYPE_DOUBLE, 8, nil
	case "bit":
		return mysql.MYSQL_TYPE_BIT, uint16(prec/8)<<8 | uint16(prec%8), nil
	case "date":
		return mysql.MYSQL_TYPE_DATE, 0, nil
	case "datetime":
		return mysql.MYSQL_TYPE_DATETIME2, uint16(fsp), nil
	case "timestamp":
		return mysql.MYSQL_TYPE_TIMESTAMP2, uint16(fsp), nil
	case "time":
		return mysql.MYSQL_TYPE_TIME2, uint16(fsp), nil
	case "year":
		return mysql.MYSQL_TYPE_YEAR, 0, nil
	case "char", "binary":
		return mysql.MYSQL_TYPE_STRING, fixedStringMeta(mysql.MYSQL_TYPE_STRING, int(octets)), nil
	case "varchar", "varbinary":
		return mysql.MYSQL_TYPE_VARCHAR, uint16(octets), nil
	case "tinytext", "tinyblob":
		return mysql.MYSQL_TYPE_BLOB, 1, nil
	case "text", "blob":
		return mysql.MYSQL_TYPE_BLOB, 2, nil
	case "mediumtext", "mediumblob":
		return mysql.MYSQL_TYPE_BLOB, 3, nil
	case "longtext", "longblob":
		return mysql.MYSQL_TYPE_BLOB, 4, nil
	case "enum":
		packLen := uint16(1)
		if n := countEnumLabels(colType); n > 255 {
			packLen = 2
		}
		return mysql.MYSQL_TYPE_STRING, uint16(mysql.MYSQL_TYPE_ENUM)<<8 | packLen, nil
	case "set":
		size := (countEnumLabels(colType) + 7) / 8
		if size > 4 {
			size = 8
		}
		return mysql.MYSQL_TYPE_STRING, uint16(mysql.MYSQL_TYPE_SET)<<8 | uint16(size), nil
	case "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
		"geometrycollection", "geomcollection":
		return mysql.MYSQL_TYPE_GEOMETRY, 4, nil
	}
	// MySQL's JSON (a binary format in the binlog), MariaDB's INET4/INET6/UUID
	// (binary in the binlog, formatted text in a SELECT), VECTOR: a SELECT cannot
	// reproduce the binlog's value.
	return 0, 0, fmt.Errorf("%w: %s", errUnsupportedColumn, dataType)
}

// fixedStringMeta packs a CHAR/BINARY column's type and byte length the way the
// binlog does (lengths above 255 borrow two bits of the type byte).
func fixedStringMeta(real byte, length int) uint16 {
	b0 := real ^ byte((length&0x300)>>4)
	return uint16(b0)<<8 | uint16(length&0xff)
}

// countEnumLabels counts the labels of "enum('a','b')" / "set(…)".
func countEnumLabels(colType string) int {
	labels, err := parseEnumLabels([]byte(colType))
	if err != nil {
		return 0
	}
	return len(labels)
}

// parseEnumLabels splits "enum('a','it”s')" into its labels.
func parseEnumLabels(def []byte) ([][]byte, error) {
	open := strings.IndexByte(string(def), '(')
	if open < 0 || len(def) == 0 || def[len(def)-1] != ')' {
		return nil, fmt.Errorf("cannot read the labels of %q", def)
	}
	body := def[open+1 : len(def)-1]
	var labels [][]byte
	for i := 0; i < len(body); {
		if body[i] == ',' {
			i++
			continue
		}
		if body[i] != '\'' {
			return nil, fmt.Errorf("cannot read the labels of %q", def)
		}
		var label []byte
		i++
		for ; i < len(body); i++ {
			if body[i] == '\'' {
				if i+1 < len(body) && body[i+1] == '\'' {
					label = append(label, '\'')
					i++
					continue
				}
				break
			}
			label = append(label, body[i])
		}
		i++ // the closing quote
		if label == nil {
			label = []byte{}
		}
		labels = append(labels, label)
	}
	return labels, nil
}

// keyLiteral renders a key column's value, as the chunk SELECT printed it (raw,
// in the column's character set), as an SQL literal that compares the way the
// column orders: numbers as numbers, text converted into the column's character
// set and collation, bytes as hex.
func (st *snapTable) keyLiteral(col int, raw []byte) (string, error) {
	c := &st.cols[col]
	switch c.dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "bit", "year", "enum", "set":
		if !isDigits(raw, false, false) {
			return "", fmt.Errorf("unexpected key value %q for %s column %s", raw, c.dataType, c.name)
		}
		return string(raw), nil
	case "decimal", "numeric":
		if !isDigits(raw, true, false) {
			return "", fmt.Errorf("unexpected key value %q for %s column %s", raw, c.dataType, c.name)
		}
		return string(raw), nil
	case "float", "double", "real":
		// The shortest text that reads back as the same FLOAT or DOUBLE; cast to
		// the column's type so that the comparison is exact.
		if !isDigits(raw, true, true) {
			return "", fmt.Errorf("unexpected key value %q for %s column %s", raw, c.dataType, c.name)
		}
		if c.dataType == "float" {
			return "CAST(" + string(raw) + " AS FLOAT)", nil
		}
		return "CAST(" + string(raw) + " AS DOUBLE)", nil
	case "date", "datetime", "timestamp", "time":
		for _, b := range raw {
			if !(b >= '0' && b <= '9' || b == '-' || b == ':' || b == ' ' || b == '.') {
				return "", fmt.Errorf("unexpected key value %q for %s column %s", raw, c.dataType, c.name)
			}
		}
		return "'" + string(raw) + "'", nil
	}
	lit := "X'" + hex.EncodeToString(raw) + "'"
	if c.charset == "" || c.charset == "binary" {
		return lit, nil
	}
	return "CONVERT(" + lit + " USING " + c.charset + ") COLLATE " + c.collation, nil
}

func isDigits(b []byte, dot, exp bool) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
		case c == '-' && (i == 0 || exp && (b[i-1] == 'e' || b[i-1] == 'E')):
		case c == '+' && exp && i > 0 && (b[i-1] == 'e' || b[i-1] == 'E'):
		case c == '.' && dot:
		case (c == 'e' || c == 'E') && exp:
		default:
			return false
		}
	}
	return true
}

// afterKey is the condition "key > last" in key order, NULL-safe (a NULL key
// component, possible only for tables keyed by all columns, sorts first).
func (st *snapTable) afterKey(last [][]byte) (string, error) {
	pk := st.ti.pk
	if len(last) != len(pk) {
		return "", fmt.Errorf("stored key has %d columns, %s.%s's key has %d", len(last), st.db, st.table, len(pk))
	}
	var ors []string
	for i := range pk {
		var ands []string
		for j := 0; j <= i; j++ {
			col := quoteIdent(st.cols[pk[j]].name)
			if last[j] == nil {
				if j == i {
					ands = append(ands, col+" IS NOT NULL")
				} else {
					ands = append(ands, col+" IS NULL")
				}
				continue
			}
			lit, err := st.keyLiteral(pk[j], last[j])
			if err != nil {
				return "", err
			}
			if j == i {
				ands = append(ands, col+" > "+lit)
			} else {
				ands = append(ands, col+" = "+lit)
			}
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

// keyTextLiteral renders one component of a record key (schemas.SplitKeyRaw) as
// an SQL literal for an equality with its column: the key's text is UTF-8.
func (st *snapTable) keyTextLiteral(col int, comp string) (string, error) {
	c := &st.cols[col]
	bad := func() (string, error) {
		return "", fmt.Errorf("key component %q does not fit %s column %s", comp, c.dataType, c.name)
	}
	switch c.dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "bit", "year":
		if !isDigits([]byte(comp), false, false) {
			return bad()
		}
		return comp, nil
	case "decimal", "numeric":
		if !isDigits([]byte(comp), true, false) {
			return bad()
		}
		return comp, nil
	case "double", "real", "float":
		f, err := strconv.ParseFloat(comp, 64)
		if err != nil {
			return bad()
		}
		lit := strconv.FormatFloat(f, 'e', -1, 64)
		if c.dataType == "float" {
			return "CAST(" + lit + " AS FLOAT)", nil
		}
		return "CAST(" + lit + " AS DOUBLE)", nil
	case "timestamp":
		// Keys hold RFC 3339 UTC; the connection's time zone is UTC.
		comp = strings.TrimSuffix(strings.Replace(comp, "T", " ", 1), "Z")
		fallthrough
	case "date", "datetime", "time":
		for _, b := range []byte(comp) {
			if !(b >= '0' && b <= '9' || b == '-' || b == ':' || b == ' ' || b == '.') {
				return bad()
			}
		}
		return "'" + comp + "'", nil
	}
	if schemas.KindOf(c.dataType) == schemas.KindBytes || c.charset == "" || c.charset == "binary" {
		h, ok := strings.CutPrefix(comp, "0x")
		if _, err := hex.DecodeString(h); !ok || err != nil {
			return bad()
		}
		return "X'" + h + "'", nil
	}
	return "CONVERT(_utf8mb4 X'" + hex.EncodeToString([]byte(comp)) + "' USING " + c.charset + ") COLLATE " + c.collation, nil
}

// keysCondition is "the key is one of keys" for record keys of the table.
func (st *snapTable) keysCondition(keys []string) (string, error) {
	pk := st.ti.pk
	prefix := st.db + "." + st.table + ":"
	ors := make([]string, 0, len(keys))
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			return "", fmt.Errorf("key %q is not a key of %s.%s", k, st.db, st.table)
		}
		comps := schemas.SplitKeyRaw(rest)
		if len(comps) != len(pk) {
			return "", fmt.Errorf("key %q has %d components, %s.%s's key has %d columns", k, len(comps), st.db, st.table, len(pk))
		}
		ands := make([]string, len(pk))
		for i, comp := range comps {
			col := quoteIdent(st.cols[pk[i]].name)
			if schemas.IsNullComponent(comp) {
				ands[i] = col + " IS NULL"
				continue
			}
			lit, err := st.keyTextLiteral(pk[i], schemas.UnescapeKeyComponent(comp))
			if err != nil {
				return "", fmt.Errorf("key %q: %w", k, err)
			}
			ands[i] = col + " = " + lit
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}
