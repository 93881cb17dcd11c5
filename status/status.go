// Package status gathers, from Kafka alone, what an operator wants on one
// screen: per source, the active producer, its committed position, lag and
// binlog retention margin; per consumer group, its members, per-table lag and
// freshness, halted partitions and dead letters. It reads the positions,
// heartbeats and status topics, the groups' descriptions and committed
// offsets, and one record around each group's committed offset; it writes
// nothing. `kanal status` prints the Report and serves it as a web page.
package status

import (
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

// Report is the state of one kanal installation (one topic prefix).
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Prefix      string    `json:"prefix"`
	Sources     []Source  `json:"sources"`
	Groups      []Group   `json:"groups"`
}

// Source is one captured MySQL/MariaDB server.
type Source struct {
	Name string `json:"name"`
	// Active is the producer process capturing the source, nil when none is.
	Active *Member `json:"active"`
	// Standbys are the other members of its producer group.
	Standbys []Member `json:"standbys"`
	// Election is the producer group's state ("Stable", "PreparingRebalance",
	// …; "" when the producers run without ha.enabled or none runs).
	Election string `json:"election,omitempty"`
	// Position is the last committed position.
	Position *schemas.Position `json:"position,omitempty"`
	// PositionAgeSeconds is how long ago the position was committed.
	PositionAgeSeconds *float64 `json:"position_age_seconds,omitempty"`
	// The active producer's view, from its status record (nil: unknown).
	LagSeconds           *float64 `json:"lag_seconds"`
	BytesBehind          *int64   `json:"bytes_behind"`
	RetentionMarginFiles *int     `json:"retention_margin_files"`
	RetentionMarginBytes *int64   `json:"retention_margin_bytes"`
	// HeartbeatAgeSeconds is how long ago the newest heartbeat was written.
	HeartbeatAgeSeconds *float64 `json:"heartbeat_age_seconds,omitempty"`
}

// Member is one process in a consumer group.
type Member struct {
	// Instance is the process's name (host-pid, or ha.instance).
	Instance   string `json:"instance"`
	MemberID   string `json:"member_id"`
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	AdminAddr  string `json:"admin_addr,omitempty"`
	Partitions int    `json:"partitions"`
}

// Group is one consumer group reading table topics.
type Group struct {
	Name    string   `json:"name"`
	State   string   `json:"state"`
	Members []Member `json:"members"`
	// Handlers are the handlers of the group, from its status records.
	Handlers []string `json:"handlers,omitempty"`
	Tables   []Table  `json:"tables"`
	// Halted are the partitions the group's members stopped at a failing
	// record, from their status records.
	Halted []schemas.StatusHalted `json:"halted"`
	// DeadLetters is the number of records in the group's dead-letter topic.
	DeadLetters int64  `json:"dead_letters"`
	DLQTopic    string `json:"dlq_topic"`
}

// Table is a group's progress on one table topic.
type Table struct {
	Table      string `json:"table"`
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	// LagRecords is the number of committed records the group has yet to
	// apply (transaction markers are not counted once the group is caught up).
	LagRecords int64 `json:"lag_records"`
	// FreshnessSeconds is how far behind the source the group's copy of the
	// table is: now minus the source time of the oldest change not yet applied,
	// or, where everything is applied, minus the last time the producer
	// confirmed it had read the source (its newest heartbeat or commit).
	// nil when unknown.
	FreshnessSeconds *float64 `json:"freshness_seconds"`
	// Halted counts the table's halted partitions.
	Halted int `json:"halted"`
}
