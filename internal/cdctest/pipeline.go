package cdctest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
)

// Pipeline is an end-to-end setup for a sink's tests: a private MariaDB running
// the random Workload, a producer writing its wl.* tables to a kfake cluster
// (3 partitions, delete cleanup, so every change stays), and Runners started by
// the test around the sink's handler.
type Pipeline struct {
	T    *testing.T
	M    *testenv.MariaDBServer
	K    *testenv.KafkaCluster
	PCfg producer.Config
	W    *Workload
}

// NewPipeline starts MariaDB, kfake and the producer (source name source) and
// creates the workload tables, seeded with seed.
func NewPipeline(t *testing.T, source string, seed uint64) *Pipeline {
	t.Helper()
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	pcfg := ProducerConfig(m, k, source)
	pcfg.Kafka.FlushRecords = 200
	pcfg.Tables.Include = []string{"wl.*"}
	w := NewWorkload(t, m.DB(), seed)
	p := &Pipeline{T: t, M: m, K: k, PCfg: pcfg, W: w}
	StartProducer(t, pcfg)
	return p
}

// Steps runs n random source transactions.
func (p *Pipeline) Steps(n int) {
	for range n {
		p.W.Step(p.T)
	}
}

// PipelineRunner is a Runner around one handler. Kill stops it the way a SIGKILL
// of its process would: the handler stops applying at once and the network is
// cut, so nothing more is committed and the group is not left.
type PipelineRunner struct {
	*Runner
	Group string
	// Batches counts the batches the handler applied.
	Batches atomic.Int64

	dead atomic.Bool
}

// StartRunner runs h in group over the tables (consumer.Tables patterns) until
// the test ends, Stop or Kill.
func (p *Pipeline) StartRunner(h consumer.Handler, group string, tables ...string) *PipelineRunner {
	t := p.T
	t.Helper()
	rr := &PipelineRunner{Group: group}
	failures := atomic.Int64{}
	gate := consumer.Wrap(h, func(ctx context.Context, b consumer.Batch) error {
		if rr.dead.Load() {
			return errors.New("killed")
		}
		err := h.Handle(ctx, b)
		if err == nil {
			rr.Batches.Add(1)
		} else if ctx.Err() == nil && !rr.dead.Load() && failures.Add(1) <= 3 {
			t.Logf("runner %s: batch of %d on %s/%d failed (will be retried): %v", group, len(b.Records), b.Topic, b.Partition, err)
		}
		return err
	})
	reg := consumer.NewRegistry()
	if err := reg.Register(gate, consumer.Tables(tables...), consumer.Group(group)); err != nil {
		t.Fatal(err)
	}
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = p.K.Brokers
	cfg.CommitInterval = 200 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	cfg.RevokeTimeout = 5 * time.Second
	cfg.MetadataMaxAge = 300 * time.Millisecond
	cfg.BatchMaxRecords = 200
	cfg.QueueMaxRecords = 2000
	cfg.Heartbeats = false
	cfg.Retry = consumer.RetryConfig{MaxAttempts: 20, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	rr.Runner = StartRunner(t, group, cfg, reg, Logger(t).With("group", group), 60*time.Second)
	return rr
}

// Kill ends the runner abruptly (see PipelineRunner).
func (rr *PipelineRunner) Kill(t testing.TB) {
	rr.dead.Store(true)
	rr.Runner.Kill(t)
}

// WaitBatches waits until the runner applied at least n batches.
func (rr *PipelineRunner) WaitBatches(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for rr.Batches.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("runner %s applied %d batches in 60s, want %d", rr.Group, rr.Batches.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitApplied waits until the producer has committed everything the source wrote
// so far and every given group has committed (so applied) every record of the wl
// topics: consumer lag 0.
func (p *Pipeline) WaitApplied(groups ...string) {
	t := p.T
	t.Helper()
	WaitCaughtUp(t, p.M.DB(), &p.PCfg.Kafka, p.PCfg.Source.Name, nil)
	WaitGroupsApplied(t, p.K.Brokers, nil, groups...)
}

// WaitGroupsApplied waits until every given group has committed (so applied)
// every record of the wl topics in brokers: consumer lag 0. alive, when not
// nil, is polled and a non-nil error fails the test (the consumer died).
func WaitGroupsApplied(t testing.TB, brokers []string, alive func() error, groups ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	re := regexp.MustCompile(`^kanal\.wl\.[^.]+$`)
	deadline := time.Now().Add(90 * time.Second)
	for {
		lag := lagOf(adm, re, groups)
		if lag == "" {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("consumer stopped before catching up (%s): %v", lag, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers not caught up within 90s: %s", lag)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lagOf describes the partitions a group has not fully committed, or "".
func lagOf(adm *kadm.Client, re *regexp.Regexp, groups []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, n := range topics.Names() {
		if re.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no topics yet"
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, g := range groups {
		committed, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return err.Error()
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset == 0 {
				return
			}
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || c.At < o.Offset {
				at := int64(-1)
				if ok {
					at = c.At
				}
				out = append(out, fmt.Sprintf("%s %s/%d at %d of %d", g, o.Topic, o.Partition, at, o.Offset))
			}
		})
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// WorkloadTables are the workload's tables with their key builders and bytes
// columns, for comparing a sink with the source.
var WorkloadTables = []struct {
	Table  string
	Key    func(map[string]string) string
	Binary []string
}{
	{"wl.items", ItemsKey, []string{"data"}},
	{"wl.pairs", PairsKey, nil},
	{"wl.nopk", NopkKey, nil},
}
