package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

var kanalBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kanal-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kanalBin = filepath.Join(dir, "kanal")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", kanalBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kanal:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// child is a `kanal` process started by a test.
type child struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func startKanal(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "kanal.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kanalBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { c.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		c.done <- nil
		if t.Failed() {
			// CI keeps only the test output, so a failure shows the end of each child's
			// log; KANAL_TEST_CHILD_LOGS asks for all of it.
			out := c.output()
			if os.Getenv("KANAL_TEST_CHILD_LOGS") == "" && len(out) > 6000 {
				out = "…" + out[len(out)-6000:]
			}
			t.Logf("log of kanal %s:\n%s", strings.Join(args, " "), out)
		}
	})
	return c
}

func (c *child) output() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func writeConfig(t *testing.T, m *testenv.MariaDBServer, brokers []string, name string, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanal.yaml")
	cfg := fmt.Sprintf(`source:
  name: %s
  addr: %s
  user: %s
  password: ${KANAL_TEST_DB_PASSWORD}
  server_id: 1001
  start: earliest
  heartbeat_interval: 200ms
kafka:
  brokers: [%s]
  partitions: 3
  cleanup_policy: delete
  flush_records: 40
tables:
  include: ["wl.*"]
log:
  level: info
%s`, name, m.Addr(), m.User, strings.Join(brokers, ","), extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProduceCrashExactlyOnce SIGKILLs a real `kanal produce` process at random
// points while a workload runs (also inside big transactions), restarts it each
// time, and then checks that every row change is in the topics exactly once and
// the topics replay to the source tables.
func TestProduceCrashExactlyOnce(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	cfgPath := writeConfig(t, m, k.Brokers, "crash", "")
	w := cdctest.NewWorkload(t, m.DB(), 2026)
	rng := rand.New(rand.NewPCG(1, 2))

	kills := 0
	for round := 0; round < 6; round++ {
		c := startKanal(t, env, "produce", "--config", cfgPath)
		killAt := time.Now().Add(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		for time.Now().Before(killAt) {
			if rng.IntN(8) == 0 {
				w.Bulk(t, 200+rng.IntN(1500))
			} else {
				w.Step(t)
			}
		}
		select {
		case err := <-c.done:
			t.Fatalf("round %d: kanal produce exited on its own: %v\n%s", round, err, c.output())
		default:
		}
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.done
		c.done <- nil
		kills++
	}

	// A last run catches up and stops cleanly on SIGTERM.
	c := startKanal(t, env, "produce", "--config", cfgPath)
	kcfg := producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}
	waitCaughtUp(t, m, &kcfg, "crash", c)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Fatalf("kanal produce did not exit cleanly on SIGTERM: %v\n%s", err, c.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kanal produce did not stop within 30s of SIGTERM")
	}
	if out := c.output(); strings.Contains(out, m.Password) {
		t.Errorf("the log shows the database password:\n%s", out)
	}

	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.wl\.[^.]+$`, 2*time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	t.Logf("%d changes from %d statements, exactly once across %d SIGKILLs", n, w.Statements, kills)
}

func waitCaughtUp(t *testing.T, m *testenv.MariaDBServer, k *producer.KafkaConfig, source string, c *child) {
	t.Helper()
	cdctest.WaitCaughtUp(t, m.DB(), k, source, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("kanal exited (%v):\n%s", err, c.output())
		default:
			return nil
		}
	})
}

// TestTailPrintsChanges runs `kanal tail` as a user would and checks it prints one
// JSON change per line for the matching tables only, for records in json and in
// json-compact (whose descriptors tail reads from <prefix>._schemas).
func TestTailPrintsChanges(t *testing.T) {
	m := testenv.MariaDB(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.a (id INT PRIMARY KEY, v VARCHAR(10))")
	m.Exec(t, "CREATE TABLE wl.b (id INT PRIMARY KEY)")
	m.Exec(t, "INSERT INTO wl.a VALUES (1,'one'),(2,'two')")
	m.Exec(t, "INSERT INTO wl.b VALUES (1)")
	m.Exec(t, "UPDATE wl.a SET v='uno' WHERE id=1")
	for _, format := range []string{schemas.FormatJSON, schemas.FormatJSONCompact} {
		t.Run(format, func(t *testing.T) {
			k := testenv.Kafka(t)
			cfgPath := writeConfig(t, m, k.Brokers, "tail", "")
			cfgText, err := os.ReadFile(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			cfgText = []byte(strings.Replace(string(cfgText), "  partitions: 3\n", "  partitions: 3\n  format: "+format+"\n", 1))
			if err := os.WriteFile(cfgPath, cfgText, 0o600); err != nil {
				t.Fatal(err)
			}
			p := startKanal(t, env, "produce", "--config", cfgPath)
			waitCaughtUp(t, m, &producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}, "tail", p)
			if descs := cdctest.ReadAll(t, k.Brokers, `^kanal\._schemas$`, time.Minute); (len(descs) > 0) != (format == schemas.FormatJSONCompact) {
				t.Errorf("format %s: %d records in kanal._schemas", format, len(descs))
			}
			tailPrints(t, k.Brokers[0])
		})
	}
}

// tailPrints checks what `kanal tail` prints of wl.a: its two creates and its
// update.
func tailPrints(t *testing.T, broker string) {
	t.Helper()
	out, err := exec.Command(kanalBin, "tail", "--brokers", broker, "--tables", "wl.a",
		"--from-beginning", "--max", "3", "--timeout", "60s").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("kanal tail: %v\n%s", err, stderr)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 {
		t.Fatalf("kanal tail printed %d lines, want 3:\n%s", len(lines), out)
	}
	ops := map[string]int{}
	for _, l := range lines {
		if !strings.Contains(l, `"table":"a"`) {
			t.Errorf("line for another table: %s", l)
		}
		for _, op := range []string{`"op":"c"`, `"op":"u"`} {
			if strings.Contains(l, op) {
				ops[op]++
			}
		}
	}
	if ops[`"op":"c"`] != 2 || ops[`"op":"u"`] != 1 {
		t.Errorf("ops %v, want 2 creates and 1 update:\n%s", ops, out)
	}
}

// TestBadConfigNamesField: a configuration mistake exits with code 2 and names the
// field, without printing secrets.
func TestBadConfigNamesField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("source:\n  name: x\n  addr: 127.0.0.1:3306\n  user: u\n  password: ${PW}\n  start: yesterday\nkafka:\n  brokers: [127.0.0.1:1]\n"), 0o600)
	cmd := exec.Command(kanalBin, "produce", "--config", path)
	cmd.Env = append(os.Environ(), "PW=hunter2-secret")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want code 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "source.start") {
		t.Errorf("error does not name source.start:\n%s", out)
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("error shows the password:\n%s", out)
	}
	cmd = exec.Command(kanalBin, "produce", "--config", path)
	cmd.Env = os.Environ()
	out, _ = cmd.CombinedOutput()
	if !strings.Contains(string(out), "PW") {
		t.Errorf("missing variable not named:\n%s", out)
	}
}
