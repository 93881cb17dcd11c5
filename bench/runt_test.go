package bench

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// The harness's testenv.T must turn testenv's Fatal and Skip into errors without
// running the rest of the call, and clean up like testing does.
func TestRunT(t *testing.T) {
	var log bytes.Buffer
	rt := newRunT(&log, t.TempDir())

	if err := rt.do(func() { rt.Logf("hello %d", 1) }); err != nil || rt.Failed() {
		t.Fatalf("do without Fatal: %v, failed=%v", err, rt.Failed())
	}
	if !strings.Contains(log.String(), "hello 1\n") {
		t.Errorf("Logf wrote %q", log.String())
	}

	ranOn := false
	err := rt.do(func() {
		rt.Skipf("no %s", "server")
		ranOn = true
	})
	if err == nil || err.Error() != "skipped: no server" || ranOn || rt.Failed() {
		t.Errorf("Skipf: err %v, ran on %v, failed %v", err, ranOn, rt.Failed())
	}

	err = rt.do(func() {
		rt.Fatalf("start %s: %v", "redis", "boom")
		ranOn = true
	})
	if err == nil || err.Error() != "start redis: boom" || ranOn || !rt.Failed() {
		t.Errorf("Fatalf: err %v, ran on %v, failed %v", err, ranOn, rt.Failed())
	}

	// testenv itself, through the interface: a missing binary is an error that
	// names it (a Fatal, or a Skip under -short), not a crash.
	err = rt.do(func() { testenv.RequireBinary(rt, "kanal-bench-no-such-binary") })
	if err == nil || !strings.Contains(err.Error(), "kanal-bench-no-such-binary not found") {
		t.Errorf("RequireBinary of a missing binary: %v", err)
	}

	a, b := rt.TempDir(), rt.TempDir()
	for _, d := range []string{a, b} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("TempDir %s: %v", d, err)
		}
	}
	if a == b {
		t.Errorf("TempDir returned %s twice", a)
	}

	var order []int
	for i := range 3 {
		rt.Cleanup(func() { order = append(order, i) })
	}
	rt.Close()
	rt.Close() // a second Close runs nothing again
	if !slices.Equal(order, []int{2, 1, 0}) {
		t.Errorf("cleanups ran in order %v, want last registered first", order)
	}
}
