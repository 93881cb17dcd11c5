package listen

import (
	"net"
	"testing"
)

func TestAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9464":          "127.0.0.1:9464",
		"0.0.0.0:9464":   "0.0.0.0:9464",
		"10.1.2.3:9464":  "10.1.2.3:9464",
		"[::]:9464":      "[::]:9464",
		"localhost:9464": "localhost:9464",
	} {
		if got := Addr(in); got != want {
			t.Errorf("Addr(%q) = %q, want %q", in, got, want)
		}
	}
	// What it returns for a port-only setting is reachable on loopback only.
	ln, err := net.Listen("tcp", Addr(":0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("bound %v", ip)
	}
}
