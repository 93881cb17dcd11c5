package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
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
	// Port is the TCP port (the TLS port under WithRedisTLS: the server then
	// has no plaintext port).
	Port int
	// Dir is the server's working directory; its log is redis.log there.
	Dir string
	// Username and Password are the ACL user of WithRedisUser ("" otherwise).
	Username, Password string

	t       T
	logPath string
	proc    *proc
	tls     *tls.Config // the harness's client side under WithRedisTLS
}

// RedisOption configures Redis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	certs             *TLSCerts
	requireClientCert bool
	user, password    string
}

// WithRedisTLS makes the server speak TLS only (tls-port, no plaintext port)
// with certs' server certificate; requireClientCert makes it require a client
// certificate signed by certs' CA (tls-auth-clients yes).
func WithRedisTLS(certs *TLSCerts, requireClientCert bool) RedisOption {
	return func(c *redisConfig) { c.certs, c.requireClientCert = certs, requireClientCert }
}

// WithRedisUser turns the default user off and adds an ACL user with every
// permission: connections must AUTH as it.
func WithRedisUser(user, password string) RedisOption {
	return func(c *redisConfig) { c.user, c.password = user, password }
}

// Redis starts a private Redis server on 127.0.0.1, waits until it answers
// PING and stops it when the test ends.
func Redis(t T, opts ...RedisOption) *RedisServer {
	t.Helper()
	skipShort(t, "Redis")
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	bin := RequireBinary(t, "redis-server")
	dir := t.TempDir()
	r := &RedisServer{Dir: dir, t: t, logPath: filepath.Join(dir, "redis.log"), Username: cfg.user, Password: cfg.password}
	if cfg.certs != nil {
		r.tls = cfg.certs.ClientConfig()
	}
	began := time.Now()
	t.Cleanup(r.cleanup)
	err := withFreePort(r.logPath, func(port int) error {
		r.Port = port
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--daemonize", "no",
			"--logfile", "",
		}
		if c := cfg.certs; c != nil {
			auth := "no"
			if cfg.requireClientCert {
				auth = "yes"
			}
			args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
				"--tls-cert-file", c.ServerCert, "--tls-key-file", c.ServerKey,
				"--tls-ca-cert-file", c.CA, "--tls-auth-clients", auth)
		}
		if cfg.user != "" {
			args = append(args, "--user", "default", "off",
				"--user", cfg.user, "on", ">"+cfg.password, "~*", "&*", "+@all")
		}
		p, err := startProc(procSpec{
			name:    "redis-server",
			bin:     bin,
			args:    args,
			dir:     dir,
			logPath: r.logPath,
		})
		if err != nil {
			return err
		}
		r.proc = p
		return p.waitReady(startTimeout, func(ctx context.Context) error { return r.ours(ctx) })
	})
	if err != nil {
		t.Fatal(startFailure(err, r.logPath))
	}
	t.Logf("testenv: Redis on %s (pid %d, start %v)", r.Addr, r.Pid(), time.Since(began).Round(time.Millisecond))
	return r
}

// ours checks that the server accepts commands and is the one started in
// r.Dir: another test's server may hold the port we picked.
func (r *RedisServer) ours(ctx context.Context) error {
	if r.tls == nil && r.Username == "" {
		if err := redisPing(ctx, r.Addr); err != nil {
			return err
		}
	}
	opts := r.Options()
	opts.MaxRetries = -1
	c := goredis.NewClient(opts)
	defer c.Close()
	got, err := c.ConfigGet(ctx, "dir").Result()
	if err != nil {
		return fmt.Errorf("redis config get dir: %w", err)
	}
	if filepath.Clean(got["dir"]) != filepath.Clean(r.Dir) {
		return fmt.Errorf("%s is served by another redis-server (dir %s)", r.Addr, got["dir"])
	}
	return nil
}

// Options returns go-redis options that reach the server as the harness does:
// with TLS (trusting the CA, offering the client certificate) and the ACL user
// when the server wants them.
func (r *RedisServer) Options() *goredis.Options {
	o := &goredis.Options{Addr: r.Addr, Username: r.Username, Password: r.Password, DisableIdentity: true}
	if r.tls != nil {
		o.TLSConfig = r.tls.Clone()
	}
	return o
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
