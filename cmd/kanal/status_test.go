package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/status"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/status.golden.json")

// funcHandler is a handler made of a function.
type funcHandler struct {
	name string
	fn   func(consumer.Record) error
}

func (h funcHandler) Name() string { return h.name }

func (h funcHandler) Handle(_ context.Context, b consumer.Batch) error {
	for _, r := range b.Records {
		if err := h.fn(r); err != nil {
			return err
		}
	}
	return nil
}

// statusScenario runs two producers of source "st" (one active, one standby)
// and three consumer groups: kanal-ok applies everything, kanal-halt halts on
// every change of wl.a, kanal-dlq dead-letters every change of wl.b. It
// returns once the status shows all of that.
func statusScenario(t *testing.T) (m *testenv.MariaDBServer, k *testenv.KafkaCluster) {
	m = testenv.MariaDB(t)
	k = testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.a (id INT PRIMARY KEY, v INT)")
	m.Exec(t, "CREATE TABLE wl.b (id INT PRIMARY KEY, v INT)")
	var rows []string
	for i := 1; i <= 20; i++ {
		rows = append(rows, fmt.Sprintf("(%d,%d)", i, i))
	}
	m.Exec(t, "INSERT INTO wl.a VALUES "+strings.Join(rows, ","))
	m.Exec(t, "INSERT INTO wl.b VALUES "+strings.Join(rows[:10], ","))
	cfgPath := writeConfig(t, m, k.Brokers, "st", `admin:
  listen: 127.0.0.1:0
  status_interval: 300ms
  poll_interval: 200ms
`)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	p1 := startKanal(t, env, "produce", "--config", cfgPath)
	p2 := startKanal(t, env, "produce", "--config", cfgPath)
	waitCaughtUp(t, m, &producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}, "st", p1)
	p1.adminAddr(t)
	p2.adminAddr(t)

	reg := consumer.NewRegistry()
	// A permanent error is dead-lettered at once; a transient one is retried
	// and then handled by the policy (halt).
	fail := func(table string, permanent bool) func(consumer.Record) error {
		return func(r consumer.Record) error {
			if r.Table != table {
				return nil
			}
			if err := fmt.Errorf("refused %s", r.Key); permanent {
				return consumer.Permanent(err)
			} else {
				return err
			}
		}
	}
	for _, h := range []struct {
		name   string
		fn     func(consumer.Record) error
		policy consumer.Policy
	}{
		{"ok", func(consumer.Record) error { return nil }, consumer.Halt},
		{"halt", fail("wl.a", false), consumer.Halt},
		{"dlq", fail("wl.b", true), consumer.DeadLetter},
	} {
		if err := reg.Register(funcHandler{h.name, h.fn}, consumer.Tables("wl.*"), consumer.OnFailure(h.policy)); err != nil {
			t.Fatal(err)
		}
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka = kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}
	ccfg.StatusInterval = 300 * time.Millisecond
	ccfg.CommitInterval = 100 * time.Millisecond
	ccfg.SessionTimeout = 6 * time.Second
	// A halted partition keeps its batch until the revoke timeout when stopping.
	ccfg.RevokeTimeout = time.Second
	ccfg.Retry.InitialInterval, ccfg.Retry.MaxInterval, ccfg.Retry.MaxAttempts = 10*time.Millisecond, 100*time.Millisecond, 2
	runner, err := consumer.NewRunner(ccfg, reg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})

	c, err := status.NewCollector(kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last string
	t0 := time.Now()
	for deadline := time.Now().Add(time.Minute); ; {
		rep, err := c.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if settled(rep) {
			t.Logf("settled after %v", time.Since(t0))
			return m, k
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		last = string(b)
		if time.Now().After(deadline) {
			t.Fatalf("the status did not settle within a minute:\n%s", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settled: one active producer with one standby, reporting lag and margin;
// kanal-ok caught up; kanal-halt halted on all 3 partitions of wl.a and
// caught up on wl.b; 10 dead letters of kanal-dlq. The position carries the
// offset of the (empty) signals topic, which the producer learns shortly after
// it starts.
func settled(r *status.Report) bool {
	if len(r.Sources) != 1 || r.Sources[0].Active == nil || len(r.Sources[0].Standbys) != 1 ||
		r.Sources[0].RetentionMarginFiles == nil || r.Sources[0].BytesBehind == nil || *r.Sources[0].BytesBehind != 0 ||
		r.Sources[0].Position == nil || r.Sources[0].Position.Snapshot == nil {
		return false
	}
	groups := map[string]status.Group{}
	for _, g := range r.Groups {
		groups[g.Name] = g
	}
	lag := func(g, table string) int64 {
		for _, t := range groups[g].Tables {
			if t.Table == table {
				return t.LagRecords
			}
		}
		return -1
	}
	return len(groups) == 3 && lag("kanal-ok", "wl.a") == 0 && lag("kanal-ok", "wl.b") == 0 &&
		len(groups["kanal-halt"].Halted) == 3 && lag("kanal-halt", "wl.b") == 0 &&
		groups["kanal-dlq"].DeadLetters == 10 && lag("kanal-dlq", "wl.b") == 0 && lag("kanal-dlq", "wl.a") == 0
}

// normalize replaces what differs from run to run (times, member ids, host
// names, binlog offsets) with placeholders, keeping whether it was set.
func normalize(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e, k)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e, key)
		}
		return x
	case nil:
		return nil
	}
	switch key {
	case "generated_at", "instance", "member_id", "client_id", "host", "admin_addr", "since_ms",
		"ts_ms", "written_ms", "server_id", "pos", "gtid_set":
		return "<" + key + ">"
	}
	if strings.HasSuffix(key, "_seconds") {
		if f, ok := v.(float64); ok && f >= 0 {
			return "<seconds>"
		}
	}
	return v
}

// TestStatusJSON runs `kanal status --json` on the scenario and compares it,
// normalized, with testdata/status.golden.json (go test -run TestStatusJSON
// -update rewrites it); the text output names the halted partitions.
func TestStatusJSON(t *testing.T) {
	_, k := statusScenario(t)
	began := time.Now()
	out, err := exec.Command(kanalBin, "status", "--brokers", k.Brokers[0], "--json").Output()
	t.Logf("kanal status --json took %v", time.Since(began))
	if err != nil {
		t.Fatalf("kanal status --json: %v", err)
	}
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("kanal status --json printed no JSON: %v\n%s", err, out)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(normalize(doc, "")); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	golden := filepath.Join("testdata", "status.golden.json")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("kanal status --json differs from %s (rerun with -update if the change is intended):\n%s", golden, got)
	}

	text, err := exec.Command(kanalBin, "status", "--brokers", k.Brokers[0]).Output()
	if err != nil {
		t.Fatalf("kanal status: %v", err)
	}
	for _, want := range []string{"GROUP kanal-halt", "halted: handler halt at kanal.wl.a/", "dead letters 10", "refused wl.a:"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("kanal status does not show %q:\n%s", want, text)
		}
	}
}

var servingRE = regexp.MustCompile(`serving http://(\S+)/`)

// TestStatusPage serves the status page with `kanal status --serve`, loads it
// in headless Chromium and checks the rendered page: the active producer,
// the groups' tables, the halted partitions and dead letters, and a chart
// line per group and table that grows as the page refreshes itself; then a
// change at the source shows up without reloading.
func TestStatusPage(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (deploy/local/install.sh installs it): %v", err)
	}
	m, k := statusScenario(t)
	srv := startKanal(t, nil, "status", "--brokers", k.Brokers[0], "--serve", "127.0.0.1:0", "--refresh", "300ms")
	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; {
		if mm := servingRE.FindStringSubmatch(srv.output()); mm != nil {
			url = "http://" + mm[1] + "/"
		} else if time.Now().After(deadline) {
			t.Fatalf("kanal status --serve did not start:\n%s", srv.output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The first action starts the browser: no timeout on its context.
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("load the status page in chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return v
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#sources tbody tr[data-source="st"]`))); err != nil {
		t.Fatalf("the page shows no source st: %v", err)
	}
	active := text(`#sources tr[data-source="st"] td:nth-child(2)`)
	groups, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#groups section.group")].map(s => s.dataset.group)`))
	if err != nil {
		t.Fatal(err)
	}
	haltedA := text(`section[data-group="kanal-halt"] tr[data-table="wl.a"] td.halted`)
	deadLetters := text(`section[data-group="kanal-dlq"] .dead-letters`)
	if active == "none" || active == "" {
		t.Errorf("active producer cell shows %q", active)
	}
	if strings.Join(groups, ",") != "kanal-dlq,kanal-halt,kanal-ok" {
		t.Errorf("groups on the page: %v", groups)
	}
	if haltedA != "3" || deadLetters != "10" {
		t.Errorf("kanal-halt wl.a halted = %q (want 3), kanal-dlq dead letters = %q (want 10)", haltedA, deadLetters)
	}

	// The chart: one line per group and table, growing with each refresh.
	series, err := chromedp.Run(ctx, chromedp.Poll[[]string](`(() => {
		const s = [...document.querySelectorAll("#chart polyline.series")];
		return s.length === 6 && s.every(p => +p.dataset.points >= 3) ? s.map(p => p.dataset.series) : null;
	})()`, chromedp.WithPollingTimeout(time.Minute)))
	if err != nil {
		t.Fatalf("the chart did not get 6 lines of 3 points: %v", err)
	}
	if strings.Join(series, ",") != "kanal-dlq/wl.a,kanal-dlq/wl.b,kanal-halt/wl.a,kanal-halt/wl.b,kanal-ok/wl.a,kanal-ok/wl.b" {
		t.Errorf("chart series: %v", series)
	}

	// New changes of wl.a: kanal-halt's lag on it grows, on the page as it is.
	before := text(`section[data-group="kanal-halt"] tr[data-table="wl.a"] td.lag`)
	m.Exec(t, "UPDATE wl.a SET v = v + 1")
	after, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		const td = document.querySelector('section[data-group="kanal-halt"] tr[data-table="wl.a"] td.lag');
		return td && td.textContent !== `+fmt.Sprintf("%q", before)+` ? td.textContent : null;
	})()`, chromedp.WithPollingTimeout(time.Minute)))
	if err != nil {
		t.Fatalf("kanal-halt's lag on wl.a stayed %s on the page after 20 updates: %v", before, err)
	}
	var b, a int
	fmt.Sscan(before, &b)
	fmt.Sscan(after, &a)
	if a < b+20 {
		t.Errorf("kanal-halt lag on wl.a went from %s to %s, want at least 20 more", before, after)
	}
}
