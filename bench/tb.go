package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
)

// The benchmark reuses internal/testenv, which starts its servers for a testing.TB,
// so the private servers of `kanal bench` are started exactly like the ones the tests
// use. Outside `go test` there is no *testing.T: runTB is a minimal stand-in. Fatal
// and Skip unwind the calling goroutine with a panic that fromTB turns back into an
// error; Cleanup functions run in reverse order when Close is called.
type runTB struct {
	testing.TB // never set: only the methods below are called by testenv

	ctx    context.Context
	log    io.Writer
	tmp    string
	mu     sync.Mutex
	n      int
	clean  []func()
	failed bool
}

type tbAbort struct{ msg string }

var initTesting sync.Once

func newRunTB(ctx context.Context, log io.Writer, tmp string) *runTB {
	// testenv calls testing.Short, which panics unless the testing flags exist
	// and are parsed. They live on the standard flag set, which cobra ignores.
	initTesting.Do(func() {
		if !flag.Parsed() {
			testing.Init()
			_ = flag.CommandLine.Parse(nil)
		}
	})
	return &runTB{ctx: ctx, log: log, tmp: tmp}
}

func (t *runTB) Helper()      {}
func (t *runTB) Name() string { return "kanal-bench" }
func (t *runTB) Cleanup(f func()) {
	t.mu.Lock()
	t.clean = append(t.clean, f)
	t.mu.Unlock()
}
func (t *runTB) Context() context.Context { return t.ctx }
func (t *runTB) Output() io.Writer        { return t.log }
func (t *runTB) Log(args ...any)          { fmt.Fprintln(t.log, args...) }
func (t *runTB) Logf(format string, args ...any) {
	fmt.Fprintf(t.log, format+"\n", args...)
}
func (t *runTB) Error(args ...any) { t.Log(args...); t.Fail() }
func (t *runTB) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.Fail()
}
func (t *runTB) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}
func (t *runTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *runTB) FailNow()          { t.Fail(); panic(tbAbort{"failed"}) }
func (t *runTB) Fatal(args ...any) { t.Fail(); panic(tbAbort{fmt.Sprint(args...)}) }
func (t *runTB) Fatalf(format string, args ...any) {
	t.Fail()
	panic(tbAbort{fmt.Sprintf(format, args...)})
}
func (t *runTB) Skip(args ...any) { panic(tbAbort{"skipped: " + fmt.Sprint(args...)}) }
func (t *runTB) Skipf(format string, args ...any) {
	panic(tbAbort{"skipped: " + fmt.Sprintf(format, args...)})
}
func (t *runTB) SkipNow()      { panic(tbAbort{"skipped"}) }
func (t *runTB) Skipped() bool { return false }
func (t *runTB) TempDir() string {
	t.mu.Lock()
	t.n++
	n := t.n
	t.mu.Unlock()
	dir := fmt.Sprintf("%s/%03d", t.tmp, n)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return dir
}
func (t *runTB) Setenv(key, value string) { t.Fatalf("Setenv is not supported by kanal bench") }
func (t *runTB) Chdir(dir string)         { t.Fatalf("Chdir is not supported by kanal bench") }
func (t *runTB) Attr(key, value string)   {}
func (t *runTB) ArtifactDir() string      { return t.TempDir() }

// Close runs the cleanups, last registered first.
func (t *runTB) Close() {
	t.mu.Lock()
	fs := t.clean
	t.clean = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// fromTB runs f, which may call Fatal/Skip on a runTB, and returns that as an error.
func fromTB(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if a, ok := r.(tbAbort); ok {
				err = fmt.Errorf("%s", a.msg)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
