package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

// consumeKills is one run of a built-in handler type through the real binaries:
// a private MariaDB running the random workload, `kanal produce`, kfake, and
// `kanal consume` running the handler from YAML, SIGKILLed `kills` times while
// the workload runs and restarted each time.
type consumeKills struct {
	name    string // source name and handler name
	seed    uint64
	kills   int
	handler string // the consumers.handlers entry, YAML at the list's indentation
}

// consumeRun is what the run leaves for the target's checks.
type consumeRun struct {
	m    *testenv.MariaDBServer
	k    *testenv.KafkaCluster
	recs []cdctest.Record // every record of the wl topics, after the run
	// applied is, per consumer process, the records its metrics said it had
	// applied just before it was killed or, for the last one, stopped.
	applied []int
}

// run executes the scenario and returns after the last consumer has applied
// every record (lag 0) and stopped cleanly on SIGTERM.
func (s consumeKills) run(t *testing.T) *consumeRun {
	t.Helper()
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	env := []string{"KANAL_TEST_DB_PASSWORD=" + m.Password}
	w := cdctest.NewWorkload(t, m.DB(), s.seed)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// Small batches and frequent commits: a SIGKILL then lands between a
	// batch's apply and its commit often, which the restarted consumer replays.
	cfgPath := writeConfig(t, m, k.Brokers, s.name, fmt.Sprintf(`consumers:
  commit_interval: 300ms
  session_timeout: 6s
  metadata_max_age: 500ms
  batch_max_records: 50
  metrics_addr: %s
  handlers:
%s`, metrics, s.handler))
	prod := startKanal(t, env, "produce", "--config", cfgPath)
	rng := rand.New(rand.NewPCG(s.seed, 7))
	run := &consumeRun{m: m, k: k}
	// load runs source transactions at a moderate pace (a bulk insert now and
	// then) until done says stop; the consumer keeps up, so kills land mid-stream.
	load := func(c *child, what string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached within 60s; consumer log:\n%s", what, c.output())
			}
			for _, p := range []*child{prod, c} {
				select {
				case err := <-p.done:
					p.done <- err
					t.Fatalf("kanal %s exited (%v):\n%s", p.cmd.Args[1], err, p.output())
				default:
				}
			}
			if rng.IntN(40) == 0 {
				w.Bulk(t, 100+rng.IntN(400))
			} else {
				w.Step(t)
			}
			time.Sleep(time.Duration(2+rng.IntN(6)) * time.Millisecond)
		}
	}
	for kill := range s.kills {
		c := startKanal(t, env, "consume", "--config", cfgPath)
		// Kill after a random number of applied records: mid-stream, with a
		// batch or more applied but not yet committed most of the time.
		target, applied := 100+rng.IntN(500), 0
		load(c, fmt.Sprintf("kill %d: %d records applied", kill+1, target), func() bool {
			applied = appliedRecords(metrics)
			return applied >= target
		})
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.done
		c.done <- nil
		run.applied = append(run.applied, applied)
	}
	// The last consumer starts while the load goes on, then catches up.
	c := startKanal(t, env, "consume", "--config", cfgPath)
	load(c, "last consumer applying", func() bool { return appliedRecords(metrics) >= 100 })
	kcfg := producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}
	waitCaughtUp(t, m, &kcfg, s.name, prod)
	cdctest.WaitGroupsApplied(t, k.Brokers, func() error {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("kanal consume exited (%v):\n%s", err, c.output())
		default:
			return nil
		}
	}, "kanal-"+s.name)
	run.applied = append(run.applied, appliedRecords(metrics))
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Fatalf("kanal consume did not exit cleanly on SIGTERM: %v\n%s", err, c.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kanal consume did not stop within 30s of SIGTERM")
	}
	run.recs = cdctest.ReadAll(t, k.Brokers, `^kanal\.wl\.[^.]+$`, 60*time.Second)
	cdctest.CheckExactlyOnce(t, run.recs) // the Kafka side itself: seqs 1..N
	return run
}

// appliedRecords sums kanal_consumer_records_applied_total on the consumer's
// metrics endpoint; 0 while it is not up.
func appliedRecords(addr string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "kanal_consumer_records_applied_total{") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			n += v
		}
	}
	return int(n)
}

// liveKeys lists the record keys of the rows the records leave live (the last
// record of the key is not a delete or tombstone) and of those deleted.
func liveKeys(recs []cdctest.Record) (live, deleted []string) {
	last := map[string]bool{}
	var order []string
	for _, r := range recs {
		if _, seen := last[r.Key]; !seen {
			order = append(order, r.Key)
		}
		last[r.Key] = !r.Tombstone && r.Change != nil && r.Change.After != nil
	}
	for _, k := range order {
		if last[k] {
			live = append(live, k)
		} else {
			deleted = append(deleted, k)
		}
	}
	return live, deleted
}

// TestConsumeElasticsearchKilled: the elasticsearch handler run by `kanal
// consume`, SIGKILLed twice under load and restarted; then the in-test
// cluster's documents equal the source tables row for row (a renamed column
// included), and the replays after the kills were refused as stale versions
// rather than applied twice.
func TestConsumeElasticsearchKilled(t *testing.T) {
	t.Parallel() // own servers, ports and group
	srv := estest.NewServer(false)
	t.Cleanup(srv.Close)
	run := consumeKills{name: "search", seed: 31, kills: 2, handler: fmt.Sprintf(`    - handler: elasticsearch
      name: search
      tables: ["wl.*"]
      options:
        urls: [%q]
        retry: {max_attempts: 5, initial_interval: 10ms, max_interval: 100ms}
        tables:
          - {match: wl.nopk, index: "nopk", columns: {rename: {y: why}}}
          - {match: "wl.*"}
`, srv.URL)}.run(t)

	cl := estest.Cluster{URL: srv.URL}
	docs := 0
	for _, tc := range cdctest.WorkloadTables {
		want := cdctest.SourceRows(t, run.m.DB(), tc.Table, tc.Key, tc.Binary...)
		index := tc.Table
		if tc.Table == "wl.nopk" {
			index = "nopk"
		}
		got := map[string]map[string]string{}
		for _, d := range cl.Search(t, index) {
			r, err := cdctest.RenderJSON(d.Source, tc.Binary...)
			if err != nil {
				t.Fatalf("%s/%s: %v", index, d.ID, err)
			}
			if index == "nopk" {
				r["y"] = r["why"]
				delete(r, "why")
			}
			got[tc.Key(r)] = r
		}
		if d := testdiff.Rows(want, got); d != "" {
			t.Errorf("index %s differs from %s (%d documents, %d rows):\n%s", index, tc.Table, len(got), len(want), d)
		}
		docs += len(got)
	}
	st := srv.Stats()
	t.Logf("%d documents equal the source; records applied per consumer process %v; %d bulk actions, %d refused as stale (replays)",
		docs, run.applied, st.Actions, st.Conflicts)
}

// TestConsumeMemcachedKilled: the memcached handler run by `kanal consume`,
// SIGKILLed twice under load and restarted; then every row of the source is in
// memcached under its key template with the source's values, and every row
// deleted at the source is gone (a tombstone or nothing).
func TestConsumeMemcachedKilled(t *testing.T) {
	t.Parallel() // own servers, ports and group
	mc := testenv.Memcached(t)
	run := consumeKills{name: "cache", seed: 32, kills: 2, handler: fmt.Sprintf(`    - handler: memcached
      name: cache
      tables: ["wl.*"]
      options:
        servers: [%q]
        key: "kc:{key}"
        tables: [{match: "wl.*"}]
`, mc.Addr)}.run(t)

	cfg := memcachedsink.DefaultConfig()
	cfg.Servers = []string{mc.Addr}
	cfg.Key = "kc:{key}"
	cfg.Tables = []memcachedsink.TableConfig{{Match: "wl.*"}}
	rd, err := memcachedsink.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	live, deleted := liveKeys(run.recs)
	got := map[string]map[string]string{}
	binary := map[string][]string{}
	for _, tc := range cdctest.WorkloadTables {
		binary[tc.Table] = tc.Binary
	}
	for _, k := range append(live, deleted...) {
		row, ok, err := rd.Get(k)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !ok {
			continue
		}
		table, _, _ := strings.Cut(k, ":")
		if got[k], err = cdctest.RenderJSON(row.Values, binary[table]...); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	want := map[string]map[string]string{}
	for _, tc := range cdctest.WorkloadTables {
		for k, r := range cdctest.SourceRows(t, run.m.DB(), tc.Table, tc.Key, tc.Binary...) {
			want[k] = r
		}
	}
	if d := testdiff.Rows(want, got); d != "" {
		t.Errorf("memcached differs from the source (%d rows there, %d in the source):\n%s", len(got), len(want), d)
	}
	t.Logf("%d rows equal the source, %d deleted keys hold no row; records applied per consumer process %v", len(got), len(deleted), run.applied)
}

// TestConsumeRabbitMQKilled: the rabbitmq handler run by `kanal consume`,
// SIGKILLed twice under load and restarted; then a consumer of a queue bound to
// the exchange has received every change Kafka holds at least once and, after
// the documented dedupe by kanal.key and kanal.seq, exactly once and in per-key
// order, and the rows it builds equal the source tables.
func TestConsumeRabbitMQKilled(t *testing.T) {
	t.Parallel() // own servers, ports and group
	mq := testenv.RabbitMQ(t)
	ch := amqptest.Channel(t, mq.URL)
	amqptest.BindQueue(t, ch, "kanal-e2e", "e2e", "wl.*")
	run := consumeKills{name: "fanout", seed: 33, kills: 2, handler: fmt.Sprintf(`    - handler: rabbitmq
      name: fanout
      tables: ["wl.*"]
      options:
        url: %q
        exchange: kanal-e2e
        tables: [{match: "wl.*"}]
`, mq.URL)}.run(t)

	m := amqptest.NewModel()
	// Every message is in the queue: the handler's batches were confirmed, and
	// confirms come after routing.
	m.Add(t, amqptest.Drain(t, ch, "e2e"))
	m.CheckExactlyOnce(t, run.recs)
	m.CheckWorkloadTables(t, run.m.DB())
	t.Logf("%d changes, %d messages received (%d duplicates from the kills); records applied per consumer process %v",
		len(m.Applied), m.Received, m.Received-len(m.Applied), run.applied)
}
