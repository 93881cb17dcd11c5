package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MemcachedServer is a private memcached child process.
type MemcachedServer struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port.
	Port int
	// Dir is the server's working directory; its log is memcached.log there.
	Dir string

	t       T
	logPath string
	proc    *proc
}

// Memcached starts a private memcached on 127.0.0.1 (TCP only, 64 MB), waits
// until it answers stats as the process started here and stops it when the
// test ends.
func Memcached(t T) *MemcachedServer {
	t.Helper()
	skipShort(t, "memcached")
	bin := RequireBinary(t, "memcached")
	dir := t.TempDir()
	m := &MemcachedServer{Dir: dir, t: t, logPath: filepath.Join(dir, "memcached.log")}
	began := time.Now()
	t.Cleanup(m.cleanup)
	err := withFreePort(m.logPath, func(port int) error {
		m.Port = port
		m.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{
			"-l", "127.0.0.1",
			"-p", strconv.Itoa(port),
			"-U", "0", // no UDP: its port would be one more to collide on
			"-m", "64",
			"-t", "2",
			"-v",
		}
		// memcached refuses to run as root unless told which user to be.
		if os.Geteuid() == 0 {
			name := "root"
			if u, err := user.Current(); err == nil {
				name = u.Username
			}
			args = append(args, "-u", name)
		}
		p, err := startProc(procSpec{name: "memcached", bin: bin, args: args, dir: dir, logPath: m.logPath})
		if err != nil {
			return err
		}
		m.proc = p
		return p.waitReady(startTimeout, func(ctx context.Context) error { return memcachedOurs(ctx, m.Addr, p.pid()) })
	})
	if err != nil {
		t.Fatal(startFailure(err, m.logPath))
	}
	t.Logf("testenv: memcached on %s (pid %d, start %v)", m.Addr, m.Pid(), time.Since(began).Round(time.Millisecond))
	return m
}

// memcachedOurs checks that the server on addr answers "stats" with the pid
// of the process started here: another test's server may hold the port we
// picked.
func memcachedOurs(ctx context.Context, addr string, pid int) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("stats\r\n")); err != nil {
		return fmt.Errorf("memcached stats: %w", err)
	}
	r := bufio.NewReader(conn)
	got := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("memcached stats: %w", err)
		}
		line = strings.TrimSpace(line)
		if line == "END" {
			break
		}
		if v, ok := strings.CutPrefix(line, "STAT pid "); ok {
			got = v
		}
	}
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is served by another memcached (pid %s, ours is %d)", addr, got, pid)
	}
	return nil
}

// Pid returns the memcached pid.
func (m *MemcachedServer) Pid() int { return m.proc.pid() }

// Kill stops the server with SIGKILL and waits for it to exit.
func (m *MemcachedServer) Kill() { m.proc.kill() }

// Stop shuts the server down with SIGTERM, killing it after 15s.
func (m *MemcachedServer) Stop() {
	if err := m.proc.stop(syscall.SIGTERM, stopTimeout); err != nil {
		m.t.Logf("testenv: %v", err)
	}
}

func (m *MemcachedServer) cleanup() {
	if m.proc == nil {
		return
	}
	m.Stop()
	if m.t.Failed() {
		m.t.Logf("testenv: memcached log %s ends with:\n%s", m.logPath, tailFile(m.logPath, 0, logTailLines))
	}
}
