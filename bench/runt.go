package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// runT is the harness's testenv.T, so kanal-bench starts its private servers
// exactly like the tests do without being a test (the smoke test uses it too,
// so it covers the path kanal-bench takes). testenv reports a failed start
// through Fatal and relies on it not returning; as in package testing, Fatal and
// Skip end the calling goroutine with runtime.Goexit, which is why every testenv
// call goes through do, on a goroutine of its own. Cleanup functions run, last
// registered first, at Close.
type runT struct {
	log io.Writer
	tmp string

	call sync.Mutex // one do at a time: abort belongs to the running call

	mu     sync.Mutex
	n      int
	clean  []func()
	failed bool
	abort  string
}

var _ testenv.T = (*runT)(nil)

func newRunT(log io.Writer, tmp string) *runT {
	return &runT{log: log, tmp: tmp}
}

// do runs f, which calls testenv with t, and returns its Fatal or Skip message
// as an error.
func (t *runT) do(f func()) error {
	t.call.Lock()
	defer t.call.Unlock()
	t.mu.Lock()
	t.abort = ""
	t.mu.Unlock()
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
		returned = true
	}()
	<-done
	if returned {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.abort == "" {
		return errors.New("stopped without a message")
	}
	return errors.New(t.abort)
}

// stop records msg and ends the goroutine of do.
func (t *runT) stop(msg string, failed bool) {
	t.mu.Lock()
	t.abort = msg
	t.failed = t.failed || failed
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Helper() {}

func (t *runT) Cleanup(f func()) {
	t.mu.Lock()
	t.clean = append(t.clean, f)
	t.mu.Unlock()
}

// TempDir returns a new directory under the run's temporary directory, which
// Run removes at the end.
func (t *runT) TempDir() string {
	t.mu.Lock()
	t.n++
	dir := filepath.Join(t.tmp, fmt.Sprintf("%03d", t.n))
	t.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return dir
}

func (t *runT) Logf(format string, args ...any) { fmt.Fprintf(t.log, format+"\n", args...) }
func (t *runT) Fatal(args ...any)               { t.stop(fmt.Sprint(args...), true) }
func (t *runT) Fatalf(format string, args ...any) {
	t.stop(fmt.Sprintf(format, args...), true)
}
func (t *runT) Skip(args ...any) { t.stop("skipped: "+fmt.Sprint(args...), false) }
func (t *runT) Skipf(format string, args ...any) {
	t.stop("skipped: "+fmt.Sprintf(format, args...), false)
}

// Failed reports whether a start failed; testenv then logs the server logs'
// last lines at cleanup.
func (t *runT) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Close runs the cleanups, last registered first.
func (t *runT) Close() {
	t.mu.Lock()
	fs := t.clean
	t.clean = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
