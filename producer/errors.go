package producer

import (
	"errors"
	"fmt"

	"github.com/kanal-cdc/kanal/schemas"
)

var (
	// ErrServerConfig means the source server is not set up for row-based capture
	// (binlog off, wrong format, row image or metadata); the message names the variable.
	ErrServerConfig = errors.New("source server configuration")
	// ErrNoPrimaryKey means a captured table has no primary key and the policy is "refuse".
	ErrNoPrimaryKey = errors.New("table has no primary key")
	// ErrBinlogPurged means the stored position is no longer on the server; see
	// BinlogPurgedError.
	ErrBinlogPurged = errors.New("binlog position purged")
	// ErrFenced means another producer with the same source name took over.
	ErrFenced = errors.New("producer fenced by a newer instance with the same source name")
	// ErrAccess means a server refused kanal's credentials or privileges (MySQL
	// error 1045 and the like, Kafka SASL or ACL errors): the message is the
	// server's, and retrying cannot help.
	ErrAccess = errors.New("access denied")
	// ErrGaveUp means a server kept failing for longer than
	// source.max_retry_duration.
	ErrGaveUp = errors.New("gave up retrying")
	// ErrOversize means a change's record is larger than Kafka takes and
	// kafka.oversize_policy is fail; see OversizeError.
	ErrOversize = errors.New("change too large for Kafka")
)

// BinlogPurgedError says which position was lost and what the server still has.
type BinlogPurgedError struct {
	Source string
	Want   schemas.Position
	Oldest string // oldest binlog file on the server
}

func (e *BinlogPurgedError) Error() string {
	return fmt.Sprintf("source %q: stored position %s is no longer on the server (oldest binlog is %s): "+
		"changes between them are lost to kanal. To re-snapshot: rebuild the targets from a fresh copy of the tables, "+
		"then delete the stored position (`kanal positions reset --source %s`) and start with source.start: current",
		e.Source, e.Want, e.Oldest, e.Source)
}

// Unwrap lets errors.Is(err, ErrBinlogPurged) match.
func (e *BinlogPurgedError) Unwrap() error { return ErrBinlogPurged }

// RowError is a failure to turn one binlog row into a change; it names the table,
// the binlog position and the row.
type RowError struct {
	Table string
	Pos   string
	Row   int
	Err   error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("%s at %s row %d: %v", e.Table, e.Pos, e.Row, e.Err)
}

// Unwrap returns the cause.
func (e *RowError) Unwrap() error { return e.Err }
