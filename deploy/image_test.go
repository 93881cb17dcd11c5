package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is deploy/Dockerfile as instructions: each stage's lines,
// continuation lines joined.
type dockerfile struct {
	stages [][]string // stage → instructions ("FROM …", "RUN …")
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cur += line
		if strings.HasSuffix(cur, "\\") {
			cur = strings.TrimSuffix(cur, "\\") + " "
			continue
		}
		if strings.HasPrefix(cur, "FROM ") {
			d.stages = append(d.stages, nil)
		}
		if len(d.stages) == 0 {
			t.Fatalf("Dockerfile: %q before the first FROM", cur)
		}
		d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], cur)
		cur = ""
	}
	return d
}

func (d dockerfile) find(stage int, prefix string) []string {
	var out []string
	for _, ins := range d.stages[stage] {
		if strings.HasPrefix(ins, prefix) {
			out = append(out, ins)
		}
	}
	return out
}

// TestDockerfile: two stages from pinned images; the first builds the static
// binary of cmd/kanal with a Go no older than go.mod asks; the second runs it
// as an unprivileged user.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if len(d.stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, run)", len(d.stages))
	}
	for i, st := range d.stages {
		image := strings.Fields(st[0])[1]
		if !pinnedImage.MatchString(image) {
			t.Errorf("stage %d: FROM %s is not pinned to a version", i, image)
		}
	}
	builder := strings.Fields(d.stages[0][0])[1]
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	got := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(builder)
	if want == nil || got == nil || minor(got) < minor(want) {
		t.Errorf("builder %s is older than go.mod's go %s.%s", builder, want[1], want[2])
	}
	build := strings.Join(d.find(0, "RUN "), "\n")
	for _, s := range []string{"CGO_ENABLED=0", "go build", "./cmd/kanal", "-X main.version="} {
		if !strings.Contains(build, s) {
			t.Errorf("the build stage does not run %q:\n%s", s, build)
		}
	}
	users := d.find(1, "USER ")
	if len(users) != 1 {
		t.Fatalf("the run stage sets USER %d times, want once", len(users))
	}
	uid, _, _ := strings.Cut(strings.Fields(users[0])[1], ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("%s: want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", users[0])
	}
	if e := d.find(1, "ENTRYPOINT "); len(e) != 1 || !strings.Contains(e[0], `"/usr/local/bin/kanal"`) {
		t.Errorf("ENTRYPOINT %v, want kanal", e)
	}
	if c := d.find(1, "COPY --from="); len(c) != 1 || !strings.Contains(c[0], "/usr/local/bin/kanal") {
		t.Errorf("the run stage copies %v, want just the binary", c)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil || !regexp.MustCompile(`(?m)^image:`).Match(mk) || !strings.Contains(string(mk), "-f deploy/Dockerfile") {
		t.Errorf("the Makefile has no image target building deploy/Dockerfile")
	}
}

func minor(m []string) int {
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a*1000 + b
}

// TestStaticBinary: cmd/kanal's packages resolve without cgo, as the
// Dockerfile builds it (CGO_ENABLED=0), and none of them is runtime/cgo: the
// image's binary needs no C library. (A full build would recompile every
// package a second time for the suite.)
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", "-e",
		"-f", "{{.ImportPath}}\t{{with .Error}}{{.}}{{end}}", "../cmd/kanal")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("CGO_ENABLED=0 go list -deps ./cmd/kanal: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, perr, _ := strings.Cut(line, "\t")
		n++
		if perr != "" {
			t.Errorf("%s does not build without cgo: %s", pkg, perr)
		}
		if pkg == "runtime/cgo" {
			t.Errorf("cmd/kanal links runtime/cgo with CGO_ENABLED=0")
		}
	}
	if n < 50 {
		t.Fatalf("go list saw %d packages:\n%s", n, out)
	}
}
