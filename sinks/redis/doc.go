// Package redissink keeps Redis an exact, version-guarded copy of chosen MySQL tables:
// a consumer.Handler that materialises kanal change records as one Redis key per row.
//
// Every row is stored under "<key_prefix><db>.<table>:<pk>" (the Kafka record key with
// a prefix), either as a hash with one field per column or as a JSON string. Each row
// carries its source version (the producer's change sequence, Change.Seq) in the field
// "__v"; a Lua script, run with EVALSHA on chunks of rows and pipelined per batch,
// applies an upsert or a delete only when its version is newer than the one Redis holds, so replays, retries
// and two consumers racing on the same rows can never move a row backwards. A delete
// leaves a tombstone key "<tombstone_prefix><row key>" holding the delete's version for
// Config.TombstoneTTL, so a replayed older insert cannot resurrect the row.
//
// Secondary sets (for example "user:{user_id}:orders" holding order ids) are
// maintained by the same script, atomically with the row: the row remembers which sets
// it is in ("__sets"), so an update that changes the grouping column moves the member
// and a delete removes it, even when only the tombstone of a compacted topic is left.
//
// Tables are routed to their own Redis instance (or database), or spread over several
// instances with a consistent-hash Ring; Reader gives applications the same routing
// and the decoding of stored rows.
//
// The value encoding, the reserved fields and the trade-offs are described in
// docs/redis.md.
package redissink
