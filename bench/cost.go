package bench

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// The cost of a pass of an apply stage in CPU time and allocations per row: on a
// busy machine these move far less than its rate does, so a change to a handler
// can be judged by them when the rates of two runs disagree.

// passMeter notes the counters at the start of a pass.
type passMeter struct {
	env            *Env
	self, redis    time.Duration
	pg, kafka      time.Duration
	redisPid       int
	pgPid          int
	kafkaPid       int
	mallocs, bytes uint64
}

// passCost is a pass's cost per row. A server's figure is 0 when it was not
// running when the pass began (it started within the pass: its start-up would
// count).
type passCost struct {
	Self, Redis, Postgres, Kafka float64 // CPU µs per row
	Allocs, AllocBytes           float64 // this process's heap allocations per row
}

// meterPass starts measuring a pass: this process (the Runner and the handler, or
// a reference client), the bench's Redis and Postgres (with its backends) if they
// run, and the dev-kafka holding the workload topic.
func (e *Env) meterPass() *passMeter {
	m := &passMeter{env: e}
	if e.redis != nil {
		m.redisPid = e.redis.Pid()
		m.redis = procCPU(m.redisPid)
	}
	if e.pg != nil {
		m.pgPid = e.pg.Pid()
		m.pg = processTreeCPU(m.pgPid)
	}
	for _, k := range e.kafka {
		if len(e.Brokers) > 0 && k.Addr == e.Brokers[0] && k.cmd.Process != nil {
			m.kafkaPid = k.cmd.Process.Pid
			m.kafka = procCPU(m.kafkaPid)
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs, m.bytes = ms.Mallocs, ms.TotalAlloc
	m.self = procCPU(0)
	return m
}

// stop ends the measurement of a pass that applied rows.
func (m *passMeter) stop(rows uint64) passCost {
	self := procCPU(0) - m.self
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(max(rows, 1)) }
	c := passCost{
		Self:       per(self),
		Allocs:     float64(ms.Mallocs-m.mallocs) / float64(max(rows, 1)),
		AllocBytes: float64(ms.TotalAlloc-m.bytes) / float64(max(rows, 1)),
	}
	if m.redisPid != 0 {
		c.Redis = per(procCPU(m.redisPid) - m.redis)
	}
	if m.pgPid != 0 {
		c.Postgres = per(processTreeCPU(m.pgPid) - m.pg)
	}
	if m.kafkaPid != 0 {
		c.Kafka = per(procCPU(m.kafkaPid) - m.kafka)
	}
	return c
}

// costNote summarises the passes' costs (medians): only the servers the stage
// made work appear.
func costNote(cs []passCost) string {
	if len(cs) == 0 {
		return ""
	}
	med := func(f func(passCost) float64) float64 {
		var v []float64
		for _, c := range cs {
			if x := f(c); x > 0 {
				v = append(v, x)
			}
		}
		if s := spreadOf(v); s != nil {
			return s.Median
		}
		return 0
	}
	parts := []string{fmt.Sprintf("this process %.2f", med(func(c passCost) float64 { return c.Self }))}
	for _, p := range []struct {
		name string
		f    func(passCost) float64
	}{
		{"redis-server", func(c passCost) float64 { return c.Redis }},
		{"Postgres", func(c passCost) float64 { return c.Postgres }},
		{"dev-kafka", func(c passCost) float64 { return c.Kafka }},
	} {
		// Below 0.05 µs a row the server idled through the pass.
		if v := med(p.f); v >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", p.name, v))
		}
	}
	return fmt.Sprintf("CPU µs per row over the whole pass (setup included): %s; %.1f heap allocations, %.0f bytes per row in this process (medians of %d)",
		strings.Join(parts, ", "), med(func(c passCost) float64 { return c.Allocs }), med(func(c passCost) float64 { return c.AllocBytes }), len(cs))
}
