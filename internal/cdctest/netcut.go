package cdctest

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// NetCut is a dialer whose connections can all be cut at once: a Kafka client
// using it (kgo.Dialer(nc.Dial)) then vanishes from the broker's point of view as
// if its process had been killed, without committing or leaving its group.
type NetCut struct {
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

// ErrNetCut is returned by Dial once Cut was called.
var ErrNetCut = errors.New("cdctest: network is cut")

// Dial connects like a net.Dialer, unless the network was cut.
func (n *NetCut) Dial(ctx context.Context, network, host string) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut {
		return nil, ErrNetCut
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, host)
	if err == nil {
		n.conns = append(n.conns, c)
	}
	return c, err
}

// Cut closes every connection and refuses new ones.
func (n *NetCut) Cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = true
	for _, c := range n.conns {
		c.Close()
	}
}
