// Package deps holds no code: its test keeps the import graph pointing one way.
package deps

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/kanal-cdc/kanal/"

// The producer and the consumer side meet only at the wire contract (schemas) and
// the shared Kafka connection (kafkaconn): a sink must not link the binlog reader,
// nor the producer the Runner.
var rules = []struct {
	pkgs      string // a go list pattern, relative to the module
	forbidden []string
	why       string
}{
	{"schemas", []string{"producer", "consumer", "kafkaconn"}, "the wire contract depends on nothing of kanal"},
	{"kafkaconn", []string{"producer", "consumer", "schemas"}, "the Kafka connection is shared by both sides"},
	{"producer", []string{"consumer"}, "producer and consumer meet only in schemas"},
	{"consumer", []string{"producer"}, "producer and consumer meet only in schemas"},
	{"consumer/consumertest", []string{"producer"}, "handlers are tested without the binlog reader"},
	{"sinks/...", []string{"producer"}, "sinks read Kafka records, not the binlog"},
	{"aggregators/...", []string{"producer"}, "aggregators read Kafka records, not the binlog"},
}

func TestImportDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, r := range rules {
		out, err := exec.Command(goBin, "list", "-deps", "./../../"+r.pkgs).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", r.pkgs, err, out)
		}
		deps := map[string]bool{}
		for _, l := range strings.Fields(string(out)) {
			deps[strings.TrimPrefix(l, module)] = true
		}
		for _, f := range r.forbidden {
			if deps[f] {
				t.Errorf("%s imports %s (directly or not): %s", r.pkgs, f, r.why)
			}
		}
	}
}
