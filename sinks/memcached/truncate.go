package memcachedsink

import (
	"errors"
	"fmt"

	"github.com/kanal-cdc/kanal/consumer"
)

// ErrTruncate is wrapped by the permanent error of a truncate record: the sink
// cannot apply one (see truncateError).
var ErrTruncate = errors.New("truncate cannot be applied")

// truncateError refuses a truncate record. A truncate removes every row of the
// table older than it, but memcached cannot list the keys it holds (no command
// enumerates keys reliably, and a key template need not say which table a key
// belongs to), so the sink has no way to find the table's rows. Rather than
// leave them cached without saying so, the truncate is refused as permanent: the
// Runner applies the records around it and dead-letters it with this reason,
// naming the table, the truncate's key, position and sequence and what to do.
func truncateError(b consumer.Batch, rec *consumer.Record) error {
	pos := rec.Pos
	if pos == "" {
		pos = "unknown"
	}
	return consumer.Permanent(fmt.Errorf("memcached sink: %s/%d: offset %d: %w: TRUNCATE of %s (key %q, position %s, seq %d): "+
		"memcached cannot list the table's keys, so its rows from before the truncate stay cached; "+
		"delete their items or flush the servers and rebuild from the records after the truncate (docs/memcached.md, \"TRUNCATE\")",
		b.Topic, b.Partition, rec.Offset, ErrTruncate, rec.Table, rec.Key, pos, rec.Seq))
}
