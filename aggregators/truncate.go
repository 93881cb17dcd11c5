package aggregators

import (
	"fmt"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// truncateError refuses a batch holding a truncate of a summarised table. A
// summary keeps the contribution of every source row it has seen; a TRUNCATE
// removes them all at once, and the rows of the other partitions are not this
// batch's to lock and subtract (see "How it stays exact" in docs/aggregators.md).
// Rather than leave totals that count rows which no longer exist without saying
// so, the truncate is refused as permanent: the Runner applies the records
// around it and dead-letters it, with this reason, and the summaries are to be
// rebuilt.
func truncateError(b consumer.Batch, sums []*summaryRT) error {
	for i := range b.Records {
		r := &b.Records[i]
		if r.Tombstone || r.Op != schemas.OpTruncate {
			continue
		}
		names := make([]string, len(sums))
		for j, s := range sums {
			names[j] = s.Table
		}
		return consumer.Permanent(fmt.Errorf("aggregate: %s/%d@%d: TRUNCATE of %s (seq %d) cannot be applied incrementally: "+
			"summaries %s still count the rows it removed; rebuild them from the changes after it (docs/aggregators.md, \"TRUNCATE\")",
			b.Topic, b.Partition, r.Offset, r.Table, r.Seq, strings.Join(names, ", ")))
	}
	return nil
}
