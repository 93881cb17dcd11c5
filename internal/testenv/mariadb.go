package testenv

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	// MariaDBUser is the account every MariaDB server gets for the code
	// under test; it holds all privileges, replication included.
	MariaDBUser = "kanal"
	// MariaDBPassword is MariaDBUser's password.
	MariaDBPassword = "kanal-secret"
	// DefaultServerID is the MariaDB server_id unless WithServerID says
	// otherwise. Binlog readers need their own, different id.
	DefaultServerID uint32 = 1
)

// MariaDBServer is a private mariadbd child process with a ROW/FULL binlog, as a
// CDC source needs. Its methods are safe for concurrent use, except that
// Restart must be called from the test goroutine.
type MariaDBServer struct {
	// Host is the address the server listens on, always 127.0.0.1.
	Host string
	// Port is the TCP port; it stays the same across Restart.
	Port int
	// User and Password are the non-root account (MariaDBUser).
	User     string
	Password string
	// ServerID is the server's server_id.
	ServerID uint32
	// DataDir is the data directory; binlog files live in it as binlog.NNNNNN.
	DataDir string

	t       T
	bin     string
	base    string
	socket  string
	logPath string
	extra   []string
	// rootTLS, when set, is how the root pool connects (WithTLS).
	rootTLS *tls.Config

	mu   sync.Mutex
	proc *proc
	db   *sql.DB
}

// MariaDBOption configures MariaDB.
type MariaDBOption func(*mariadbConfig)

type mariadbConfig struct {
	serverID uint32
	args     []string
	tls      *TLSCerts
}

// WithServerID sets the server's server_id (default DefaultServerID).
func WithServerID(id uint32) MariaDBOption {
	return func(c *mariadbConfig) { c.serverID = id }
}

// WithArgs appends mariadbd options; later options win, so these override
// the defaults (for example "--max-binlog-size=4096" to force rotation).
func WithArgs(extra ...string) MariaDBOption {
	return func(c *mariadbConfig) { c.args = append(c.args, extra...) }
}

// WithTLS makes the server require TLS on every TCP connection
// (require_secure_transport=ON) with certs' server certificate; the server
// does not ask for client certificates. DB then connects with TLS; DSN is left
// plaintext, so that tests can see the refusal.
func WithTLS(certs *TLSCerts) MariaDBOption {
	return func(c *mariadbConfig) { c.tls = certs }
}

// MariaDB starts a private MariaDB server on 127.0.0.1 with a fresh data
// directory, waits until it answers SELECT 1, creates the MariaDBUser
// account and stops the server when the test ends.
func MariaDB(t T, opts ...MariaDBOption) *MariaDBServer {
	t.Helper()
	skipShort(t, "MariaDB")
	cfg := mariadbConfig{serverID: DefaultServerID}
	for _, o := range opts {
		o(&cfg)
	}
	bin := RequireBinary(t, "mariadbd")
	installDB := RequireBinary(t, "mariadb-install-db")

	base := t.TempDir()
	m := &MariaDBServer{
		Host:     "127.0.0.1",
		User:     MariaDBUser,
		Password: MariaDBPassword,
		ServerID: cfg.serverID,
		DataDir:  filepath.Join(base, "data"),
		t:        t,
		bin:      bin,
		base:     base,
		socket:   filepath.Join(base, "mysqld.sock"),
		logPath:  filepath.Join(base, "mariadb.log"),
		extra:    cfg.args,
	}
	if cfg.tls != nil {
		m.extra = append([]string{"--ssl-ca=" + cfg.tls.CA, "--ssl-cert=" + cfg.tls.ServerCert,
			"--ssl-key=" + cfg.tls.ServerKey, "--require-secure-transport=ON"}, m.extra...)
		m.rootTLS = cfg.tls.ClientConfig()
	}
	// A unix socket path is limited to 108 bytes and long test names make
	// long temp dirs; the socket is unused by tests, it only has to differ
	// from the system server's.
	if len(m.socket) > 100 {
		dir, err := os.MkdirTemp("", "kmdb")
		if err != nil {
			t.Fatalf("testenv: MariaDB socket dir: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		m.socket = filepath.Join(dir, "sock")
	}

	began := time.Now()
	key := []string{"mariadb-v1", binaryKey(bin), binaryKey(installDB), strconv.Itoa(os.Geteuid())}
	if err := initDataDir("mariadb", key, m.DataDir, nil, func(dataDir string) error {
		return mariadbInstallDB(installDB, dataDir)
	}); err != nil {
		t.Fatalf("testenv: initialise MariaDB data directory: %v", err)
	}
	initDone := time.Now()

	t.Cleanup(m.cleanup)
	err := withFreePort(m.logPath, func(port int) error {
		m.Port = port
		return m.start()
	})
	if err != nil {
		t.Fatal(startFailure(err, m.logPath))
	}
	if err := m.createUser(); err != nil {
		t.Fatalf("testenv: MariaDB create user: %v", err)
	}
	t.Logf("testenv: MariaDB on %s (pid %d, datadir init %v, start %v)", m.Addr(), m.Pid(),
		initDone.Sub(began).Round(time.Millisecond), time.Since(initDone).Round(time.Millisecond))
	return m
}

// mariadbInstallDB creates a data directory holding only the system tables.
func mariadbInstallDB(installDB, dataDir string) error {
	args := []string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		// Must match the server's value, or the first start rebuilds the
		// redo log.
		"--innodb-log-file-size=8M",
		"--innodb-buffer-pool-size=32M",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return runInit("mariadb-install-db", installDB, args, filepath.Dir(dataDir), nil)
}

func (m *MariaDBServer) serverArgs() []string {
	args := []string{
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--socket=" + m.socket,
		"--pid-file=" + filepath.Join(m.base, "mariadb.pid"),
		"--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--server-id=" + strconv.FormatUint(uint64(m.ServerID), 10),
		"--log-bin=" + filepath.Join(m.DataDir, "binlog"),
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--binlog-row-metadata=FULL",
		"--character-set-server=utf8mb4",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M",
		// Commits reach the OS page cache, not the disk: that survives a
		// SIGKILL of mariadbd (what crash tests do), only a machine crash
		// would lose it, and tests get several times faster.
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		// Containers and some CI kernels refuse io_uring/libaio.
		"--innodb-use-native-aio=0",
		"--aria-pagecache-buffer-size=8M",
		"--key-buffer-size=1M",
		"--performance-schema=OFF",
		"--max-connections=200",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return append(args, m.extra...)
}

// start launches mariadbd on m.Port and waits until root can run SELECT 1.
func (m *MariaDBServer) start() error {
	p, err := startProc(procSpec{
		name:    "mariadbd",
		bin:     m.bin,
		args:    m.serverArgs(),
		dir:     m.base,
		logPath: m.logPath,
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()

	// The pool outlives restarts so callers may keep the *sql.DB they got;
	// it is opened on the first start because only then is the port fixed.
	m.mu.Lock()
	db := m.db
	m.mu.Unlock()
	fresh := db == nil
	if fresh {
		rc := m.dsnConfig("")
		rc.User, rc.Passwd, rc.TLS = "root", "", m.rootTLS
		conn, err := mysql.NewConnector(rc)
		if err != nil {
			p.kill()
			return fmt.Errorf("open MariaDB pool: %w", err)
		}
		db = sql.OpenDB(conn)
	}
	err = p.waitReady(startTimeout, func(ctx context.Context) error {
		// Another test's server may hold the port we picked (packages run in
		// parallel, and every copy of the template accepts root without a
		// password): only our own datadir proves it is our server.
		var dir string
		if err := db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&dir); err != nil {
			return err
		}
		if filepath.Clean(dir) != filepath.Clean(m.DataDir) {
			return fmt.Errorf("port %d is served by another server (datadir %s)", m.Port, dir)
		}
		return nil
	})
	if err != nil {
		if fresh {
			db.Close()
		}
		return err
	}
	if fresh {
		m.mu.Lock()
		m.db = db
		m.mu.Unlock()
	}
	return nil
}

func (m *MariaDBServer) createUser() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, host := range []string{"%", "127.0.0.1"} {
		acct := fmt.Sprintf("'%s'@'%s'", MariaDBUser, host)
		for _, q := range []string{
			fmt.Sprintf("CREATE USER IF NOT EXISTS %s IDENTIFIED BY '%s'", acct, MariaDBPassword),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO %s WITH GRANT OPTION", acct),
			// ALL already includes these; spelled out because a CDC reader
			// cannot work without them.
			fmt.Sprintf("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO %s", acct),
		} {
			if _, err := m.DB().ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	return nil
}

func (m *MariaDBServer) dsnConfig(db string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = m.User
	cfg.Passwd = m.Password
	cfg.Net = "tcp"
	cfg.Addr = m.Addr()
	cfg.DBName = db
	cfg.ParseTime = false
	cfg.MultiStatements = true
	cfg.InterpolateParams = true
	cfg.Timeout = 5 * time.Second
	return cfg
}

// Addr returns "127.0.0.1:port".
func (m *MariaDBServer) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// DSN returns a go-sql-driver/mysql DSN for the MariaDBUser account and
// database db ("" for none), with multiStatements and interpolateParams on
// and parseTime off.
func (m *MariaDBServer) DSN(db string) string { return m.dsnConfig(db).FormatDSN() }

// DB returns a root connection pool, closed when the test ends. It stays
// usable across Kill and Restart: dead connections are discarded.
func (m *MariaDBServer) DB() *sql.DB {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.db
}

// Exec runs query as root and fails the test on error.
func (m *MariaDBServer) Exec(t T, query string, args ...any) sql.Result {
	t.Helper()
	// Not t.Context: it is already cancelled when cleanup functions run,
	// and dropping tables in a cleanup is a fair use.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := m.DB().ExecContext(ctx, query, args...)
	if err != nil {
		t.Fatalf("testenv: MariaDB exec %q: %v", query, err)
	}
	return res
}

// Pid returns the pid of the current (or last) mariadbd process.
func (m *MariaDBServer) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return 0
	}
	return m.proc.pid()
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. Restart recovers it.
func (m *MariaDBServer) Kill() {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Stop shuts the server down gracefully (SIGTERM), killing it if it takes
// longer than 15s.
func (m *MariaDBServer) Stop() {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.stop(syscall.SIGTERM, stopTimeout); err != nil {
		m.t.Logf("testenv: %v", err)
	}
}

// Restart stops the server if it is running and starts it again on the same
// data directory and port, running crash recovery after Kill.
func (m *MariaDBServer) Restart(t T) {
	t.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		t.Fatal(startFailure(err, m.logPath))
	}
}

func (m *MariaDBServer) cleanup() {
	m.Stop()
	m.mu.Lock()
	db := m.db
	m.mu.Unlock()
	if db != nil {
		db.Close()
	}
	if m.t.Failed() {
		m.t.Logf("testenv: MariaDB log %s ends with:\n%s", m.logPath, tailFile(m.logPath, 0, logTailLines))
	}
}

// String describes the server for logs.
func (m *MariaDBServer) String() string {
	return fmt.Sprintf("MariaDB %s (pid %d, datadir %s)", m.Addr(), m.Pid(), m.DataDir)
}
