package dbconn

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// clientSSL is the CLIENT_SSL capability flag of the MySQL protocol.
const clientSSL = 0x0800

// offersTLS reports whether the MySQL/MariaDB server at addr announces TLS in
// its greeting (the initial handshake packet), reading just that packet. Any
// failure reads as "no": this only chooses the wording of an error.
func offersTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return false
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n < 1 || n > 1<<16 {
		return false
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(conn, p); err != nil || p[0] != 10 { // protocol version 10
		return false
	}
	// server version (NUL-terminated), connection id (4), auth data part 1 (8),
	// filler (1), then the lower two bytes of the capability flags.
	i := 1
	for i < len(p) && p[i] != 0 {
		i++
	}
	i += 1 + 4 + 8 + 1
	if i+2 > len(p) {
		return false
	}
	return binary.LittleEndian.Uint16(p[i:])&clientSSL != 0
}
