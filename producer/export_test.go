package producer

import (
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

// SetEmitHook installs a function called after each change is handed to Kafka, with
// the number of changes so far. Tests use it to stop at an exact point.
func SetEmitHook(p *Producer, fn func(changes uint64)) { p.emitHook = fn }

// SetSnapshotReadHook installs a function the snapshot reader calls after each
// chunk's consistent snapshot began and before its SELECT, with the table and the
// number of chunks of it read before (in this session). Tests change rows there
// that the chunk must not see.
func SetSnapshotReadHook(p *Producer, fn func(table string, chunk int)) { p.snapReadHook = fn }

// SetHeldCommitAfter changes how long complete binlog transactions may wait in
// the open Kafka transaction for a large one being written (heldCommitAfter).
func SetHeldCommitAfter(p *Producer, d time.Duration) { p.heldAfter = d }

// SetCommitHook installs a function called after each Kafka commit with the
// position committed with it.
func SetCommitHook(p *Producer, fn func(pos schemas.Position)) { p.commitHook = fn }
