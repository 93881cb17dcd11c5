package schemas

import (
	"encoding/json"
	"fmt"
)

// Status record kinds.
const (
	StatusProducer = "producer"
	StatusConsumer = "consumer"
)

// StatusRecord is what one process publishes about itself to StatusTopic,
// keyed by StatusKey(Kind, Name, Instance), every few seconds while it runs; a
// clean stop writes a tombstone for the key. A reader treats a record older
// than three IntervalMs as gone (the process died without saying so).
type StatusRecord struct {
	Kind string `json:"kind"` // StatusProducer or StatusConsumer
	// Name is the source name of a producer, the consumer group of a consumer.
	Name string `json:"name"`
	// Instance identifies the process: host name and process id, or the
	// configured instance id.
	Instance string `json:"instance"`
	// MemberID is the process's member id in its consumer group, if it has one.
	MemberID string `json:"member_id,omitempty"`
	// AdminAddr is where the process serves /metrics, /healthz and /readyz.
	AdminAddr  string `json:"admin_addr,omitempty"`
	TsMs       int64  `json:"ts_ms"`
	IntervalMs int64  `json:"interval_ms"`

	Producer *ProducerStatus `json:"producer,omitempty"`
	Consumer *ConsumerStatus `json:"consumer,omitempty"`
}

// ProducerStatus is a producer's part of a StatusRecord.
type ProducerStatus struct {
	// Role is "active" or "standby".
	Role string `json:"role"`
	// Streaming: the active producer is reading the binlog.
	Streaming bool `json:"streaming"`
	// Committed is the last committed position (active only).
	Committed *Position `json:"committed,omitempty"`
	// LagSeconds is now minus the source time up to which the binlog has been
	// read (-1: unknown).
	LagSeconds float64 `json:"lag_seconds"`
	// BytesBehind is the binlog the server has written beyond what was read
	// (-1: unknown).
	BytesBehind int64 `json:"bytes_behind"`
	// RetentionMarginFiles is the number of binlog files on the server older
	// than the one holding the committed position (-1: unknown);
	// RetentionMarginBytes their size.
	RetentionMarginFiles int   `json:"retention_margin_files"`
	RetentionMarginBytes int64 `json:"retention_margin_bytes"`
}

// ConsumerStatus is a consumer Runner's part of a StatusRecord, for one of its
// groups.
type ConsumerStatus struct {
	Handlers []string       `json:"handlers"`
	Halted   []StatusHalted `json:"halted,omitempty"`
}

// StatusHalted is a partition a consumer stopped at a failing record.
type StatusHalted struct {
	Handler   string `json:"handler"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Table     string `json:"table,omitempty"`
	Key       string `json:"key,omitempty"`
	Error     string `json:"error"`
	SinceMs   int64  `json:"since_ms"`
}

// StatusKey is the record key of a status record: "<kind>/<name>/<instance>".
func StatusKey(kind, name, instance string) string { return kind + "/" + name + "/" + instance }

// Marshal encodes the record as JSON.
func (s *StatusRecord) Marshal() []byte {
	b, _ := json.Marshal(s) // strings, numbers and slices of them cannot fail
	return b
}

// DecodeStatus decodes a status record value.
func DecodeStatus(b []byte) (*StatusRecord, error) {
	var s StatusRecord
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: status record: %v", ErrDecode, err)
	}
	return &s, nil
}
