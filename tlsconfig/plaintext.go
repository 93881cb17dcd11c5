package tlsconfig

import (
	"log/slog"
	"net"
	"strings"
	"sync"
)

// warned holds the servers already warned about, so that a process says it once
// however many clients, pools and reconnects reach the same server.
var warned sync.Map

// WarnPlaintext logs a warning, once per process and server, when addr is a
// network address off this machine that a connection reaches without TLS (or
// with TLS that does not check the server: insecure_skip_verify). server names
// it for people ("source", "kafka broker"), field is the setting that fixes it.
func WarnPlaintext(log *slog.Logger, server, addr, field string, c *Config) {
	if log == nil || (c != nil && c.Enabled && !c.InsecureSkipVerify) || !Remote(addr) {
		return
	}
	key := server + "\x00" + addr
	if _, seen := warned.LoadOrStore(key, true); seen {
		return
	}
	if c != nil && c.Enabled {
		log.Warn("TLS without verifying the server (insecure_skip_verify): anyone in the path can pose as it",
			"server", server, "addr", addr, "setting", field+".insecure_skip_verify")
		return
	}
	log.Warn("plaintext connection to another machine: passwords and data cross the network unencrypted; set "+field,
		"server", server, "addr", addr)
}

// Remote reports whether addr ("host:port", or a bare host) leaves this machine:
// not a loopback IP, not "localhost", not a unix socket path.
func Remote(addr string) bool {
	if addr == "" || strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@") {
		return false
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return false
	}
	if ip := net.ParseIP(host); ip != nil {
		return !ip.IsLoopback()
	}
	return host != ""
}
