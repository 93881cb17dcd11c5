package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// produceItems writes n kanal JSON creates of db.items to kanal.db.items.
func produceItems(t *testing.T, k *testenv.KafkaCluster, from, n int) {
	t.Helper()
	cl := k.Client(t, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if from == 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := kadm.NewClient(cl).CreateTopic(ctx, 3, -1, nil, "kanal.db.items")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	cols := []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "v", Type: "varchar"}}
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		env := schemas.Envelope{Op: schemas.OpCreate, Seq: uint64(i), Columns: cols, After: []any{int64(i), "v"},
			Source: &schemas.Source{Name: "t", DB: "db", Table: "items", TsMs: time.Now().UnixMilli()}}
		recs = append(recs, &kgo.Record{Topic: "kanal.db.items", Key: schemas.AppendKey(nil, "db", "items", []any{int64(i)}),
			Value: env.AppendJSON(nil), Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte("json")}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func consumerConfig(t *testing.T, brokers []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanal.yaml")
	cfg := fmt.Sprintf(`source:
  name: cli
  addr: 127.0.0.1:1
  user: unused
kafka:
  brokers: [%s]
consumers:
  commit_interval: 200ms
  session_timeout: 6s
  metrics_addr: 127.0.0.1:%d
  handlers:
    - handler: stdout
      name: audit
      tables: ["db.*"]
      on_failure: dead-letter
`, strings.Join(brokers, ","), testenv.FreePort(t))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func changeLines(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, `{"op":"c"`) {
			n++
		}
	}
	return n
}

func kanalRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(kanalBin, args...).CombinedOutput()
	return string(out), err
}

// TestConsumeAndOffsetsCLI runs `kanal consume` with the stdout handler, checks
// `kanal offsets reset` refuses while it runs, stops it with SIGTERM (offsets
// committed: lag 0), resets the group to earliest and sees everything printed
// again; a SIGKILLed consumer replays rather than skips.
func TestConsumeAndOffsetsCLI(t *testing.T) {
	k := testenv.Kafka(t)
	produceItems(t, k, 1, 300)
	cfg := consumerConfig(t, k.Brokers)
	waitLines := func(c *child, n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for changeLines(c.output()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("kanal consume printed %d changes, want %d:\n%s", changeLines(c.output()), n, c.output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := func(c *child) {
		t.Helper()
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.done:
			c.done <- nil
			if err != nil {
				t.Fatalf("kanal consume exited with %v:\n%s", err, c.output())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("kanal consume did not stop within 30s of SIGTERM")
		}
	}

	c := startKanal(t, nil, "consume", "--config", cfg)
	waitLines(c, 300)
	out, err := kanalRun(t, "offsets", "reset", "--config", cfg, "--group", "kanal-audit", "--to", "earliest")
	if err == nil || !strings.Contains(out, "active members") {
		t.Fatalf("reset while consuming: %v\n%s", err, out)
	}
	stop(c)
	out, err = kanalRun(t, "offsets", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	if err != nil || !strings.Contains(out, "total lag 0") || !strings.Contains(out, "kanal.db.items") {
		t.Fatalf("offsets show after a clean stop: %v\n%s", err, out)
	}

	out, err = kanalRun(t, "offsets", "reset", "--config", cfg, "--group", "kanal-audit", "--to", "earliest", "--tables", "db.items")
	if err != nil {
		t.Fatalf("offsets reset: %v\n%s", err, out)
	}
	out, _ = kanalRun(t, "offsets", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	if !strings.Contains(out, "total lag 300") {
		t.Fatalf("after reset to earliest:\n%s", out)
	}

	// Replay, then a SIGKILL: the next run prints at least what was not committed.
	c = startKanal(t, nil, "consume", "--config", cfg)
	waitLines(c, 300)
	produceItems(t, k, 301, 200)
	waitLines(c, 500)
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.done <- nil
	c = startKanal(t, nil, "consume", "--config", cfg)
	produceItems(t, k, 501, 10)
	// The new run first replays what the killed one had not committed, so wait for
	// the new changes themselves, not for a number of lines.
	missing := func() []int {
		seen := map[string]bool{}
		for _, l := range strings.Split(c.output(), "\n") {
			if i := strings.Index(l, `"after":{"id":`); i >= 0 {
				seen[strings.SplitN(l[i+len(`"after":{"id":`):], ",", 2)[0]] = true
			}
		}
		var m []int
		for i := 501; i <= 510; i++ {
			if !seen[strconv.Itoa(i)] {
				m = append(m, i)
			}
		}
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("after the SIGKILL, changes %v were not printed within 60s:\n%s", m, c.output())
	}
	stop(c)
	out, _ = kanalRun(t, "offsets", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	if !strings.Contains(out, "total lag 0") {
		t.Errorf("after the last run:\n%s", out)
	}
}

// TestConsumeConfigErrors: consumer configuration mistakes exit 2 naming the field.
func TestConsumeConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"  handlers:\n    - {handler: stdout, name: a, tables: []}\n", "consumers.handlers[0].tables"},
		{"  handlers:\n    - {handler: nosuch, name: a, tables: [db.t]}\n", "unknown handler"},
		{"  concurrency: 0\n  handlers:\n    - {handler: stdout, name: a, tables: [db.t]}\n", "concurrency"},
		{"  handlers:\n    - {handler: stdout, name: a, tables: [db.t], options: {colour: red}}\n", "colour"},
		{"  handlers:\n    - {handler: stdout, name: a, tables: [db.t], on_failure: ignore}\n", "on_failure"},
	} {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(path, []byte("source:\n  name: x\n  addr: 127.0.0.1:1\n  user: u\nkafka:\n  brokers: [127.0.0.1:1]\nconsumers:\n"+tc.yaml), 0o600)
		out, err := exec.Command(kanalBin, "consume", "--config", path).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.field) {
			t.Errorf("%q: exit %v, output %s; want exit 2 naming %s", tc.yaml, err, out, tc.field)
		}
	}
}
