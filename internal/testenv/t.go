package testenv

import "testing"

// T is what the server starters need from their caller: the subset of
// testing.TB they call, so *testing.T and *testing.B satisfy it and a program
// that is not a test (the benchmark harness, cmd/kanal-bench) can start the same
// servers with a small implementation of its own instead of faking a testing.TB.
//
// As with testing.TB, Fatal, Fatalf, Skip and Skipf must not return: the
// starters rely on them to stop the calling goroutine (testing does it with
// runtime.Goexit).
type T interface {
	Helper()
	// Cleanup registers f to run, last registered first, when the caller is done.
	Cleanup(f func())
	// TempDir returns a new directory removed (or left to the caller to remove)
	// when the caller is done.
	TempDir() string
	Logf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	// Failed reports whether the caller failed; a server's log tail is logged
	// at cleanup when it did.
	Failed() bool
}

// Compile-time proof that the standard test types keep satisfying T.
var (
	_ T = (*testing.T)(nil)
	_ T = (*testing.B)(nil)
	_ T = (*testing.F)(nil)
)

// short reports whether servers must not be started: -short exists only in a
// test binary, so outside one (the benchmark) it is false, without needing
// testing.Init and a parsed flag set, which testing.Short alone would.
// Keeping this out of T means *testing.T satisfies T unchanged: it has no
// Short method, and an interface method would force a wrapper on every caller.
func short() bool {
	return testing.Testing() && testing.Short()
}
