package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDatabase is the database every Postgres server gets for the code
// under test.
const PostgresDatabase = "kanal"

// PostgresServer is a private Postgres cluster run by a postgres child
// process, with trust authentication for the superuser "postgres" (unless
// WithSSL).
type PostgresServer struct {
	// DSN is postgres://postgres@127.0.0.1:port/kanal?sslmode=disable; with
	// WithSSL it carries the password and sslmode=verify-full with the CA.
	DSN string
	// Password is the superuser's password under WithSSL ("" otherwise).
	Password string
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port.
	Port int
	// DataDir is the cluster's data directory.
	DataDir string

	t       T
	logPath string
	proc    *proc
	// socketDir is where the server's unix socket lives: the harness's own
	// connections use it when TCP needs TLS.
	socketDir string
	ssl       bool
}

// PostgresOption configures Postgres.
type PostgresOption func(*postgresConfig)

type postgresConfig struct {
	ssl  *TLSCerts
	args []string
}

// PostgresPassword is the superuser's password of a server started WithSSL.
const PostgresPassword = "kanal-pg-secret"

// WithSSL makes the server accept TCP connections only over TLS (ssl=on and
// hostssl lines alone in pg_hba.conf) with certs' server certificate, and only
// with the password PostgresPassword (scram-sha-256). The harness itself
// connects over the unix socket.
func WithSSL(certs *TLSCerts) PostgresOption {
	return func(c *postgresConfig) { c.ssl = certs }
}

// WithPostgresArgs adds server options (such as "-c", "shared_buffers=256MB")
// after the harness's own, so that they override them: the bench gives its
// target the memory a production server would have.
func WithPostgresArgs(extra ...string) PostgresOption {
	return func(c *postgresConfig) { c.args = append(c.args, extra...) }
}

// Postgres initialises a private cluster, starts it on 127.0.0.1, creates
// the database PostgresDatabase and stops the server when the test ends.
//
// Postgres refuses to run as root, so under root the cluster belongs to the
// "postgres" system user (created by the Debian package), or "nobody" when
// that is missing, and the server runs with that user's credentials.
func Postgres(t T, opts ...PostgresOption) *PostgresServer {
	t.Helper()
	skipShort(t, "Postgres")
	var cfg postgresConfig
	for _, o := range opts {
		o(&cfg)
	}
	initdb := RequireBinary(t, "initdb")
	bin := RequireBinary(t, "postgres")
	cred, own, err := postgresOwner()
	if err != nil {
		t.Fatalf("testenv: Postgres: %v", err)
	}

	// Not t.TempDir: its parents are private to root, and the server's user
	// must reach its data and socket directory.
	base, err := os.MkdirTemp("", "kanal-pg-")
	if err != nil {
		t.Fatalf("testenv: Postgres dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if own != nil {
		if err := os.Chown(base, own.uid, own.gid); err != nil {
			t.Fatalf("testenv: Postgres dir: %v", err)
		}
	}
	pg := &PostgresServer{DataDir: filepath.Join(base, "data"), t: t, logPath: filepath.Join(base, "postgres.log"), socketDir: base}

	began := time.Now()
	runAs := strconv.Itoa(os.Geteuid())
	if own != nil {
		runAs = fmt.Sprintf("%d:%d", own.uid, own.gid)
	}
	key := []string{"postgres-v1", binaryKey(initdb), binaryKey(bin), runAs}
	err = initDataDir("postgres", key, pg.DataDir, own, func(dataDir string) error {
		if err := os.Mkdir(dataDir, 0o700); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		if own != nil {
			if err := os.Chown(dataDir, own.uid, own.gid); err != nil {
				return fmt.Errorf("initdb: %w", err)
			}
		}
		args := []string{"-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "--locale=C", "--encoding=UTF8"}
		return runInit("initdb", initdb, args, filepath.Dir(dataDir), cred)
	})
	if err != nil {
		t.Fatalf("testenv: initialise Postgres cluster: %v", err)
	}
	initDone := time.Now()

	var sslArgs []string
	if cfg.ssl != nil {
		if sslArgs, err = pg.sslFiles(cfg.ssl, base, own); err != nil {
			t.Fatalf("testenv: Postgres: %v", err)
		}
		pg.ssl, pg.Password = true, PostgresPassword
	}

	t.Cleanup(pg.cleanup)
	err = withFreePort(pg.logPath, func(port int) error {
		pg.Port = port
		pg.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		pg.DSN = fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", pg.Addr, PostgresDatabase)
		if cfg.ssl != nil {
			pg.DSN = fmt.Sprintf("postgres://postgres:%s@%s/%s?sslmode=verify-full&sslrootcert=%s",
				PostgresPassword, pg.Addr, PostgresDatabase, cfg.ssl.CA)
		}
		p, err := startProc(procSpec{
			name: "postgres",
			bin:  bin,
			args: append([]string{
				"-D", pg.DataDir,
				"-p", strconv.Itoa(port),
				"-k", base,
				"-c", "listen_addresses=127.0.0.1",
				// Durability is pointless for a throwaway cluster, and a
				// SIGKILL of the server still keeps what reached the OS.
				"-c", "fsync=off",
				"-c", "synchronous_commit=off",
				"-c", "full_page_writes=off",
				"-c", "shared_buffers=32MB",
				"-c", "max_connections=100",
			}, append(sslArgs, cfg.args...)...),
			dir:     base,
			logPath: pg.logPath,
			cred:    cred,
		})
		if err != nil {
			return err
		}
		pg.proc = p
		return p.waitReady(startTimeout, func(ctx context.Context) error {
			conn, err := pgx.Connect(ctx, pg.adminDSN())
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			// Another test's server may hold the port we picked: only our own
			// data directory proves it is ours.
			var dir string
			if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
				return err
			}
			if filepath.Clean(dir) != filepath.Clean(pg.DataDir) {
				return fmt.Errorf("port %d is served by another server (data directory %s)", pg.Port, dir)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(startFailure(err, pg.logPath))
	}
	if err := pg.createDatabase(); err != nil {
		t.Fatalf("testenv: Postgres: %v", err)
	}
	t.Logf("testenv: Postgres on %s (pid %d, cluster init %v, start %v)", pg.Addr, pg.Pid(),
		initDone.Sub(began).Round(time.Millisecond), time.Since(initDone).Round(time.Millisecond))
	return pg
}

// postgresOwner picks the user the cluster runs as: the current one unless
// that is root.
func postgresOwner() (*syscall.Credential, *owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, uerr := strconv.Atoi(u.Uid)
		gid, gerr := strconv.Atoi(u.Gid)
		if uerr != nil || gerr != nil || uid == 0 {
			errs = append(errs, fmt.Errorf("user %s has unusable ids %s:%s", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, &owner{uid: uid, gid: gid}, nil
	}
	return nil, nil, fmt.Errorf("running as root needs a non-root user for Postgres (%w); %s", errors.Join(errs...), installHint)
}

func (pg *PostgresServer) adminDSN() string {
	if pg.ssl {
		return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5", pg.socketDir, pg.Port)
	}
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=5", pg.Addr)
}

// sslFiles writes the server's certificate, key, CA and a pg_hba.conf that
// takes TCP connections only over TLS into dir (owned by the server's user:
// Postgres refuses a key others can read) and returns the server options
// using them.
func (pg *PostgresServer) sslFiles(certs *TLSCerts, dir string, own *owner) ([]string, error) {
	files := map[string]string{"server.pem": certs.ServerCert, "server.key": certs.ServerKey, "ca.pem": certs.CA}
	for name, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := writeOwned(filepath.Join(dir, name), data, own); err != nil {
			return nil, err
		}
	}
	hba := "local all all trust\n" +
		"hostssl all all 127.0.0.1/32 scram-sha-256\n" +
		"hostssl all all ::1/128 scram-sha-256\n"
	if err := writeOwned(filepath.Join(dir, "pg_hba.conf"), []byte(hba), own); err != nil {
		return nil, err
	}
	return []string{
		"-c", "ssl=on",
		"-c", "ssl_cert_file=" + filepath.Join(dir, "server.pem"),
		"-c", "ssl_key_file=" + filepath.Join(dir, "server.key"),
		"-c", "ssl_ca_file=" + filepath.Join(dir, "ca.pem"),
		"-c", "hba_file=" + filepath.Join(dir, "pg_hba.conf"),
		"-c", "password_encryption=scram-sha-256",
	}, nil
}

func writeOwned(path string, data []byte, own *owner) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	if own != nil {
		return os.Chown(path, own.uid, own.gid)
	}
	return nil
}

func (pg *PostgresServer) createDatabase() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.adminDSN())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+PostgresDatabase); err != nil {
		return fmt.Errorf("create database %s: %w", PostgresDatabase, err)
	}
	if pg.ssl {
		if _, err := conn.Exec(ctx, "ALTER ROLE postgres PASSWORD '"+PostgresPassword+"'"); err != nil {
			return fmt.Errorf("set the password: %w", err)
		}
	}
	return nil
}

// Pid returns the postmaster's pid.
func (pg *PostgresServer) Pid() int { return pg.proc.pid() }

// Kill stops the postmaster with SIGKILL and waits for it to exit; its
// backends notice and exit on their own.
func (pg *PostgresServer) Kill() { pg.proc.kill() }

// Stop shuts the server down with a fast shutdown, killing it after 15s.
func (pg *PostgresServer) Stop() {
	// SIGINT, not SIGTERM: SIGTERM is Postgres's "smart" shutdown, which
	// waits for every client to disconnect, and a test that forgot to close
	// a pool would then hang until the kill.
	if err := pg.proc.stop(syscall.SIGINT, stopTimeout); err != nil {
		pg.t.Logf("testenv: %v", err)
	}
}

func (pg *PostgresServer) cleanup() {
	if pg.proc == nil {
		return
	}
	pg.Stop()
	if pg.t.Failed() {
		pg.t.Logf("testenv: Postgres log %s ends with:\n%s", pg.logPath, tailFile(pg.logPath, 0, logTailLines))
	}
}
