// Package schemas defines kanal's change model — Change, Op, Column, Position — and the
// codecs that put it on the wire: the record key, the kanal JSON envelope and Canal's
// FlatMessage JSON (canal-json).
//
// Column values inside a Change use a small, fixed set of Go types so that every
// MySQL value survives the trip exactly:
//
//	NULL                                 nil
//	TINYINT … BIGINT (signed)            int64
//	TINYINT … BIGINT UNSIGNED            uint64
//	DECIMAL                              Decimal (exact decimal text, never a float)
//	FLOAT                                float32
//	DOUBLE                               float64
//	BIT                                  uint64
//	YEAR                                 int64
//	DATE, DATETIME, TIME                 string ("2006-01-02", "2006-01-02 15:04:05.123", "-838:59:59")
//	TIMESTAMP                            string, RFC 3339 in UTC ("2006-01-02T15:04:05.123Z")
//	CHAR, VARCHAR, TEXT, ENUM, SET, JSON string (SET as MySQL prints it: "a,b")
//	BINARY, VARBINARY, BLOB, GEOMETRY    []byte
//
// DATETIME, TIME and TIMESTAMP values carry exactly as many fractional digits as the
// column's fsp (none for fsp 0). Zero dates keep MySQL's text ("0000-00-00 00:00:00"),
// also for TIMESTAMP.
package schemas

import (
	"errors"
	"fmt"
	"strings"
)

// Op is the kind of a change, with Debezium's letters.
type Op string

// The operations a Change can carry.
const (
	OpCreate Op = "c" // a row was inserted
	OpUpdate Op = "u" // a row was updated in place (same primary key)
	OpDelete Op = "d" // a row was deleted (also the first half of a primary-key change)
	OpRead   Op = "r" // a row was read by a snapshot
	// OpTruncate: every row of the table written before this change is gone
	// (TRUNCATE TABLE). Such a change has neither before nor after; see
	// docs/formats.md for how it reaches every partition of the table's topic.
	OpTruncate Op = "t"
)

// Valid reports whether op is one of the known operations.
func (op Op) Valid() bool {
	switch op {
	case OpCreate, OpUpdate, OpDelete, OpRead, OpTruncate:
		return true
	}
	return false
}

// checkImages checks that a decoded change has the row images its op needs: a
// truncate none, every other op at least one.
func checkImages(c *Change) error {
	switch {
	case !c.Op.Valid():
		return fmt.Errorf("unknown op %q", c.Op)
	case c.Op == OpTruncate && (c.Before != nil || c.After != nil):
		return errors.New("truncate with a row image")
	case c.Op != OpTruncate && c.Before == nil && c.After == nil:
		return errors.New("neither before nor after")
	}
	return nil
}

// Decimal is an exact decimal number in its canonical MySQL text form ("-12.50").
// It is a distinct type so that handlers can tell it from a plain string and never
// round-trip it through a float.
type Decimal string

// Column describes one column of a row as the binlog described it when the row was
// written, which may differ from the table's live schema after an ALTER TABLE.
type Column struct {
	// Name is the column name from the binlog's table map.
	Name string `json:"name"`
	// Type is a MySQL-style type: "bigint unsigned", "decimal(12,2)", "datetime(6)",
	// "varchar", "blob", "enum", "json", … (see Kind for how values are represented).
	Type string `json:"type"`
	// PK marks the columns of the primary key (or of the fallback key for tables
	// without one, when Change.KeyFallback is set).
	PK bool `json:"pk,omitempty"`
}

// Kind is the representation class of a column's values; it is derived from Column.Type.
type Kind uint8

// The value kinds; see the package documentation for the Go type of each.
const (
	KindString Kind = iota
	KindInt
	KindUint
	KindDecimal
	KindFloat
	KindDouble
	KindBit
	KindYear
	KindBytes
)

// Kind returns how values of this column are represented.
func (c Column) Kind() Kind { return KindOf(c.Type) }

// KindOf maps a Column.Type to its value kind. It accepts kanal's type names and the
// MySQL column types SHOW COLUMNS prints ("int(10) unsigned zerofill", "decimal(10,2)",
// "enum('a','b')"), in any letter case; unknown types are KindString.
func KindOf(typ string) Kind {
	for i := 0; i < len(typ); i++ {
		if c := typ[i]; 'A' <= c && c <= 'Z' {
			typ = strings.ToLower(typ)
			break
		}
	}
	base := typ
	if i := strings.IndexAny(base, "( "); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint",
		"int1", "int2", "int3", "int4", "int8", "middleint", "bool", "boolean":
		if strings.Contains(typ, " unsigned") {
			return KindUint
		}
		return KindInt
	case "decimal", "dec", "numeric", "fixed":
		return KindDecimal
	case "float", "float4":
		return KindFloat
	case "double", "real", "float8":
		return KindDouble
	case "bit":
		return KindBit
	case "year":
		return KindYear
	case "binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob",
		"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
		"multipolygon", "geometrycollection", "geomcollection":
		return KindBytes
	}
	return KindString
}

// Source tells where a change came from.
type Source struct {
	// Name is the configured source name (also the producer's identity).
	Name string `json:"name"`
	// ServerID is the server_id of the MySQL server that wrote the event.
	ServerID uint32 `json:"server_id"`
	// File and Pos are the binlog file and the end position of the rows event.
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	// GTID is the transaction's GTID when the server has GTIDs ("0-1-42" on MariaDB,
	// "uuid:42" on MySQL).
	GTID string `json:"gtid,omitempty"`
	// TsMs is the binlog event timestamp (commit time, second precision) in milliseconds.
	TsMs int64 `json:"ts_ms"`
	// DB and Table name the source table.
	DB    string `json:"db"`
	Table string `json:"table"`
	// Row is the index of this change within its binlog transaction (0-based).
	Row int `json:"row"`
}

// Change is one row change: the unit kanal writes to Kafka and hands to handlers.
type Change struct {
	Op Op `json:"op"`
	// Seq is the per-source change sequence: strictly increasing in binlog order and
	// stable across producer restarts, so sinks may use it as a row version.
	Seq uint64 `json:"seq"`
	// Source is where the change came from.
	Source Source `json:"source"`
	// Columns describes the row's columns in table order.
	Columns []Column `json:"columns"`
	// Before is the row before the change (nil for creates), After the row after it
	// (nil for deletes). Keys are column names; value types are listed in the package doc.
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	// KeyFallback is true when the table has no primary key and the key is built from
	// every column.
	KeyFallback bool `json:"key_fallback,omitempty"`
}

// Row returns the row state this change leaves behind, or, for a delete, the row it
// removed: After when set, else Before.
func (c *Change) Row() map[string]any {
	if c.After != nil {
		return c.After
	}
	return c.Before
}

// Table returns "db.table".
func (c *Change) Table() string { return c.Source.DB + "." + c.Source.Table }

// KeyColumns returns the names of the key columns in table order.
func (c *Change) KeyColumns() []string {
	var pk []string
	for _, col := range c.Columns {
		if col.PK {
			pk = append(pk, col.Name)
		}
	}
	return pk
}

// Key returns the Kafka record key of the change: "<db>.<table>:<pk>" (see EncodeKey),
// or for a truncate "<db>.<table>" (TruncateKey).
func (c *Change) Key() string {
	if c.Op == OpTruncate {
		return TruncateKey(c.Source.DB, c.Source.Table)
	}
	row := c.Row()
	vals := make([]any, 0, 2)
	for _, col := range c.Columns {
		if col.PK {
			vals = append(vals, row[col.Name])
		}
	}
	return string(AppendKey(nil, c.Source.DB, c.Source.Table, vals))
}
