package redissink

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The version-checked path: batches without Kafka coordinates (ApplyChanges, a
// batch whose offsets are out of order) are applied by applyScript, which writes
// each row only when it is newer than what Redis holds. The fenced path
// (fenced.go) runs the same script calls for the rows it must version-check.

// A script call applies up to chunkRows row changes, and more than one only while
// their arguments stay within chunkArgs: this saves Redis a command dispatch and a
// script setup per row (~25% more rows/s than one EVALSHA per row).
const (
	chunkRows = 64
	chunkArgs = 4096
)

// A batch of one instance is split into up to roundTrips round trips (of at least
// minRoundTrip changes each) that run concurrently; see applyInstance.
const (
	roundTrips   = 4
	minRoundTrip = 64
)

// apply runs the script calls, instances in parallel.
func (h *Handler) apply(ctx context.Context, pk partKey, ops []*op) error {
	insts, shares := byInstance(ops)
	return each(len(insts), 0, func(i int) error { return h.applyInstance(ctx, pk, insts[i], shares[i]) })
}

// applyInstance sends an instance's row changes as round trips of at most
// PipelineMax changes, up to roundTrips of them at a time on their own connections.
// One round trip at a time would leave Redis idle while the handler encodes the next
// one and the handler idle while Redis runs the script: overlapping them is worth
// ~1.5x rows/s. The rows of a batch are distinct keys (Handle keeps a row's last
// change only), so the order in which round trips run does not matter.
func (h *Handler) applyInstance(ctx context.Context, pk partKey, name string, ops []*op) error {
	cl := h.r.clients[name]
	size := min(h.r.cfg.PipelineMax, max(minRoundTrip, (len(ops)+roundTrips-1)/roundTrips))
	var parts [][]*op
	for len(ops) > 0 {
		n := min(len(ops), size)
		parts = append(parts, ops[:n])
		ops = ops[n:]
	}
	return each(len(parts), roundTrips, func(i int) error { return h.roundTrip(ctx, pk, name, cl, parts[i]) })
}

// scriptCall is one applyScript call: its rows, keys and arguments.
type scriptCall struct {
	rows []*op
	keys []string
	args []any
}

// scriptCalls splits rows into applyScript calls of up to chunkRows rows, and more
// than one only while their arguments stay within chunkArgs.
func (h *Handler) scriptCalls(rows []*op) []scriptCall {
	var calls []scriptCall
	for rest := rows; len(rest) > 0; {
		n, nargs := 0, 1
		for n < len(rest) && n < chunkRows {
			a := scriptHeader + len(rest[n].values)
			if n > 0 && nargs+a > chunkArgs {
				break
			}
			nargs += a
			n++
		}
		c := scriptCall{rows: rest[:n], keys: make([]string, 0, 2*n), args: make([]any, 0, nargs)}
		c.args = append(c.args, h.ttl)
		for _, o := range c.rows {
			kind, ver := o.scriptOp()
			c.keys = append(c.keys, o.key, o.tomb)
			c.args = append(c.args, kind.code(), ver, o.t.layout.code(), o.sets, len(o.values))
			c.args = append(c.args, o.values...)
		}
		calls = append(calls, c)
		rest = rest[n:]
	}
	return calls
}

// scriptHeader is the number of applyScript arguments a row takes besides its
// values: op, version, layout, sets and the values' count.
const scriptHeader = 5

// roundTrip sends up to PipelineMax row changes in one round trip, as script calls
// of up to chunkRows changes each. When Redis does not know the script (it restarted,
// or SCRIPT FLUSH ran) it loads it and sends them again: the changes that were applied
// the first time are skipped by their version check.
func (h *Handler) roundTrip(ctx context.Context, pk partKey, name string, cl *redis.Client, ops []*op) error {
	calls := h.scriptCalls(ops)
	for attempt := 0; ; attempt++ {
		pipe := cl.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = pipe.EvalSha(ctx, applySHA, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		noScript := false
		for i, cmd := range cmds {
			cerr := cmd.Err()
			if cerr != nil {
				if strings.HasPrefix(cerr.Error(), "NOSCRIPT") {
					noScript = true
				}
				continue
			}
			// A row the script rejects is an error in its slot of the reply.
			res, _ := cmd.Val().([]any)
			for j, v := range res {
				rerr, ok := v.(error)
				if !ok || !strings.Contains(rerr.Error(), "KANAL ") || j >= len(calls[i].rows) {
					continue
				}
				return h.rejected(ctx, name, pk, calls[i].rows[j:j+1], rerr)
			}
		}
		if err == nil {
			return h.count(name, cmds, len(ops))
		}
		if !noScript || attempt > 0 {
			return fmt.Errorf("redis sink: instance %s: %s: %s: %w", name, partName(pk), describeRows(pk, ops), err)
		}
		h.log.InfoContext(ctx, "loading the apply script", "instance", name)
		if err := cl.ScriptLoad(ctx, applyScript).Err(); err != nil {
			return fmt.Errorf("redis sink: instance %s: SCRIPT LOAD: %w", name, err)
		}
	}
}

// count adds the script's per-row results to the counters; it fails when the replies
// do not hold one result per row sent.
func (h *Handler) count(inst string, cmds []*redis.Cmd, rows int) error {
	var n counts
	got := 0
	for _, c := range cmds {
		res, _ := c.Val().([]any)
		got += len(res)
		for _, v := range res {
			if v, ok := v.(int64); ok {
				n.add(v)
			}
		}
	}
	h.addCounts(n)
	if got != rows {
		return fmt.Errorf("redis sink: instance %s: the apply script answered %d results for %d changes", inst, got, rows)
	}
	return nil
}
