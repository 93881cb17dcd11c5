package producer

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// silencePair returns a silenceConn dialed to a loopback listener and the
// server's side of it.
func silencePair(t *testing.T, limit time.Duration) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := silenceDialer(limit)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c, srv
}

// A server that stops sending makes the waiting read fail with a timeout, as
// ReadTimeout did: the producer then reconnects instead of hanging.
func TestSilenceConnFailsASilentRead(t *testing.T) {
	const limit = 200 * time.Millisecond
	c, srv := silencePair(t, limit)
	if _, err := srv.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("first byte: %v", err)
	}
	began := time.Now()
	done := make(chan error, 1)
	go func() { _, err := c.Read(buf); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent read ended with %v, want a deadline error", err)
		}
		if waited := time.Since(began); waited < limit/2 {
			t.Fatalf("silent read failed after %v, before the limit %v", waited, limit)
		}
	case <-time.After(20 * limit):
		t.Fatalf("silent read still waiting after %v (limit %v)", 20*limit, limit)
	}
}

// Time spent not reading (the session waiting for Kafka, go-mysql blocked on a
// full queue) is not silence: data that arrived meanwhile is read fine.
func TestSilenceConnIgnoresTimeNotReading(t *testing.T) {
	// A limit far above the writer's pauses: on a loaded machine a goroutine's
	// sleep can overrun by a hundred milliseconds, which must not look like
	// silence.
	const limit = time.Second
	c, srv := silencePair(t, limit)
	if _, err := srv.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * limit) // not reading, as under backpressure
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read after a pause longer than the limit: %v", err)
	}
	// Steady traffic slower than the limit in total but never silent for it.
	go func() {
		for range 8 {
			time.Sleep(limit / 5)
			if _, err := srv.Write([]byte("y")); err != nil {
				return
			}
		}
	}()
	for i := range 8 {
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			t.Fatalf("read %d of a slow but steady stream: %v", i, err)
		}
	}
}

// A deadline the caller sets (go-mysql's close does, to unblock a read) is kept:
// the watchdog no longer applies its own limit.
func TestSilenceConnKeepsTheCallersDeadline(t *testing.T) {
	const limit = 150 * time.Millisecond
	c, _ := silencePair(t, limit)
	const callers = 6 * limit
	if err := c.SetReadDeadline(time.Now().Add(callers)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read ended with %v, want the caller's deadline", err)
		}
		if waited := time.Since(began); waited < callers-limit {
			t.Fatalf("read failed after %v: the watchdog's %v limit replaced the caller's %v deadline", waited, limit, callers)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller's deadline did not end the read")
	}
}
