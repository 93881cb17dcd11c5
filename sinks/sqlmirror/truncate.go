package sqlmirror

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
)

// truncateSQL deletes the rows of a target table that are older than a
// truncate: every row whose version is below the truncate's sequence (or that
// has none). A row written after the truncate carries a newer version, so a
// partition that is behind (its truncate still to come) or ahead (already past
// it) leaves the mirror right, and applying the truncate again deletes nothing
// more.
func truncateSQL(d dialect, target, version string) string {
	return "DELETE FROM " + d.quote(target) + " WHERE " + d.quote(version) + " IS NULL OR " + d.quote(version) + " < " + d.param(0)
}

// truncate applies a truncate record in the batch's transaction.
func (h *Handler) truncate(ctx context.Context, tx *sql.Tx, r *consumer.Record) error {
	seq := r.Change.Seq
	if seq == 0 {
		return consumer.Permanent(fmt.Errorf("sqlmirror: truncate of %s at offset %d has no sequence (kanal.seq): "+
			"the rows it removed cannot be told from later ones", r.Table, r.Offset))
	}
	if seq > math.MaxInt64 {
		return consumer.Permanent(fmt.Errorf("sqlmirror: truncate of %s: seq %d does not fit the version column", r.Table, seq))
	}
	target := ""
	if tc := h.tables[r.Table]; tc != nil {
		target = tc.Target
	}
	if target == "" {
		_, target, _ = strings.Cut(r.Table, ".")
	}
	h.log.InfoContext(ctx, "applying truncate", "table", r.Table, "target", target, "offset", r.Offset, "seq", seq)
	return h.exec(ctx, tx, r, truncateSQL(h.d, target, h.cfg.VersionColumn), []any{int64(seq)})
}
