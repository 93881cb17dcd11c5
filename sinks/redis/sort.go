package redissink

// sorted is one instance's share of a fenced batch, sorted by how each row change
// is written in the transaction.
type sorted struct {
	// live are the records at or above the watermark, superseded ones included:
	// each of them moves the watermark.
	live []*op
	// plain are the rows written with plain commands (DEL, then HSET or SET);
	// moves are those of them whose table has secondary sets, whose memberships
	// setsScript moves first.
	plain, moves []*op
	// scripted are the rows applied by applyScript: version-checked ones (the
	// watermark says Redis may hold them at a newer version) and slow ones.
	scripted []*op
	// stale counts the rows below the watermark: applied before.
	stale uint64
}

// sortOps sorts the row changes of one instance's share of a batch against the
// partition's watermark w, setting each live row's checked flag for this attempt.
func sortOps(ops []*op, w watermark) sorted {
	var s sorted
	for _, o := range ops {
		if o.rec.Offset < w.next {
			if !o.dropped {
				s.stale++
			}
			continue
		}
		s.live = append(s.live, o)
		o.checked = false
		switch {
		case o.dropped:
		case w.checks(o):
			o.checked = true
			s.scripted = append(s.scripted, o)
		case o.slow:
			s.scripted = append(s.scripted, o)
		default:
			s.plain = append(s.plain, o)
			if len(o.t.sets) > 0 {
				s.moves = append(s.moves, o)
			}
		}
	}
	return s
}
