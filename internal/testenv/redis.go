package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisServer is a private redis-server child process without persistence.
type RedisServer struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port.
	Port int
	// Dir is the server's working directory; its log is redis.log there.
	Dir string

	t       T
	logPath string
	proc    *proc
}

// Redis starts a private Redis server on 127.0.0.1, waits until it answers
// PING and stops it when the test ends.
func Redis(t T) *RedisServer {
	t.Helper()
	skipShort(t, "Redis")
	bin := RequireBinary(t, "redis-server")
	dir := t.TempDir()
	r := &RedisServer{Dir: dir, t: t, logPath: filepath.Join(dir, "redis.log")}
	began := time.Now()
	t.Cleanup(r.cleanup)
	err := withFreePort(r.logPath, func(port int) error {
		r.Port = port
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc(procSpec{
			name: "redis-server",
			bin:  bin,
			args: []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				"--daemonize", "no",
				"--logfile", "",
			},
			dir:     dir,
			logPath: r.logPath,
		})
		if err != nil {
			return err
		}
		r.proc = p
		return p.waitReady(startTimeout, func(ctx context.Context) error { return redisOurs(ctx, r.Addr, dir) })
	})
	if err != nil {
		t.Fatal(startFailure(err, r.logPath))
	}
	t.Logf("testenv: Redis on %s (pid %d, start %v)", r.Addr, r.Pid(), time.Since(began).Round(time.Millisecond))
	return r
}

// redisOurs checks that the server on addr accepts commands and is the one started
// in dir: another test's server may hold the port we picked.
func redisOurs(ctx context.Context, addr, dir string) error {
	if err := redisPing(ctx, addr); err != nil {
		return err
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	got, err := c.ConfigGet(ctx, "dir").Result()
	if err != nil {
		return fmt.Errorf("redis config get dir: %w", err)
	}
	if filepath.Clean(got["dir"]) != filepath.Clean(dir) {
		return fmt.Errorf("%s is served by another redis-server (dir %s)", addr, got["dir"])
	}
	return nil
}

// redisPing speaks just enough RESP to know the server accepts commands,
// which a bare TCP connect does not prove while it is still loading.
func redisPing(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis ping: got %q", strings.TrimSpace(line))
	}
	return nil
}

// Pid returns the redis-server pid.
func (r *RedisServer) Pid() int { return r.proc.pid() }

// Kill stops the server with SIGKILL and waits for it to exit.
func (r *RedisServer) Kill() { r.proc.kill() }

// Stop shuts the server down with SIGTERM, killing it after 15s.
func (r *RedisServer) Stop() {
	if err := r.proc.stop(syscall.SIGTERM, stopTimeout); err != nil {
		r.t.Logf("testenv: %v", err)
	}
}

func (r *RedisServer) cleanup() {
	if r.proc == nil {
		return
	}
	r.Stop()
	if r.t.Failed() {
		r.t.Logf("testenv: Redis log %s ends with:\n%s", r.logPath, tailFile(r.logPath, 0, logTailLines))
	}
}
