// Package deps holds no code: its test keeps the module's import graph pointing
// one way.
package deps

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kanal-cdc/kanal"

// depRule forbids the packages matched by pkg (a go list pattern) from linking,
// directly or through any chain of imports, a package that forbid accepts.
type depRule struct {
	pkg    string
	forbid func(dep string) bool
	why    string
}

// depRules is the dependency direction of the module. Add a row when a package
// must stay independent of another; the failure names the import chain.
var depRules = []depRule{{
	pkg:    module + "/cmd/kanal",
	forbid: anyOf(under("testing"), under(module+"/internal/testenv", module+"/bench"), testHelper),
	why: "the shipped kanal binary links no test code: package testing, the test servers " +
		"of internal/testenv and the bench harness (cmd/kanal-bench) stay out of it",
}, {
	pkg:    module + "/schemas",
	forbid: under(module+"/producer", module+"/consumer", module+"/kafkaconn"),
	why:    "the wire contract depends on nothing else of kanal",
}, {
	pkg:    module + "/kafkaconn",
	forbid: under(module+"/producer", module+"/consumer", module+"/schemas"),
	why:    "the Kafka connection is shared by both sides and knows neither",
}, {
	pkg:    module + "/schemastore",
	forbid: under(module+"/producer", module+"/consumer"),
	why:    "the schema store serves both sides and knows neither",
}, {
	pkg:    module + "/tlsconfig",
	forbid: under(module),
	why:    "the TLS settings every connection shares depend on nothing else of kanal",
}, {
	pkg:    module + "/secret",
	forbid: under(module),
	why:    "password files are read the same way everywhere and depend on nothing else of kanal",
}, {
	pkg:    module + "/internal/dbconn",
	forbid: under(module+"/producer", module+"/consumer", module+"/sinks", module+"/aggregators", module+"/handlers", module+"/kafkaconn"),
	why:    "the SQL drivers' connection settings serve the source and the targets alike and know neither",
}, {
	pkg:    module + "/producer",
	forbid: under(module + "/consumer"),
	why:    "producer and consumer meet only at the wire contract (schemas)",
}, {
	pkg:    module + "/consumer",
	forbid: under(module + "/producer"),
	why:    "producer and consumer meet only at the wire contract (schemas)",
}, {
	pkg:    module + "/consumer/consumertest",
	forbid: under(module + "/producer"),
	why:    "a handler's conformance suite needs no binlog reader",
}, {
	pkg:    module + "/handlers",
	forbid: under(module + "/producer"),
	why:    "the consumers' handler registry runs on Kafka records only; a custom consumer binary needs no binlog reader",
}, {
	pkg:    module + "/internal/charset",
	forbid: under(module),
	why:    "character set decoding is a leaf: it knows nothing of kanal",
}, {
	pkg:    module + "/internal/fakemysql",
	forbid: under(module),
	why:    "the in-test MySQL 8 server speaks MySQL's protocol, not kanal's",
}, {
	pkg:    module + "/status",
	forbid: under(module+"/producer", module+"/consumer"),
	why:    "kanal status reads Kafka only: it meets producers and consumers at the wire contract (schemas)",
}, {
	pkg:    module + "/sinks/...",
	forbid: under(module + "/producer"),
	why:    "sinks read Kafka records, not the binlog",
}, {
	pkg:    module + "/sinks/internal/sinkconf",
	forbid: under(module),
	why: "the configuration blocks the sinks share (table rules, columns, templates, retry) are a leaf: " +
		"they know no record, connection or sink",
}, {
	pkg:    module + "/aggregators/...",
	forbid: under(module + "/producer"),
	why:    "aggregators read Kafka records, not the binlog",
}, {
	pkg:    module + "/verify",
	forbid: under(module+"/sinks", module+"/aggregators", module+"/handlers"),
	why:    "kanal verify reads targets through consumer.Checker, never a sink's internals",
}}

func TestDependencyDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, r := range depRules {
		for _, v := range depViolations(t, r) {
			t.Errorf("%s links %s through %s, but %s", trimModule(v.root), trimModule(v.dep),
				strings.Join(v.chain, " → "), r.why)
		}
	}
}

func trimModule(p string) string {
	if p == module {
		return p
	}
	return strings.TrimPrefix(p, module+"/")
}

// under matches each path and the packages below it.
func under(paths ...string) func(string) bool {
	return func(dep string) bool {
		for _, p := range paths {
			if dep == p || strings.HasPrefix(dep, p+"/") {
				return true
			}
		}
		return false
	}
}

// testHelper matches the module's test-support packages, which by convention
// are named after what they test (consumertest, cdctest, pgtest).
func testHelper(dep string) bool {
	return strings.HasPrefix(dep, module+"/") && strings.HasSuffix(dep, "test")
}

func anyOf(fs ...func(string) bool) func(string) bool {
	return func(dep string) bool {
		return slices.ContainsFunc(fs, func(f func(string) bool) bool { return f(dep) })
	}
}

type depViolation struct {
	root, dep string
	chain     []string // root … dep, one import per step
}

// depViolations lists, for every package r.pkg matches, each forbidden package
// it links with one shortest import chain to it, from the import graph of
// `go list -deps` (the build without tests, i.e. what a binary links).
func depViolations(t *testing.T, r depRule) []depViolation {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps",
		"-f", "{{.ImportPath}}\t{{.DepOnly}}\t{{join .Imports \" \"}}", r.pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, stderr.String())
	}
	imports := map[string][]string{}
	var roots []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			t.Fatalf("go list: unexpected line %q", sc.Text())
		}
		imports[f[0]] = strings.Fields(f[2])
		if f[1] == "false" {
			roots = append(roots, f[0])
		}
	}
	if len(roots) == 0 {
		t.Fatalf("go list -deps %s matched no package", r.pkg)
	}
	var found []depViolation
	for _, root := range roots {
		// Breadth first, so each chain is a shortest one.
		from := map[string]string{root: ""}
		queue := []string{root}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			if p != root && r.forbid(p) {
				chain := []string{trimModule(p)}
				for q := from[p]; q != ""; q = from[q] {
					chain = append(chain, trimModule(q))
				}
				slices.Reverse(chain)
				found = append(found, depViolation{root: root, dep: p, chain: chain})
				continue // what p links is p's problem, reported once
			}
			for _, d := range imports[p] {
				if _, seen := from[d]; !seen {
					from[d] = p
					queue = append(queue, d)
				}
			}
		}
	}
	return found
}
