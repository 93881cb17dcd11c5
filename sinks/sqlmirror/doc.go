// Package sqlmirror copies tables, row by row, from kanal's change topics into
// another database: PostgreSQL (pgx/v5), MySQL or MariaDB
// (go-sql-driver/mysql) or Apache Phoenix (calcite-avatica-go/v5 through the
// Phoenix Query Server).
//
// A Handler mirrors into one target. Mirroring one source into several targets
// means one Handler per target, each registered on its own (so each runs in its
// own consumer group and a slow or dead target never holds up the others):
//
//	h, err := sqlmirror.New(cfg, logger)
//	if err != nil { … }
//	err = reg.Register(h, consumer.Tables("shop.orders", "shop.customers"))
//
// Creates, updates and snapshot reads become upserts, deletes and tombstones
// become deletes; a primary-key change arrives as a delete of the old key and a
// create of the new one. Each batch (the records of one partition, in offset
// order) is written in one transaction of the target together with the
// partition's next offset in the offsets table (Config.OffsetsTable): the
// Handler is a consumer.OffsetStore, so a crash replays nothing twice and a
// batch delivered again is a no-op. Every target row also carries the change
// sequence of its last write in the version column (Config.VersionColumn):
// upserts and deletes only touch rows with an older version, so after a reset
// of the offsets (a replay) an older change never overwrites a newer row.
//
// Values the target cannot hold are reported with a *ValueError naming the
// table, column and value, marked consumer.Permanent so the record is
// dead-lettered. docs/sqlmirror.md has the type mapping per target and the
// loop-safety mechanism for two-way MySQL setups (Config.WriteServerID and
// Config.SkipServerIDs).
package sqlmirror
