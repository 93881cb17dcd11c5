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
	servers        []meteredServer
	self           time.Duration
	mallocs, bytes uint64
}

// meteredServer is a server process whose CPU a pass notes (with its children:
// Postgres's backends).
type meteredServer struct {
	name  string
	pid   int
	start time.Duration
}

// passCost is a pass's cost per row: CPU µs of this process and of each server
// that was running when the pass began (one that started within the pass is
// left out: its start-up would count), and this process's heap allocations.
type passCost struct {
	Self               float64
	Servers            map[string]float64
	Allocs, AllocBytes float64
}

// meterPass starts measuring a pass: this process (the Runner and the handler,
// or a reference client), the bench's sink servers that run, and the
// dev-kafka holding the workload topic.
func (e *Env) meterPass() *passMeter {
	m := &passMeter{}
	add := func(name string, pid int) {
		if pid != 0 {
			m.servers = append(m.servers, meteredServer{name: name, pid: pid, start: processTreeCPU(pid)})
		}
	}
	if e.redis != nil {
		add("redis-server", e.redis.Pid())
	}
	if e.pg != nil {
		add("Postgres", e.pg.Pid())
	}
	if e.target != nil {
		add("MariaDB target", e.target.Pid())
	}
	if e.rabbit != nil {
		add("RabbitMQ", e.rabbit.Pid())
	}
	if e.memcached != nil {
		add("memcached", e.memcached.Pid())
	}
	for _, k := range e.kafka {
		if len(e.Brokers) > 0 && k.Addr == e.Brokers[0] && k.cmd.Process != nil {
			add("dev-kafka", k.cmd.Process.Pid)
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
	n := float64(max(rows, 1))
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / n }
	c := passCost{Self: per(self), Servers: map[string]float64{},
		Allocs: float64(ms.Mallocs-m.mallocs) / n, AllocBytes: float64(ms.TotalAlloc-m.bytes) / n}
	for _, s := range m.servers {
		c.Servers[s.name] = per(processTreeCPU(s.pid) - s.start)
	}
	return c
}

// costNote summarises the passes' costs (medians): only the servers the stage
// made work appear.
func costNote(cs []passCost) string {
	if len(cs) == 0 {
		return ""
	}
	med := func(f func(passCost) (float64, bool)) float64 {
		var v []float64
		for _, c := range cs {
			if x, ok := f(c); ok {
				v = append(v, x)
			}
		}
		if s := spreadOf(v); s != nil {
			return s.Median
		}
		return 0
	}
	parts := []string{fmt.Sprintf("this process %.2f", med(func(c passCost) (float64, bool) { return c.Self, true }))}
	for _, name := range []string{"redis-server", "Postgres", "MariaDB target", "RabbitMQ", "memcached", "dev-kafka"} {
		// Below 0.05 µs a row the server idled through the pass.
		if v := med(func(c passCost) (float64, bool) { x, ok := c.Servers[name]; return x, ok }); v >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, v))
		}
	}
	return fmt.Sprintf("CPU µs per row over the whole pass (setup included): %s; %.1f heap allocations, %.0f bytes per row in this process (medians of %d)",
		strings.Join(parts, ", "), med(func(c passCost) (float64, bool) { return c.Allocs, true }),
		med(func(c passCost) (float64, bool) { return c.AllocBytes, true }), len(cs))
}
