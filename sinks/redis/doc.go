// Package redissink keeps Redis an exact copy of chosen MySQL tables: a
// consumer.Handler that materialises kanal change records as one Redis key per row.
//
// Every row is stored under "<key_prefix><db>.<table>:<pk>" (the Kafka record key with
// a prefix), either as a hash with one field per column or as a JSON string, with its
// source version (the producer's change sequence, Change.Seq) in the field "__v".
//
// Batches from the Runner are fenced by partition watermarks: per handler name,
// instance, topic and partition the key "<WatermarkPrefix><name>:<instance>:<topic>:<partition>"
// holds the offset of the next record to apply (and the highest change sequence
// written). A batch's writes for an instance are one MULTI/EXEC under WATCH of that
// key: records below it are skipped (applied before), the rest are written with plain
// commands (DEL + HSET or SET, DEL of a deleted row) and the watermark moves past
// them. A concurrent writer of the same partition (a zombie consumer after a
// rebalance, a replay group) makes EXEC fail and the batch is tried again from the
// new watermark. So, while the watermark lives, each instance applies a prefix of
// every partition, in order, each record at most once: replays, redeliveries and
// racing consumers never move a row backwards. When the watermark is missing
// (evicted, deleted, a renamed handler) or was reset for a replay
// (Handler.ResetOffsets, called by `kanal offsets reset`), records are applied
// through the per-row version check until they are newer than what Redis may hold.
//
// Secondary sets (for example "user:{user_id}:orders" holding order ids) are
// maintained in the same transaction: the row remembers which sets it is in
// ("__sets"), and a small script moves it from the sets it held to its new ones, so
// an update that changes the grouping column moves the member and a delete removes
// it, also on compacted topics and when only the tombstone of a delete is left.
//
// Batches without Kafka coordinates (ApplyChanges) are applied by a Lua script that
// writes each row only when its version is newer than the one Redis holds; a delete
// leaves a tombstone key "<tombstone_prefix><row key>" holding its version for
// Config.TombstoneTTL so that such a batch cannot resurrect the row.
//
// Tables are routed to their own Redis instance (or database), or spread over several
// instances with a consistent-hash Ring; Reader gives applications the same routing
// and the decoding of stored rows.
//
// The value encoding, the reserved fields and the trade-offs are described in
// docs/redis.md.
package redissink
