package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// startTimeout bounds one server start, including data directory
	// initialisation; generous because CI machines can be slow and shared.
	startTimeout = 60 * time.Second
	// stopTimeout is how long a server gets to exit after its stop signal
	// before it is killed.
	stopTimeout = 15 * time.Second
	// portAttempts bounds retries when another process grabs the port
	// between FreePort and the server's bind.
	portAttempts = 3
	logTailLines = 30
	installHint  = "run `bash deploy/local/install.sh` (or `make test`, which runs it)"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before it is used; the server starters here
// retry with a new port when that happens.
func FreePort(t T) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RequireBinary returns the path of the executable name, looked up in the
// newest /usr/lib/postgresql/*/bin, then PATH, then the sbin directories
// (mariadbd lives in /usr/sbin, which a non-root PATH often lacks). When it
// is missing the test is skipped under -short and fails otherwise, naming
// the install script.
func RequireBinary(t T, name string) string {
	t.Helper()
	if p, ok := lookBinary(name); ok {
		return p
	}
	msg := fmt.Sprintf("%s not found: %s", name, installHint)
	if short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

func lookBinary(name string) (string, bool) {
	if strings.ContainsRune(name, '/') {
		return name, isExecutable(name)
	}
	// Debian keeps the Postgres server binaries out of PATH, and what is in
	// PATH may be a wrapper or another major version than the one installed.
	if dir := postgresBinDir(); dir != "" {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, true
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range sbinDirs {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// postgresBinDir returns the bin directory of the newest installed Postgres
// major version, or "" when none is installed.
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVer := "", -1.0
	for _, d := range dirs {
		ver, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		if err != nil {
			continue
		}
		if ver > bestVer {
			best, bestVer = d, ver
		}
	}
	return best
}

// skipShort keeps -short runs free of external servers.
func skipShort(t T, what string) {
	t.Helper()
	if short() {
		t.Skipf("testenv: %s is not started in -short mode", what)
	}
}

// procSpec describes a server child process.
type procSpec struct {
	name    string
	bin     string
	args    []string
	dir     string
	logPath string
	cred    *syscall.Credential
	// env, when not nil, is the child's whole environment.
	env []string
}

// proc is a started child process whose exit is observed by one goroutine,
// so any number of callers can wait on done.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // the Wait result; read only after done is closed
}

func startProc(s procSpec) (*proc, error) {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", s.name, err)
	}
	// The child gets its own copy of the descriptor, so ours can close
	// right after Start and no goroutine copies output.
	defer logf.Close()
	fmt.Fprintf(logf, "### testenv %s: %s %s\n", time.Now().Format(time.RFC3339Nano), s.bin, strings.Join(s.args, " "))

	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr(s.cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &proc{name: s.name, cmd: cmd, logPath: s.logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to timeout, then kills. It reports an error only
// when the process had to be killed.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	// An error here means the process already exited; done tells us.
	_ = p.cmd.Process.Signal(sig)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	p.kill()
	return fmt.Errorf("%s (pid %d) did not exit within %v of %v; killed", p.name, p.pid(), timeout, sig)
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls probe until it succeeds, the process exits or the timeout
// passes.
func (p *proc) waitReady(timeout time.Duration, probe func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := probe(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v); last probe: %w", p.name, p.err, err)
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s not ready after %v: %w", p.name, timeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startFailure formats a start error with the end of the server's log,
// because the log nearly always holds the actual reason.
func startFailure(err error, logPath string) string {
	return fmt.Sprintf("testenv: %v\n--- last %d lines of %s ---\n%s", err, logTailLines, logPath, tailFile(logPath, 0, logTailLines))
}

// tailFile returns the last n lines of path from offset on.
func tailFile(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > maxRead {
		offset = fi.Size() - maxRead
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// withFreePort calls start with fresh ports until it succeeds or fails for a
// reason other than the port having been taken by someone else meanwhile.
func withFreePort(logPath string, start func(port int) error) error {
	var err error
	for range portAttempts {
		port, perr := freePort()
		if perr != nil {
			return perr
		}
		off := fileSize(logPath)
		if err = start(port); err == nil {
			return nil
		}
		if !strings.Contains(tailFile(logPath, off, 200), "Address already in use") {
			return err
		}
	}
	return err
}

// pidAlive reports whether a process with this pid exists (zombies count).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// owner is the uid/gid a server's files must belong to; nil means the
// current user.
type owner struct{ uid, gid int }

// errCacheUnusable means the template cache cannot be trusted or created;
// callers then initialise data directories in place.
var errCacheUnusable = errors.New("template cache unusable")

// templateMu serialises template builds in this process; separate test
// processes (one per package) race safely through the atomic rename.
var templateMu sync.Mutex

// initDataDir creates dest as a copy of a cached, freshly initialised data
// directory, building the template with build on first use. Initialising a
// MariaDB or Postgres data directory takes about a second while copying one
// takes tens of milliseconds, and every test wants a fresh one.
//
// Templates live in $TMPDIR/kanal-testenv-<euid>/<kind>-<hash of key>; key
// must name everything that shapes the result (binary identity, options), so
// an upgraded binary gets a new template.
func initDataDir(kind string, key []string, dest string, own *owner, build func(dataDir string) error) error {
	tmpl, err := cachedTemplate(kind, key, build)
	if errors.Is(err, errCacheUnusable) {
		return build(dest)
	}
	if err != nil {
		return err
	}
	if err := copyTree(tmpl, dest, own); err != nil {
		return fmt.Errorf("copy %s template: %w", kind, err)
	}
	return nil
}

func cachedTemplate(kind string, key []string, build func(dataDir string) error) (string, error) {
	root := filepath.Join(os.TempDir(), fmt.Sprintf("kanal-testenv-%d", os.Geteuid()))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("%w: %w", errCacheUnusable, err)
	}
	// The temp dir is shared: a directory planted by another user could hold
	// a doctored template, so only one we own is used.
	fi, err := os.Lstat(root)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCacheUnusable, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("%w: %s is not a directory owned and writable only by uid %d", errCacheUnusable, root, os.Geteuid())
	}

	final := filepath.Join(root, kind+"-"+hashKey(key))
	tmplData := filepath.Join(final, "data")
	templateMu.Lock()
	defer templateMu.Unlock()
	if _, err := os.Stat(tmplData); err == nil {
		return tmplData, nil
	}
	removeStaleStaging(root, kind)
	staging, err := os.MkdirTemp(root, kind+".staging-")
	if err != nil {
		return "", fmt.Errorf("%w: %w", errCacheUnusable, err)
	}
	// Servers that drop privileges (Postgres under root) must reach the
	// data directory inside.
	if err := os.Chmod(staging, 0o755); err != nil {
		os.RemoveAll(staging)
		return "", fmt.Errorf("%w: %w", errCacheUnusable, err)
	}
	if err := build(filepath.Join(staging, "data")); err != nil {
		os.RemoveAll(staging)
		return "", err
	}
	if err := os.Rename(staging, final); err != nil {
		os.RemoveAll(staging)
		// Another test process finished first; its template is as good.
		if _, serr := os.Stat(tmplData); serr == nil {
			return tmplData, nil
		}
		return "", fmt.Errorf("install %s template: %w", kind, err)
	}
	return tmplData, nil
}

// removeStaleStaging deletes half-built templates left by test processes
// that were killed while building; a build takes seconds, so anything older
// than ten minutes is abandoned.
func removeStaleStaging(root, kind string) {
	dirs, _ := filepath.Glob(filepath.Join(root, kind+".staging-*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
			os.RemoveAll(d)
		}
	}
}

func hashKey(key []string) string {
	sum := sha256.Sum256([]byte(strings.Join(key, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// binaryKey identifies an installed binary by path, size and mtime, which
// change on any package upgrade.
func binaryKey(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return path
	}
	return fmt.Sprintf("%s:%d:%d", path, fi.Size(), fi.ModTime().UnixNano())
}

// copyTree copies directories, regular files and symlinks from src to dst
// keeping permission bits, and chowns everything to own when set.
func copyTree(src, dst string, own *owner) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch mode := fi.Mode(); {
		case mode.IsDir():
			if err := os.MkdirAll(target, mode.Perm()); err != nil {
				return err
			}
			// MkdirAll leaves an existing dir's mode alone and the umask
			// applies to new ones; Postgres insists on exact modes.
			if err := os.Chmod(target, mode.Perm()); err != nil {
				return err
			}
		case mode&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyFile(path, target, mode.Perm()); err != nil {
				return err
			}
		default:
			return nil // sockets and the like are not part of a template
		}
		if own != nil {
			if err := os.Lchown(target, own.uid, own.gid); err != nil {
				return err
			}
		}
		return nil
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// runInit runs a data directory initialiser with a time limit and returns
// its output in the error when it fails.
func runInit(name, bin string, args []string, dir string, cred *syscall.Credential) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr(cred)
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if lines := strings.Split(strings.TrimRight(tail, "\n"), "\n"); len(lines) > logTailLines {
			tail = strings.Join(lines[len(lines)-logTailLines:], "\n")
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail)
	}
	return nil
}
