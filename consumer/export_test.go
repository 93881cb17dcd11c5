package consumer

// Abort simulates a crash of r: partitions are dropped at once, nothing more is
// committed and the group is not left. Tests cut the client's network first so
// that nothing the client still has in flight reaches the broker.
func Abort(r *Runner) {
	for _, g := range r.groups {
		g.abort()
	}
}
