package schemas

import "strings"

// Record header names. Every change record carries HeaderOp, HeaderPos, HeaderSeq
// and HeaderFormat; a tombstone carries the first three, copied from the delete it
// follows; an oversize marker adds HeaderOversize (see Oversize). Dead letters keep
// the original headers and add the HeaderDLQ* ones; records re-published from a
// dead-letter topic to the group's retry topic keep the original headers and add
// the HeaderRedrive* ones.
const (
	HeaderOp     = "kanal.op"     // the change's Op
	HeaderPos    = "kanal.pos"    // the source position of the rows event, "file:pos"
	HeaderSeq    = "kanal.seq"    // Change.Seq in decimal
	HeaderFormat = "kanal.format" // the value's format: FormatJSON, FormatCanalJSON, …
	// HeaderInvalidText is on change records only when some text column held
	// bytes that are not valid in the column's character set: the names of those
	// columns (of either image), comma-separated. Each invalid byte sequence was
	// replaced with U+FFFD in the value (see Value.InvalidText).
	HeaderInvalidText = "kanal.invalid_text"

	HeaderOversize = "kanal.oversize" // on oversize markers: the size in bytes of the record left out

	HeaderDLQHandler   = "kanal.dlq.handler"   // the handler that gave up on the record
	HeaderDLQError     = "kanal.dlq.error"     // the last error, truncated
	HeaderDLQReason    = "kanal.dlq.reason"    // why: decode, permanent, retries exhausted
	HeaderDLQTopic     = "kanal.dlq.topic"     // where the record was read
	HeaderDLQPartition = "kanal.dlq.partition" // its partition, in decimal
	HeaderDLQOffset    = "kanal.dlq.offset"    // its offset, in decimal
	HeaderDLQAttempts  = "kanal.dlq.attempts"  // how often it was tried
	HeaderDLQTime      = "kanal.dlq.time"      // when it was dead-lettered, RFC 3339
	// HeaderDLQTruncated is set on a dead letter whose value was cut to fit the
	// dead-letter topic: the original value's length in decimal. The value then
	// holds the first bytes of the original only.
	HeaderDLQTruncated = "kanal.dlq.truncated"
	// HeaderDLQValueSHA256 is the hex SHA-256 of the original value of a
	// truncated dead letter, to find and check the original record.
	HeaderDLQValueSHA256 = "kanal.dlq.value_sha256"

	HeaderRedriveHandler   = "kanal.redrive.handler"   // the handler(s) the record is redriven to, comma-separated
	HeaderRedriveTopic     = "kanal.redrive.topic"     // the table topic the record was first read from
	HeaderRedrivePartition = "kanal.redrive.partition" // its partition there, in decimal
	HeaderRedriveOffset    = "kanal.redrive.offset"    // its offset there, in decimal
	HeaderRedriveDLQ       = "kanal.redrive.dlq"       // the dead letter it came from: "<partition>@<offset>" of the DLQ topic
	HeaderRedriveTime      = "kanal.redrive.time"      // when it was redriven, RFC 3339
)

// TopicName returns the topic of a table: "<prefix>.<db>.<table>", with characters
// Kafka does not allow in topic names replaced by '_'.
func TopicName(prefix, db, table string) string {
	return prefix + "." + sanitizeTopic(db) + "." + sanitizeTopic(table)
}

func sanitizeTopic(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}

// PositionsTopic is the compacted single-partition topic holding each source's
// committed position, keyed by source name.
func PositionsTopic(prefix string) string { return prefix + "._positions" }

// HeartbeatsTopic is the topic of the producers' heartbeat records.
func HeartbeatsTopic(prefix string) string { return prefix + "._heartbeats" }

// OversizeTopic holds a copy of every oversize marker (see Oversize): the changes
// the producer left out because they were too large, keyed by record key.
func OversizeTopic(prefix string) string { return prefix + "._oversize" }

// DLQTopic is the dead-letter topic of a consumer group.
func DLQTopic(prefix, group string) string { return prefix + "._dlq." + group }

// SchemasTopic is the compacted topic of the avro format's writer schemas and
// the json-compact format's descriptors, keyed by fingerprint (FingerprintKey);
// each is written in the same Kafka transaction as the first record that uses
// it.
func SchemasTopic(prefix string) string { return prefix + "._schemas" }

// SchemaChangesTopic is the topic of schema-change records (SchemaChange): the
// DDL statements of captured tables, keyed by "<db>.<table>".
func SchemaChangesTopic(prefix string) string { return prefix + "._schema_changes" }

// TruncateKey is the record key of a truncate: "<db>.<table>", without the ':'
// every row key has, so it never names a row.
func TruncateKey(db, table string) string { return db + "." + table }

// RetryTopic is the topic a consumer group reads redriven dead letters from, next
// to its table topics.
func RetryTopic(prefix, group string) string { return prefix + "._retry." + group }

// IsTableTopic reports whether topic is a table topic of prefix:
// "<prefix>.<db>.<table>", where the db part does not start with '_' (the
// "<prefix>._…" names are kanal's internal topics).
func IsTableTopic(prefix, topic string) bool {
	rest, ok := strings.CutPrefix(topic, prefix+".")
	if !ok || rest == "" || rest[0] == '_' || rest[0] == '.' {
		return false
	}
	db, table, ok := strings.Cut(rest, ".")
	return ok && db != "" && table != "" && !strings.Contains(table, ".")
}

// StatusTopic is the compacted topic where producers and consumer Runners
// publish what `kanal status` shows about them (StatusRecord), keyed by
// StatusKey.
func StatusTopic(prefix string) string { return prefix + "._status" }

// ProducerGroup is the consumer group through which the `kanal produce`
// processes of one source elect their active member: the member assigned
// partition 0 of PositionsTopic is active, the others stand by.
func ProducerGroup(source string) string { return "kanal-producer-" + source }
