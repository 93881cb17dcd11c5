package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQServer is a private RabbitMQ node (rabbitmq-server from Debian, no
// plugins) with its own epmd, both child processes. Everything the node
// writes — its Mnesia database, logs, Erlang cookie — lives in Dir.
type RabbitMQServer struct {
	// URL is "amqp://guest:guest@127.0.0.1:port/" (guest may log in over
	// loopback); with WithRabbitMQTLS "amqps://guest:guest@127.0.0.1:port/"
	// with the CA as cacertfile.
	URL string
	// Addr is "127.0.0.1:port", the AMQP listener.
	Addr string
	// Port is the AMQP port; it stays the same across Restart.
	Port int
	// Node is the Erlang node name, unique per server ("kanal_<port>_<pid>@localhost").
	Node string
	// Dir is the node's base directory; its log is rabbitmq.log there.
	Dir string

	t        T
	bin      string
	epmdBin  string
	logPath  string
	env      []string
	distPort int
	epmdPort int

	mu   sync.Mutex
	proc *proc // the Erlang VM running the node
	epmd *proc

	tls *TLSCerts
}

// RabbitMQOption configures RabbitMQ.
type RabbitMQOption func(*RabbitMQServer)

// WithRabbitMQTLS makes the node listen for AMQP over TLS only (amqps, no
// plaintext listener) with certs' server certificate; clients need no
// certificate of their own.
func WithRabbitMQTLS(certs *TLSCerts) RabbitMQOption {
	return func(r *RabbitMQServer) { r.tls = certs }
}

// rabbitmqServerScript is the node's start script in Debian's layout; the
// rabbitmq-server on PATH is a wrapper that switches to the rabbitmq user.
const rabbitmqServerScript = "/usr/lib/rabbitmq/bin/rabbitmq-server"

var rabbitmqNodes atomic.Int32

// RabbitMQ starts a private RabbitMQ node on 127.0.0.1, waits until it
// accepts AMQP connections as the node started here and stops it when the
// test ends. Startup takes a few seconds (the Erlang VM boots the broker).
//
// The node does not collide with other nodes on the machine, the system's
// included: it has its own epmd (ERL_EPMD_PORT), a random AMQP port
// (RABBITMQ_NODE_PORT) and distribution port (RABBITMQ_DIST_PORT), a unique
// RABBITMQ_NODENAME, and HOME set to Dir, so the Erlang cookie the VM creates
// is private to it. RABBITMQ_CONF_ENV_FILE points at an empty file, so
// /etc/rabbitmq is never read.
func RabbitMQ(t T, opts ...RabbitMQOption) *RabbitMQServer {
	t.Helper()
	skipShort(t, "RabbitMQ")
	bin := rabbitmqServerScript
	if !isExecutable(bin) {
		bin = RequireBinary(t, "rabbitmq-server")
	}
	epmdBin := RequireBinary(t, "epmd")
	dir := t.TempDir()
	r := &RabbitMQServer{Dir: dir, t: t, bin: bin, epmdBin: epmdBin, logPath: filepath.Join(dir, "rabbitmq.log")}
	for _, o := range opts {
		o(r)
	}
	began := time.Now()
	t.Cleanup(r.cleanup)
	err := withFreePort(r.logPath, func(port int) error {
		if err := r.configure(port); err != nil {
			return err
		}
		return r.start()
	})
	if err != nil {
		t.Fatal(startFailure(err, r.logPath))
	}
	t.Logf("testenv: RabbitMQ node %s on %s (pid %d, start %v)", r.Node, r.Addr, r.Pid(), time.Since(began).Round(time.Millisecond))
	return r
}

// configure picks the node's name and ports and writes its configuration.
func (r *RabbitMQServer) configure(port int) error {
	dist, err := freePort()
	if err != nil {
		return err
	}
	epmdPort, err := freePort()
	if err != nil {
		return err
	}
	r.Port, r.distPort, r.epmdPort = port, dist, epmdPort
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r.URL = "amqp://guest:guest@" + r.Addr + "/"
	r.Node = fmt.Sprintf("kanal_%d_%d_%d@localhost", port, os.Getpid(), rabbitmqNodes.Add(1))

	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\ncluster_name = %s\nlog.console = true\nlog.console.level = info\n", port, r.Node)
	if c := r.tls; c != nil {
		r.URL = "amqps://guest:guest@" + r.Addr + "/?cacertfile=" + c.CA
		conf = fmt.Sprintf("listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:%d\ncluster_name = %s\nlog.console = true\nlog.console.level = info\n"+
			"ssl_options.cacertfile = %s\nssl_options.certfile = %s\nssl_options.keyfile = %s\n"+
			"ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n", port, r.Node, c.CA, c.ServerCert, c.ServerKey)
	}
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"rabbitmq-env.conf": "",
		"enabled_plugins":   "[].\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.Dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("rabbitmq config: %w", err)
		}
	}
	// A cookie of our own, so the node never reads or creates the user's
	// ~/.erlang.cookie; the VM insists on mode 0400.
	cookie := filepath.Join(r.Dir, ".erlang.cookie")
	if _, err := os.Stat(cookie); os.IsNotExist(err) {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		if err := os.WriteFile(cookie, []byte(strings.ToUpper(hex.EncodeToString(b))), 0o400); err != nil {
			return fmt.Errorf("rabbitmq cookie: %w", err)
		}
	}

	env := make([]string, 0, len(os.Environ())+20)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RABBITMQ_") || strings.HasPrefix(k, "ERL_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	r.env = append(env,
		"HOME="+r.Dir,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(r.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(r.Dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(r.Dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(r.Dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(r.Dir, "log"),
		"RABBITMQ_LOGS=-", // to stdout, that is rabbitmq.log
		"RABBITMQ_PID_FILE="+filepath.Join(r.Dir, "rabbitmq.pid"),
		"RABBITMQ_NODENAME="+r.Node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"ERL_CRASH_DUMP="+filepath.Join(r.Dir, "erl_crash.dump"),
		// With input allowed the start script execs the VM instead of
		// running it under a signal-forwarding shell: the pid we hold is the
		// VM's, so a stop signal and the parent-death signal reach it.
		// -noinput keeps it from reading stdin all the same.
		"RABBITMQ_ALLOW_INPUT=true",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput -kernel inet_dist_use_interface {127,0,0,1}",
	)
	return nil
}

// start starts epmd and the node and waits until the node is ready.
func (r *RabbitMQServer) start() error {
	// The VM would start a shared, daemonised epmd otherwise, which outlives
	// the test; ours runs in the foreground as a child and is stopped by pid.
	ep, err := startProc(procSpec{
		name:    "epmd",
		bin:     r.epmdBin,
		args:    []string{"-port", strconv.Itoa(r.epmdPort), "-address", "127.0.0.1"},
		dir:     r.Dir,
		logPath: r.logPath,
		env:     r.env,
	})
	if err != nil {
		return err
	}
	if err := ep.waitReady(startTimeout, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.epmdPort)))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return r.portClash(err)
	}
	p, err := startProc(procSpec{name: "rabbitmq-server", bin: r.bin, dir: r.Dir, logPath: r.logPath, env: r.env})
	if err != nil {
		_ = ep.stop(syscall.SIGTERM, stopTimeout)
		return err
	}
	r.mu.Lock()
	r.proc, r.epmd = p, ep
	r.mu.Unlock()
	if err := p.waitReady(startTimeout, func(ctx context.Context) error { return rabbitmqOurs(ctx, r.URL, r.Node) }); err != nil {
		_ = ep.stop(syscall.SIGTERM, stopTimeout)
		return r.portClash(err)
	}
	return nil
}

// portClash notes in the log when a start failed because a port was taken, in
// the words withFreePort looks for: Erlang says "eaddrinuse".
func (r *RabbitMQServer) portClash(err error) error {
	if strings.Contains(tailFile(r.logPath, 0, 200), "eaddrinuse") {
		if f, ferr := os.OpenFile(r.logPath, os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
			fmt.Fprintln(f, "### testenv: Address already in use (eaddrinuse)")
			f.Close()
		}
	}
	return err
}

// rabbitmqOurs checks that the broker on url accepts an AMQP connection and is
// the node started here: another test's broker may hold the port we picked.
func rabbitmqOurs(ctx context.Context, url, node string) error {
	cfg := amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if got, _ := conn.Properties["cluster_name"].(string); got != node {
		return fmt.Errorf("%s is served by another RabbitMQ node (%q)", url, got)
	}
	return nil
}

// Pid returns the pid of the node's Erlang VM.
func (r *RabbitMQServer) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc.pid()
}

// Kill stops the node with SIGKILL and waits for it to exit; its epmd keeps
// running, so Restart can bring it back.
func (r *RabbitMQServer) Kill() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	p.kill()
}

// Stop shuts the node down with SIGTERM (the broker stops cleanly; durable
// queues and persistent messages survive), killing it after 15s. Its epmd
// keeps running until the test ends, so Restart can bring the node back.
func (r *RabbitMQServer) Stop() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if err := p.stop(syscall.SIGTERM, stopTimeout); err != nil {
		r.t.Logf("testenv: %v", err)
	}
}

// Restart starts the node again after Stop or Kill, on the same ports and
// with the same data. Call it from the test goroutine.
func (r *RabbitMQServer) Restart() {
	r.t.Helper()
	r.mu.Lock()
	old := r.proc
	r.mu.Unlock()
	if !old.exited() {
		r.t.Fatalf("testenv: RabbitMQ Restart while the node (pid %d) runs; Stop or Kill it first", old.pid())
	}
	off := fileSize(r.logPath)
	p, err := startProc(procSpec{name: "rabbitmq-server", bin: r.bin, dir: r.Dir, logPath: r.logPath, env: r.env})
	if err == nil {
		r.mu.Lock()
		r.proc = p
		r.mu.Unlock()
		err = p.waitReady(startTimeout, func(ctx context.Context) error { return rabbitmqOurs(ctx, r.URL, r.Node) })
	}
	if err != nil {
		r.t.Fatalf("testenv: RabbitMQ restart: %v\n%s", err, tailFile(r.logPath, off, logTailLines))
	}
}

func (r *RabbitMQServer) cleanup() {
	r.mu.Lock()
	p, ep := r.proc, r.epmd
	r.mu.Unlock()
	if p != nil {
		r.Stop()
	}
	if ep != nil {
		if err := ep.stop(syscall.SIGTERM, stopTimeout); err != nil {
			r.t.Logf("testenv: %v", err)
		}
	}
	if p != nil && r.t.Failed() {
		r.t.Logf("testenv: RabbitMQ log %s ends with:\n%s", r.logPath, tailFile(r.logPath, 0, logTailLines))
	}
}
