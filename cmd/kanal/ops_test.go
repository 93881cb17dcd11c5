package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// httpGet returns the status and body of a GET, or 0 when nothing answers.
func httpGet(url string) (int, string) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sigterm stops c and returns how long it took to exit.
func sigterm(t *testing.T, c *child, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Fatalf("kanal consume exited with %v:\n%s", err, c.output())
		}
	case <-time.After(within + 10*time.Second):
		t.Fatalf("kanal consume did not exit within %v of SIGTERM:\n%s", within, c.output())
	}
	took := time.Since(start)
	if took > within {
		t.Errorf("kanal consume took %v to exit after SIGTERM, more than revoke_timeout (%v)", took, within)
	}
	return took
}

// TestHaltedConsumeCLI: an undecodable record whose dead-letter write the broker
// refuses halts its partition visibly (/readyz 503 naming it, halted-partition and
// write-error metrics); SIGTERM still stops `kanal consume` within revoke_timeout
// (it took 31s before); an instance started meanwhile on the same metrics_addr
// waits for the address instead of failing; `kanal offsets show` names the
// owner of each partition; `kanal offsets skip` steps the stopped group over the
// record (refused while the group runs), and the next run goes on after it.
func TestHaltedConsumeCLI(t *testing.T) {
	k := testenv.Kafka(t)
	produceItems(t, k, 1, 30)
	cl := k.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := &kgo.Record{Topic: "kanal.db.items", Partition: 0, Key: []byte("db.items:666"), Value: []byte(`{"op":"c","seq":`),
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte("json")}}}
	if err := cl.ProduceSync(ctx, bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produceItemsTo(t, cl, 0, 700) // after the bad record
	dlq := schemas.DLQTopic("kanal", "kanal-audit")
	if _, err := kadm.NewClient(k.Client(t)).CreateTopic(ctx, 1, -1, nil, dlq); err != nil {
		t.Fatal(err)
	}
	refusing := k.RefuseProduce(t, dlq, kerr.TopicAuthorizationFailed.Code)
	const revoke = 20 * time.Second
	cfg := opsConfig(t, k.Brokers, "  revoke_timeout: 20s\n")
	cfgText, _ := readFile(cfg)
	metrics := "http://" + strings.TrimSpace(strings.SplitN(strings.SplitN(cfgText, "metrics_addr: ", 2)[1], "\n", 2)[0])

	a := startKanal(t, nil, "consume", "--config", cfg)
	waitUntil(t, 60*time.Second, "/readyz to report the halted partition", func() bool {
		code, body := httpGet(metrics + "/readyz")
		return code == 503 && strings.Contains(body, "db.items:666") && strings.Contains(body, "dead-letter write to "+dlq)
	})
	_, m := httpGet(metrics + "/metrics")
	for _, want := range []string{`kanal_consumer_halted_partitions{handler="audit"} 1`, `kanal_consumer_dead_letter_write_errors_total{group="kanal-audit"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if printedIDs(a.output())["700"] {
		t.Error("the record after the halted one was printed")
	}
	out, err := kanalRun(t, "offsets", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	if err != nil || !strings.Contains(out, "OWNER") || !strings.Contains(out, "kanal-consumer-kanal-audit@127.0.0.1") {
		t.Errorf("offsets show does not name the owners: %v\n%s", err, out)
	}
	out, err = kanalRun(t, "offsets", "skip", "--brokers", k.Brokers[0], "--group", "kanal-audit", "--topic", "kanal.db.items", "--partition", "0", "--offset", "0")
	if err == nil || !strings.Contains(out, "active members") {
		t.Errorf("skip while the group runs: %v\n%s", err, out)
	}

	// A second instance on the same metrics address while the first still runs:
	// it waits for the address.
	b := startKanal(t, nil, "consume", "--config", cfg)
	waitUntil(t, 30*time.Second, "the second instance to wait for metrics_addr", func() bool {
		return strings.Contains(b.output(), "metrics_addr is in use; retrying")
	})
	took := sigterm(t, a, revoke)
	t.Logf("SIGTERM with a halted partition: exited after %v", took.Round(10*time.Millisecond))
	if !strings.Contains(a.output(), "stopping: finishing in-flight batches") {
		t.Errorf("no log line between the signal and the revoke:\n%s", a.output())
	}
	waitUntil(t, 30*time.Second, "the second instance to serve metrics and halt too", func() bool {
		code, body := httpGet(metrics + "/readyz")
		return strings.Contains(b.output(), "serving metrics") && code == 503 && strings.Contains(body, "db.items:666")
	})
	sigterm(t, b, revoke)

	out, err = kanalRun(t, "offsets", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	var at int64 = -1
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "kanal.db.items" && f[1] == "0" {
			fmt.Sscan(f[2], &at)
		}
	}
	if err != nil || at < 0 {
		t.Fatalf("offsets show after the stop: %v\n%s", err, out)
	}
	out, err = kanalRun(t, "offsets", "skip", "--brokers", k.Brokers[0], "--group", "kanal-audit", "--topic", "kanal.db.items", "--partition", "0", "--offset", fmt.Sprint(at+1))
	if err == nil || !strings.Contains(out, "stands at offset") {
		t.Errorf("skip of a record the group does not stand at: %v\n%s", err, out)
	}
	out, err = kanalRun(t, "offsets", "skip", "--brokers", k.Brokers[0], "--group", "kanal-audit", "--topic", "kanal.db.items", "--partition", "0", "--offset", fmt.Sprint(at))
	if err != nil || !strings.Contains(out, "skipped a record") || !strings.Contains(out, "key=db.items:666") {
		t.Fatalf("offsets skip: %v\n%s", err, out)
	}
	refusing.Store(false) // had the record not been skipped, it would be dead-lettered now
	c := startKanal(t, nil, "consume", "--config", cfg)
	waitUntil(t, 60*time.Second, "the record after the skipped one", func() bool { return printedIDs(c.output())["700"] })
	sigterm(t, c, revoke)
	if strings.Contains(c.output(), "db.items:666") {
		t.Errorf("the skipped record was handled:\n%s", c.output())
	}
}

// TestDeadLettersCLI: `kanal tail --dlq` shows why a record was dead-lettered
// (the kanal.dlq.* headers), `kanal dlq show` lists the dead letters, and `kanal
// dlq redrive` re-publishes them to the group's retry topic once: the running
// group consumes it (this record still cannot be decoded, so it is dead-lettered
// again, naming its table topic as origin) and a second redrive of the same
// dead letter publishes nothing.
func TestDeadLettersCLI(t *testing.T) {
	k := testenv.Kafka(t)
	produceItems(t, k, 1, 5)
	cl := k.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := &kgo.Record{Topic: "kanal.db.items", Partition: 1, Key: []byte("db.items:666"), Value: []byte(`{"op":"c","seq":`),
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte("json")}, {Key: schemas.HeaderSeq, Value: []byte("66")}}}
	if err := cl.ProduceSync(ctx, bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := opsConfig(t, k.Brokers, "")
	c := startKanal(t, nil, "consume", "--config", cfg)
	out, err := kanalStdout(t, "tail", "--brokers", k.Brokers[0], "--dlq", "kanal-audit", "--from-beginning", "--max", "1", "--timeout", "60s")
	if err != nil {
		t.Fatalf("kanal tail --dlq: %v\n%s", err, out)
	}
	var line struct {
		DLQ        map[string]string `json:"dlq"`
		Key        string            `json:"key"`
		ValueError string            `json:"value_error"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &line); err != nil {
		t.Fatalf("tail --dlq line %q: %v", out, err)
	}
	if line.Key != "db.items:666" || line.DLQ["reason"] != "decode" || line.DLQ["handler"] != "audit" || line.DLQ["topic"] != "kanal.db.items" ||
		line.DLQ["partition"] != "1" || line.DLQ["offset"] == "" || line.DLQ["error"] == "" || line.DLQ["time"] == "" || line.ValueError == "" {
		t.Errorf("tail --dlq: %s", out)
	}

	out, err = kanalRun(t, "dlq", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
	if err != nil || !strings.Contains(out, "1 dead letters") || !strings.Contains(out, "db.items:666") || !strings.Contains(out, "decode") ||
		!strings.Contains(out, "kanal.db.items/1@") {
		t.Fatalf("dlq show: %v\n%s", err, out)
	}
	out, err = kanalRun(t, "dlq", "redrive", "--brokers", k.Brokers[0], "--group", "kanal-audit", "--key", "db.items:666", "--since", "1h")
	if err != nil || !strings.Contains(out, "1 dead letters redriven to kanal._retry.kanal-audit") || !strings.Contains(out, "msg=redriven") {
		t.Fatalf("dlq redrive: %v\n%s", err, out)
	}
	// The group reads the retry topic: the record fails to decode again and is
	// dead-lettered a second time, its origin still its table topic.
	waitUntil(t, 60*time.Second, "the redriven record to be dead-lettered again", func() bool {
		out, _ = kanalRun(t, "dlq", "show", "--brokers", k.Brokers[0], "--group", "kanal-audit")
		return strings.Contains(out, "2 dead letters")
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[2], " yes ") || !strings.Contains(lines[3], " no ") || !strings.Contains(lines[3], "kanal.db.items/1@") {
		t.Errorf("dlq show after the redrive:\n%s", out)
	}
	out, err = kanalRun(t, "dlq", "redrive", "--brokers", k.Brokers[0], "--group", "kanal-audit", "--dry-run")
	if err != nil || !strings.Contains(out, "1 dead letters would redrive") || !strings.Contains(out, "1 skipped") || !strings.Contains(out, "already redriven") {
		t.Errorf("dlq redrive --dry-run after one redrive: %v\n%s", err, out)
	}
	sigterm(t, c, 30*time.Second)
}

// TestOffsetsResetTouchesOnlyGroupTopics: without --tables, `kanal offsets reset`
// works on exactly the topics the group subscribes to — with --config, its
// handlers' table topics and its retry topic; without, those of them it has
// committed offsets for — never on topics of another prefix it also has offsets
// for.
func TestOffsetsResetTouchesOnlyGroupTopics(t *testing.T) {
	k := testenv.Kafka(t)
	produceItems(t, k, 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(k.Client(t))
	for _, topic := range []string{"kanal.shop.other", "staging.db.items", "kanal._retry.kanal-audit"} {
		if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	offs := kadm.Offsets{}
	for _, topic := range []string{"kanal.db.items", "staging.db.items", "kanal._retry.kanal-audit"} {
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(ctx, "kanal-audit", offs); err != nil {
		t.Fatal(err)
	}
	cfg := opsConfig(t, k.Brokers, "")
	for _, args := range [][]string{{"--brokers", k.Brokers[0]}, {"--config", cfg}} {
		out, err := kanalRun(t, append([]string{"offsets", "reset", "--group", "kanal-audit", "--to", "latest", "--dry-run"}, args...)...)
		if err != nil {
			t.Fatalf("reset %v: %v\n%s", args, err, out)
		}
		if strings.Contains(out, "staging.") || strings.Contains(out, "kanal.shop.other") || !strings.Contains(out, "kanal.db.items") ||
			!strings.Contains(out, "kanal._retry.kanal-audit") {
			t.Errorf("reset %v plans other topics than the group's:\n%s", args, out)
		}
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// kanalStdout runs kanal and returns its standard output only (and the
// standard error too when it fails).
func kanalStdout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kanalBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}
