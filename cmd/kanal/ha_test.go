package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
)

// haExtra is the configuration of the HA tests' producers: the default
// session timeout (6s, kfake's and Kafka's smallest), an admin endpoint on a
// random port.
const haExtra = `ha:
  session_timeout: 6s
admin:
  listen: 127.0.0.1:0
  poll_interval: 300ms
  status_interval: 500ms
`

// haSet is a set of `kanal produce` processes of one source.
type haSet struct {
	t       *testing.T
	env     []string
	cfg     string
	thawing atomic.Bool
	mu      sync.Mutex
	procs   []*child
	addrs   []string
}

func (s *haSet) start(i int) {
	c := startKanal(s.t, s.env, "produce", "--config", s.cfg)
	addr := c.adminAddr(s.t)
	s.mu.Lock()
	s.procs[i], s.addrs[i] = c, addr
	s.mu.Unlock()
}

func (s *haSet) addr(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[i]
}

func (s *haSet) proc(i int) *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[i]
}

// exited reports an error if a process ended on its own.
func (s *haSet) exited(except ...int) error {
	for i := range s.procs {
		if slices.Contains(except, i) {
			continue
		}
		c := s.proc(i)
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("producer %d exited (%v):\n%s", i, err, c.output())
		default:
		}
	}
	return nil
}

// waitRoles waits until exactly one process (not in skip) is active and
// streaming and every other one not in skip is a ready standby; it returns
// the active one and when it was first seen so. Frozen or dead processes in
// skip are not asked. Two processes reporting active is an error unless
// s.thawing (a thawed process may not have noticed yet that it was replaced;
// fencing keeps it from writing).
func (s *haSet) waitRoles(timeout time.Duration, skip ...int) (int, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := s.exited(skip...); err != nil {
			return -1, time.Time{}, err
		}
		active, actives, standbys, others := -1, 0, 0, 0
		for i := range s.procs {
			if slices.Contains(skip, i) {
				continue
			}
			others++
			h, ok := readyz(s.addr(i))
			switch {
			case !ok:
			case h.Role == producer.RoleActive:
				// Counted ready or not: two processes that both think they
				// are active is what the election must prevent.
				actives++
				if h.Ready {
					active = i
				}
			case h.Role == producer.RoleStandby && h.Ready:
				standbys++
			}
		}
		if actives > 1 && !s.thawing.Load() {
			return -1, time.Time{}, fmt.Errorf("%d producers report being active", actives)
		}
		if actives == 1 && active >= 0 && standbys == others-1 {
			s.thawing.Store(false)
			return active, time.Now(), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1, time.Time{}, fmt.Errorf("no single active producer with ready standbys within %v", timeout)
}

// TestProduceHA runs three `kanal produce` processes of one source under a
// steady workload (multi-row and 10k-row transactions), SIGKILLs the active
// one again and again (KANAL_HA_KILLS times, 4 by default; KANAL_HA_KILLS=10 is the run, ~4 min here), freezes one with
// SIGSTOP for longer than the session timeout and thaws it, and stops the
// active one with SIGTERM twice. Every change must be in the topics exactly
// once, the topics must replay to the source, and no process may write after
// a newer one began: the producer epochs of the committed records never go
// down. Each takeover's time is logged.
func TestProduceHA(t *testing.T) {
	kills := 4
	if v := os.Getenv("KANAL_HA_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KANAL_HA_KILLS=%q: want a positive number", v)
		}
		kills = n
	}
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	s := &haSet{t: t, env: []string{"KANAL_TEST_DB_PASSWORD=" + m.Password},
		cfg: writeConfig(t, m, k.Brokers, "ha", haExtra), procs: make([]*child, 3), addrs: make([]string, 3)}
	w := cdctest.NewWorkload(t, m.DB(), 19)
	for i := range s.procs {
		s.start(i)
	}
	if _, _, err := s.waitRoles(time.Minute); err != nil {
		t.Fatal(err)
	}

	var killTimes, termTimes []time.Duration
	var stopTime time.Duration
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			rng := rand.New(rand.NewPCG(19, 1))
			takeover := func(sig syscall.Signal, what string) (int, time.Duration, error) {
				a, _, err := s.waitRoles(time.Minute)
				if err != nil {
					return -1, 0, err
				}
				time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
				if err := s.proc(a).cmd.Process.Signal(sig); err != nil {
					return -1, 0, err
				}
				sent := time.Now()
				_, at, err := s.waitRoles(time.Minute, a)
				if err != nil {
					return -1, 0, fmt.Errorf("after %s of producer %d: %w", what, a, err)
				}
				return a, at.Sub(sent), nil
			}
			for i := 0; i < kills; i++ {
				a, d, err := takeover(syscall.SIGKILL, "SIGKILL")
				if err != nil {
					return err
				}
				killTimes = append(killTimes, d)
				c := s.proc(a)
				<-c.done
				c.done <- nil
				s.start(a)
			}
			for i := 0; i < 2; i++ {
				a, d, err := takeover(syscall.SIGTERM, "SIGTERM")
				if err != nil {
					return err
				}
				termTimes = append(termTimes, d)
				c := s.proc(a)
				select {
				case err := <-c.done:
					c.done <- nil
					if err != nil {
						return fmt.Errorf("producer %d did not exit cleanly on SIGTERM: %v\n%s", a, err, c.output())
					}
				case <-time.After(30 * time.Second):
					return fmt.Errorf("producer %d still running 30s after SIGTERM", a)
				}
				s.start(a)
			}

			// Freeze the active process for longer than the session timeout.
			a, d, err := takeover(syscall.SIGSTOP, "SIGSTOP")
			if err != nil {
				return err
			}
			stopTime = d
			b, _, err := s.waitRoles(time.Minute, a)
			if err != nil {
				return err
			}
			// Thaw it only once the new active process has committed.
			before := scrape(t, s.addr(b)).get(t, "kanal_producer_kafka_transactions_total")
			for deadline := time.Now().Add(time.Minute); ; {
				if scrape(t, s.addr(b)).get(t, "kanal_producer_kafka_transactions_total") > before {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("the new active producer %d committed nothing within a minute", b)
				}
				time.Sleep(50 * time.Millisecond)
			}
			frozen := s.proc(a)
			s.thawing.Store(true)
			if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				return err
			}
			if _, _, err := s.waitRoles(time.Minute); err != nil {
				return fmt.Errorf("after SIGCONT of producer %d: %w", a, err)
			}
			ms := scrape(t, s.addr(a))
			if ms.get(t, "kanal_producer_role{role=standby}") != 1 {
				return fmt.Errorf("the thawed producer %d is not standing by:%s", a, ms)
			}
			if ms.get(t, "kanal_producer_leadership_changes_total{kind=lost}")+ms.get(t, "kanal_producer_fenced_total") < 1 {
				return fmt.Errorf("the thawed producer %d neither lost its membership nor was fenced:%s\n%s", a, ms, frozen.output())
			}
			t.Logf("thawed producer %d: lost=%v fenced=%v", a, ms["kanal_producer_leadership_changes_total{kind=lost}"], ms["kanal_producer_fenced_total"])
			return nil
		}()
	}()

	rng := rand.New(rand.NewPCG(7, 7))
	var ctlErr error
	for running := true; running; {
		select {
		case ctlErr = <-done:
			running = false
		default:
			switch r := rng.IntN(100); {
			case r < 2:
				w.Bulk(t, 10000)
			case r < 10:
				w.Bulk(t, 100+rng.IntN(1000))
			default:
				w.Step(t)
			}
		}
	}
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}

	kcfg := producer.KafkaConfig{Config: kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal"}}
	cdctest.WaitCaughtUp(t, m.DB(), &kcfg, "ha", func() error { return s.exited() })
	for i := range s.procs {
		c := s.proc(i)
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for i := range s.procs {
		c := s.proc(i)
		select {
		case err := <-c.done:
			c.done <- nil
			if err != nil {
				t.Errorf("producer %d did not exit cleanly on SIGTERM: %v\n%s", i, err, c.output())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("producer %d still running 30s after SIGTERM", i)
		}
	}

	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.wl\.[^.]+$`, 2*time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	epochs := checkEpochsNeverGoDown(t, k.Brokers, `^kanal\.(wl\.[^.]+|_positions)$`)
	t.Logf("%d changes from %d statements exactly once; %d producer epochs committed", n, w.Statements, epochs)
	t.Logf("takeover after SIGKILL (%d): %s", len(killTimes), durationStats(killTimes))
	t.Logf("takeover after SIGTERM (%d): %s", len(termTimes), durationStats(termTimes))
	t.Logf("takeover after SIGSTOP: %v", stopTime.Round(time.Millisecond))
	for _, d := range killTimes {
		if d > 45*time.Second {
			t.Errorf("a takeover after SIGKILL took %v", d)
		}
	}
}

func durationStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var all []string
	for _, d := range ds {
		all = append(all, d.Round(10*time.Millisecond).String())
	}
	return fmt.Sprintf("median %v, max %v (%s)", med.Round(10*time.Millisecond), s[len(s)-1].Round(10*time.Millisecond), strings.Join(all, " "))
}

// checkEpochsNeverGoDown reads every committed record of the matching topics
// and fails the test if, in any partition, a record of a lower producer epoch
// follows one of a higher epoch: a fenced process wrote after the process
// that fenced it. It returns the number of distinct epochs seen.
func checkEpochsNeverGoDown(t *testing.T, brokers []string, re string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ac := kadm.NewClient(adm)
	topics, err := ac.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rx := regexp.MustCompile(re)
	var names []string
	for _, n := range topics.Names() {
		if rx.MatchString(n) {
			names = append(names, n)
		}
	}
	ends, err := ac.ListEndOffsets(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]map[int32]kgo.Offset{}
	want := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if parts[o.Topic] == nil {
				parts[o.Topic] = map[int32]kgo.Offset{}
			}
			parts[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
			want[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last := map[string]int16{}
	epochs := map[int16]bool{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading epochs: timed out with %d partitions unread", len(want))
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			tp := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			if r.Offset >= want[tp]-1 {
				delete(want, tp)
			}
			if r.Attrs.IsControl() {
				return
			}
			epochs[r.ProducerEpoch] = true
			if prev, ok := last[tp]; ok && r.ProducerEpoch < prev {
				t.Errorf("%s@%d: a record of producer epoch %d after one of epoch %d: a fenced producer wrote after its successor",
					tp, r.Offset, r.ProducerEpoch, prev)
			}
			last[tp] = r.ProducerEpoch
		})
	}
	return len(epochs)
}
