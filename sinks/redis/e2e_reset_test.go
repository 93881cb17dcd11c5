package redissink_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kanal-cdc/kanal/consumer"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestEndToEndResetHeals: Redis loses rows behind the consumer's back (as a
// restart without fsync loses the last writes after the watermarks had moved on):
// restarting the group does not bring them back, since every record is below the
// watermarks. `kanal offsets reset --to earliest` — consumer.ResetGroup with the
// handler as the group's OffsetResetter, as the command runs it — also resets the
// watermarks; the replay from earliest, while the producer keeps writing, then
// re-applies what was lost through the version check and Redis equals the source.
func TestEndToEndResetHeals(t *testing.T) {
	srv := startRedis(t)
	p := newPipeline(t, 11, "delete", e2eSink(map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}, []string{"main"}, "main"))
	first := p.startRunner("kanal-redis")
	p.steps(80)
	p.waitApplied(first.group)
	p.check()
	first.stop(t, false)

	// A third of the rows are lost, each with its set memberships: Redis loses
	// whole transactions, never a row without its sets.
	ctx := ctxT(t)
	cl := client(t, srv.Addr, 0)
	lost := 0
	for _, pattern := range []string{"kc:wl.items:*", "kc:wl.pairs:*"} {
		for i, k := range cl.Keys(ctx, pattern).Val() {
			if i%3 != 0 {
				continue
			}
			if sets := cl.HGet(ctx, k, redissink.FieldSets).Val(); sets != "" {
				ms := netstrings(t, sets)
				for j := 0; j+1 < len(ms); j += 2 {
					cl.SRem(ctx, ms[j], ms[j+1])
				}
			}
			cl.Del(ctx, k)
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("no rows to lose")
	}

	h := newHandler(t, p.sink) // what `kanal offsets reset --config` builds
	adm := kadm.NewClient(p.k.Client(t))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := consumer.ResetGroup(ctx, adm, first.group, "", consumer.ResetTo{Earliest: true}, h)
		if err == nil {
			break
		}
		if !errors.Is(err, consumer.ErrGroupActive) || time.Now().After(deadline) {
			t.Fatalf("reset: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	second := p.startRunner(first.group)
	p.steps(40)
	p.waitApplied(second.group)
	p.check()
	t.Logf("lost %d rows; the replay: %+v", lost, second.h.Stats())
}

// netstrings decodes "len:text" items, as "__sets" holds them.
func netstrings(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for s != "" {
		n, rest, ok := strings.Cut(s, ":")
		l, err := strconv.Atoi(n)
		if !ok || err != nil || l > len(rest) {
			t.Fatalf("bad netstring list %q", s)
		}
		out = append(out, rest[:l])
		s = rest[l:]
	}
	return out
}
