package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestQuickSmoke keeps the harness from rotting: every stage runs on tiny sizes and
// must report its row. The figures themselves are not checked (this machine's
// speed is not the test's business). The servers start through the harness's own
// testenv.T, as in kanal-bench.
func TestQuickSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB, dev-kafka and Redis")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kanal")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "../cmd/kanal")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := Run(ctx, Options{
		Quick: true, Rows: 3000, Runs: 1, LatencyDuration: time.Second, BigTxnRows: 2000, SnapshotRows: 5000,
		KanalBin: bin, Log: &log,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	var md bytes.Buffer
	rep.Markdown(&md)
	t.Logf("\n%s", md.String())
	want := []string{"1", "1b", "2", "2b", "2c", "2d", "2e", "3", "3b", "5", "5b", "5c", "5d", "6", "8", "8b", "8c", "8d", "8e"}
	for _, st := range ApplyStages {
		want = append(want, st.ID)
	}
	got := map[string]*Row{}
	for _, r := range rep.Rows {
		got[r.ID] = r
	}
	for _, id := range want {
		r := got[id]
		switch {
		case r == nil:
			t.Errorf("row %s missing from the report", id)
		case strings.HasPrefix(r.Status, "failed"):
			t.Errorf("row %s (%s): %s", id, r.Measure, r.Status)
		case r.Value == nil && !strings.HasPrefix(r.Status, "not yet"):
			t.Errorf("row %s (%s) has no value", id, r.Measure)
		}
	}
	path, err := rep.WriteJSON(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(`"rows"`)) {
		t.Fatalf("JSON report %s: %v", path, err)
	}
	if t.Failed() {
		t.Logf("bench log:\n%s", log.String())
	}
}
