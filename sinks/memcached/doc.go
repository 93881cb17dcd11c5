// Package memcachedsink keeps chosen MySQL tables in memcached: a
// consumer.Handler that stores each row as a JSON object under a key built from
// a template ("{key}" by default: the Kafka record key "<db>.<table>:<pk>").
//
// Every value leads with the row's version, the producer's change sequence
// (Change.Seq): {"__v":1042,"id":7,"name":"Ann"}. Writes are version-guarded with
// memcached's compare-and-swap: the handler reads the rows of a batch with gets,
// and writes each one with cas (or add, when the key holds nothing) only when its
// change is newer than the stored version; a lost race reads the item again. So
// replays, redeliveries and a zombie consumer's late batches never move a row
// backwards. A delete replaces the row with a tombstone, {"__v":1043,"__deleted":true},
// which expires after Config.TombstoneTTL; until then no older change can bring
// the row back.
//
// memcached is a cache: an item it evicts (memory full) or loses (a restart) is
// gone with its version. Size it so that it does not evict, or run it with -M
// (writes then fail, and the Runner retries them). Reader reads rows back with
// the same key templates and servers; docs/memcached.md has the details.
package memcachedsink
