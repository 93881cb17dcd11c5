package producer

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// silenceConn is a connection to the source that fails a read once the server
// has been silent for limit while we were waiting for it: what go-mysql's
// ReadTimeout is for (a dead peer or a cut network never sends a FIN), without
// its cost. go-mysql arms a fresh read deadline before every packet, and at least
// twice per binlog event; that was ~12 % of the producer's CPU (docs/bench.md).
// Here a watchdog moves the deadline forward a few times per limit instead, and
// only while reads make progress or none is waiting: time the session spends
// not reading (waiting for a Kafka commit, with go-mysql blocked on a full event
// queue) never counts as silence, which ReadTimeout could not tell apart.
//
// Once the caller sets a deadline itself (go-mysql does, to unblock a read when
// it closes), the watchdog stops touching it.
type silenceConn struct {
	net.Conn
	limit time.Duration

	reads   atomic.Uint64 // completed reads
	reading atomic.Bool

	mu    sync.Mutex // orders the watchdog's deadlines against the caller's
	owner bool       // the watchdog sets the read deadline (until the caller does)

	stop      chan struct{}
	closeOnce sync.Once
}

// silenceDialer returns a go-mysql Dialer whose connections give up after limit
// of silence (see silenceConn).
func silenceDialer(limit time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{KeepAlive: limit / 3}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := &silenceConn{Conn: nc, limit: limit, owner: true, stop: make(chan struct{})}
		if err := nc.SetReadDeadline(time.Now().Add(limit)); err != nil {
			nc.Close()
			return nil, err
		}
		go c.watch()
		return c, nil
	}
}

func (c *silenceConn) Read(b []byte) (int, error) {
	c.reading.Store(true)
	n, err := c.Conn.Read(b)
	c.reading.Store(false)
	c.reads.Add(1)
	return n, err
}

func (c *silenceConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owner = false
	return c.Conn.SetDeadline(t)
}

func (c *silenceConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owner = false
	return c.Conn.SetReadDeadline(t)
}

func (c *silenceConn) Close() error {
	c.closeOnce.Do(func() { close(c.stop) })
	return c.Conn.Close()
}

// watch moves the read deadline forward every quarter of the limit unless a read
// has been waiting since the last look without anything arriving: a read then
// fails between 3/4 and all of limit after the server fell silent.
func (c *silenceConn) watch() {
	t := time.NewTicker(c.limit / 4)
	defer t.Stop()
	last := c.reads.Load()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		n := c.reads.Load()
		if n != last || !c.reading.Load() {
			c.mu.Lock()
			if !c.owner {
				c.mu.Unlock()
				return
			}
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.limit))
			c.mu.Unlock()
		}
		last = n
	}
}
