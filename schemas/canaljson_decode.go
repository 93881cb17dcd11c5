package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
// after image overlaid with the matching element of old; an UPDATE that changes the
// primary key becomes a delete of the old key followed by a create of the new one
// (both from the same row, so there may be more changes than rows). Source carries DB, Table,
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
	case "TRUNCATE":
		// kanal writes a truncate as Canal does (isDdl, type TRUNCATE): it is a
		// change of the table's rows, not only of its schema.
		return []*Change{{Op: OpTruncate, Source: Source{DB: m.Database, Table: m.Table, TsMs: m.Es}}}, nil
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
			if !keyFallback && keyChanged(cols, c.Before, c.After) {
				// Canal writes a primary-key change as one UPDATE; kanal's model
				// (and every key-based sink) needs the old key removed: a delete of
				// the old key, then a create of the new one, as the producer writes it.
				del := *c
				del.Op, del.After = OpDelete, nil
				c.Op, c.Before = OpCreate, nil
				changes = append(changes, &del)
			}
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// keyChanged reports whether an update moved the row to another primary key.
func keyChanged(cols []Column, before, after map[string]any) bool {
	for _, col := range cols {
		if col.PK && !sameValue(before[col.Name], after[col.Name]) {
			return true
		}
	}
	return false
}

// sameValue compares two decoded values ([]byte by content).
func sameValue(a, b any) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return a == b
}

// canalNonRowTypes are Canal's EventType names of messages without row data.
var canalNonRowTypes = map[string]bool{
	"QUERY": true, "CREATE": true, "ALTER": true, "ERASE": true,
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
