package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// Snapshot signals and progress: what `kanal snapshot` writes to the signals topic
// and what the producer keeps in its Position about backfills (docs/formats.md,
// "Snapshots").

// SignalsTopic is the single-partition topic through which tools ask a running
// producer for backfills ("<prefix>._signals"), keyed by source name.
func SignalsTopic(prefix string) string { return prefix + "._signals" }

// Signal actions.
const (
	// SignalSnapshot asks for a backfill of Tables (each with Where, or of Keys).
	SignalSnapshot = "snapshot"
	// SignalCancel cancels the queued and running backfills of Tables (all when
	// Tables is empty).
	SignalCancel = "cancel"
)

// Signal is one request to a producer, the value of a record in SignalsTopic.
type Signal struct {
	// ID identifies the request; the backfills it starts carry it.
	ID string `json:"id"`
	// Source is the producer's source name (also the record key).
	Source string `json:"source"`
	// Action is SignalSnapshot or SignalCancel.
	Action string `json:"action"`
	// Tables are "db.table" names (no patterns).
	Tables []string `json:"tables,omitempty"`
	// Where is an SQL condition the backfilled rows must meet (evaluated by the
	// source server).
	Where string `json:"where,omitempty"`
	// Keys, when set, restricts a backfill of one table to these record keys
	// ("<db>.<table>:<pk>"): rows found are emitted as reads, keys without a row
	// as tombstones (kanal verify --repair).
	Keys []string `json:"keys,omitempty"`
	// ChunkSize is the number of rows per chunk (0: the producer's default).
	ChunkSize int `json:"chunk_size,omitempty"`
	// RequestedMs is when the request was made (tool's clock, ms).
	RequestedMs int64 `json:"requested_ms"`
	// By names who asked ("kanal snapshot", "kanal verify --repair", a host…).
	By string `json:"by,omitempty"`
}

// Marshal encodes the signal as JSON.
func (s Signal) Marshal() []byte {
	b, _ := json.Marshal(s) // strings, numbers and string slices cannot fail
	return b
}

// DecodeSignal decodes a signal record value.
func DecodeSignal(b []byte) (Signal, error) {
	var s Signal
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%w: signal: %v", ErrDecode, err)
	}
	return s, nil
}

// Backfill states.
const (
	BackfillQueued    = "queued"
	BackfillRunning   = "running"
	BackfillDone      = "done"
	BackfillFailed    = "failed"
	BackfillCancelled = "cancelled"
	BackfillRefused   = "refused"
)

// SnapshotState is the part of a Position that describes backfills. It is
// committed in the same Kafka transaction as the records it covers, so a
// restarted producer continues each backfill after the last row it committed.
type SnapshotState struct {
	// SignalsOffset is the next offset of SignalsTopic the producer reads.
	SignalsOffset int64 `json:"signals_offset"`
	// Tables are the backfills not yet finished, in the order they run: the first
	// one is running, the others are queued.
	Tables []Backfill `json:"tables,omitempty"`
	// Finished are the last backfills that ended (done, failed, cancelled or
	// refused), oldest first; at most MaxFinishedBackfills.
	Finished []Backfill `json:"finished,omitempty"`
}

// MaxFinishedBackfills bounds SnapshotState.Finished.
const MaxFinishedBackfills = 32

// Backfill is one table's backfill and how far it got.
type Backfill struct {
	// ID is the request's Signal.ID ("initial" for source.start: snapshot).
	ID string `json:"id"`
	// Table is "db.table".
	Table string `json:"table"`
	Where string `json:"where,omitempty"`
	// Keys restricts the backfill to these record keys; KeysDone of them are done.
	Keys      []string `json:"keys,omitempty"`
	KeysDone  int      `json:"keys_done,omitempty"`
	ChunkSize int      `json:"chunk_size"`
	// State is one of the Backfill* constants.
	State string `json:"state"`
	// LastKey is the key of the last row done (the record key, for people);
	// LastKeyRaw the same row's key columns as the server printed them, hex
	// encoded (null for NULL), where the next chunk starts.
	LastKey    string    `json:"last_key,omitempty"`
	LastKeyRaw []*string `json:"last_key_raw,omitempty"`
	// Rows counts the reads emitted; Skipped the rows of chunks left out because a
	// change of the same key was written while the chunk was read (that change
	// carries the row); Chunks the chunks done.
	Rows    uint64 `json:"rows"`
	Skipped uint64 `json:"skipped,omitempty"`
	Chunks  uint64 `json:"chunks"`
	// Total is the estimated number of rows (-1: unknown).
	Total int64 `json:"total"`
	// Restarts counts restarts from the beginning after a schema change.
	Restarts int `json:"restarts,omitempty"`
	// Note says what happened last worth knowing (a restart and why).
	Note string `json:"note,omitempty"`
	// Error says why a backfill failed or was refused.
	Error       string `json:"error,omitempty"`
	RequestedMs int64  `json:"requested_ms,omitempty"`
	StartedMs   int64  `json:"started_ms,omitempty"`
	UpdatedMs   int64  `json:"updated_ms,omitempty"`
	FinishedMs  int64  `json:"finished_ms,omitempty"`
}

// Active reports whether the backfill is queued or running.
func (b *Backfill) Active() bool { return b.State == BackfillQueued || b.State == BackfillRunning }

// Clone returns a deep copy of the state.
func (s *SnapshotState) Clone() *SnapshotState {
	if s == nil {
		return nil
	}
	c := *s
	c.Tables = cloneBackfills(s.Tables)
	c.Finished = cloneBackfills(s.Finished)
	return &c
}

func cloneBackfills(bs []Backfill) []Backfill {
	if bs == nil {
		return nil
	}
	out := make([]Backfill, len(bs))
	for i, b := range bs {
		out[i] = b
		out[i].Keys = append([]string(nil), b.Keys...)
		out[i].LastKeyRaw = append([]*string(nil), b.LastKeyRaw...)
	}
	return out
}

// Progress says how fast a backfill goes: rows per second since it started (or
// restarted), and the time left at that rate for the estimated total (0 when
// unknown). now is the time to measure a running backfill to.
func (b *Backfill) Progress(now time.Time) (rowsPerSec float64, left time.Duration) {
	end := b.UpdatedMs
	if b.State == BackfillRunning {
		end = now.UnixMilli()
	} else if b.FinishedMs > 0 {
		end = b.FinishedMs
	}
	if b.StartedMs == 0 || end <= b.StartedMs {
		return 0, 0
	}
	rowsPerSec = float64(b.Rows) / (float64(end-b.StartedMs) / 1000)
	if b.State == BackfillRunning && rowsPerSec > 0 && b.Total > int64(b.Rows) {
		left = time.Duration(float64(b.Total-int64(b.Rows)) / rowsPerSec * float64(time.Second))
	}
	return rowsPerSec, left
}

// Remaining is the estimated number of rows left (0 when done or unknown).
func (b *Backfill) Remaining() int64 {
	if !b.Active() || b.Total < 0 || int64(b.Rows) >= b.Total {
		return 0
	}
	return b.Total - int64(b.Rows)
}
