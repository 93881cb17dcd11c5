// Package listen decides where kanal's admin listeners (metrics and health of
// the producer and the consumers) bind, so that both sides expose the same
// way: nothing beyond this machine unless the file names an interface.
package listen

import "net"

// Addr is the address to bind for the setting addr: a missing host (":9464")
// means 127.0.0.1, not every interface. "0.0.0.0:9464" (or a pod's IP) binds
// what it says.
func Addr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}
