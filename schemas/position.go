package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Position is a producer's committed place in the binlog, stored in the compacted
// topic "<prefix>._positions" under the source name, in the same Kafka transaction as
// the changes it covers.
//
// File:Pos is where reading resumes: the start of a binlog transaction. When a single
// binlog transaction was larger than the flush limits and only part of it is
// committed, RowsDone counts the changes of that transaction already written, and
// resume skips exactly those.
type Position struct {
	Source   string `json:"source"`
	Flavor   string `json:"flavor"`
	ServerID uint32 `json:"server_id"`
	File     string `json:"file"`
	Pos      uint32 `json:"pos"`
	RowsDone int    `json:"rows_done"`
	// GTID is the GTID of the partially written transaction (when RowsDone > 0).
	GTID string `json:"gtid,omitempty"`
	// GTIDSet is the set of transactions fully written ("0-1-42" MariaDB, MySQL uuid set).
	GTIDSet string `json:"gtid_set,omitempty"`
	// Seq is the change sequence of the last change written.
	Seq uint64 `json:"seq"`
	// TsMs is the source timestamp of the last event covered, in milliseconds.
	TsMs int64 `json:"ts_ms"`
	// WrittenMs is the producer's wall clock when this position was committed.
	WrittenMs int64 `json:"written_ms"`
	// Snapshot is the state of backfills (nil when none was ever asked for):
	// positions written before snapshots existed decode with it nil.
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
}

// String formats the position for logs and errors: "binlog.000003:1234" plus the
// row offset inside a partly written transaction.
func (p Position) String() string {
	s := p.File + ":" + strconv.FormatUint(uint64(p.Pos), 10)
	if p.RowsDone > 0 {
		s += "+" + strconv.Itoa(p.RowsDone) + "rows"
	}
	if p.GTIDSet != "" {
		s += " (gtid " + p.GTIDSet + ")"
	}
	return s
}

// Marshal encodes the position as JSON.
func (p Position) Marshal() []byte {
	b, _ := json.Marshal(p) // strings, numbers and slices of them cannot fail
	return b
}

// DecodePosition decodes a position record value.
func DecodePosition(b []byte) (Position, error) {
	var p Position
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: position: %v", ErrDecode, err)
	}
	return p, nil
}

// Heartbeat is written to "<prefix>._heartbeats" while the source is idle, so
// consumers can tell a quiet source from a stuck pipeline.
type Heartbeat struct {
	Source string `json:"source"`
	// TsMs is the producer's wall clock; SourceTsMs the last binlog event's timestamp.
	TsMs       int64  `json:"ts_ms"`
	SourceTsMs int64  `json:"source_ts_ms"`
	File       string `json:"file"`
	Pos        uint32 `json:"pos"`
}
