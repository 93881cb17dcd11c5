// Package consumer runs Go handlers over kanal's change topics in Kafka consumer
// groups.
//
// A program registers handlers, builds a Runner and runs it:
//
//	reg := consumer.NewRegistry()
//	if err := reg.Register(myHandler, consumer.Tables("shop.*")); err != nil { … }
//	r, err := consumer.NewRunner(cfg, reg, logger)
//	if err != nil { … }
//	err = r.Run(ctx) // until ctx is cancelled
//
// Each handler runs in its own consumer group ("kanal-<name>" unless a Route says
// otherwise), so its offsets, lag, retries and replays are its own. Partitions are
// processed in parallel (Config.Concurrency), one batch at a time per partition, in
// offset order. Offsets are committed only after the handler applied every record
// below them; a crash replays, it never skips.
//
// Handle's error decides what happens to a batch: nil means applied; an error
// marked with Permanent sends the failing record to the dead-letter topic
// "<prefix>._dlq.<group>" without retrying; any other error is retried with
// exponential backoff and then, per Route policy, dead-lettered or the partition is
// halted. A failing batch is bisected at once to find the failing records, so the
// others are still applied in order. Records that cannot be decoded are
// dead-lettered. Dead letters can be re-published with Redrive to the group's
// retry topic "<prefix>._retry.<group>", which every group consumes next to its
// table topics.
//
// Members are static (Config.InstanceID): a member restarted after a crash takes
// its partitions back at once instead of after the session timeout.
//
// Handlers must be idempotent (applying a batch twice equals applying it once, for
// example by keeping each row's Seq and ignoring older changes) or transactional:
// an OffsetStore handler writes its consumer offsets in the same transaction as its
// data and the Runner seeks to them when it is assigned a partition. The
// consumertest package checks both kinds.
package consumer
