package schemas

import (
	"encoding/json"
	"fmt"
)

// Schema-change kinds: what a DDL statement did to a captured table.
const (
	SchemaCreate   = "create"
	SchemaAlter    = "alter"
	SchemaDrop     = "drop"
	SchemaRename   = "rename"
	SchemaTruncate = "truncate"
)

// SchemaChange is one DDL statement of a captured table, written as JSON to
// SchemaChangesTopic keyed by "<db>.<table>", in the same Kafka transaction as
// the changes around it. A statement naming several captured tables (DROP TABLE
// a, b; RENAME TABLE a TO b, c TO d) gives one record per table.
type SchemaChange struct {
	// Source is the producer's source name.
	Source string `json:"source"`
	// Kind is SchemaCreate, SchemaAlter, SchemaDrop, SchemaRename or SchemaTruncate.
	Kind string `json:"kind"`
	// DB and Table name the table the statement acted on.
	DB    string `json:"db"`
	Table string `json:"table"`
	// NewDB and NewTable are the table's name after a rename (RENAME TABLE, ALTER
	// TABLE … RENAME TO).
	NewDB    string `json:"new_db,omitempty"`
	NewTable string `json:"new_table,omitempty"`
	// SQL is the statement's text with secrets redacted (IDENTIFIED BY …,
	// PASSWORD(…)), truncated to 64 KiB.
	SQL string `json:"sql"`
	// Position is where the statement ends in the binlog; GTID is its
	// transaction's GTID when the server has GTIDs.
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	GTID string `json:"gtid,omitempty"`
	// TsMs is the statement's binlog timestamp in milliseconds.
	TsMs int64 `json:"ts_ms"`
	// Seq is the change sequence at the statement: the seq of the last change
	// before it (a truncate has its own).
	Seq uint64 `json:"seq"`
	// Columns is the table's column list after the statement when the producer
	// knows it without guessing: unchanged by TRUNCATE, carried over by RENAME,
	// empty after DROP. It is null for CREATE and ALTER: the table's next change
	// carries its new columns (and, in Avro, its new schema).
	Columns []Column `json:"columns"`
}

// Key is the record key of the schema change: "<db>.<table>".
func (s *SchemaChange) Key() string { return s.DB + "." + s.Table }

// Marshal encodes the schema change as JSON.
func (s *SchemaChange) Marshal() []byte {
	b, _ := json.Marshal(s) // strings, numbers and columns cannot fail
	return b
}

// DecodeSchemaChange decodes a record of SchemaChangesTopic.
func DecodeSchemaChange(b []byte) (*SchemaChange, error) {
	var s SchemaChange
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: schema change: %v", ErrDecode, err)
	}
	return &s, nil
}
