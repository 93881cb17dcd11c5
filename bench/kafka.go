package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// devKafka is `kanal dev-kafka` (kfake) as a separate process: its CPU shows up as
// another process's, like a real broker's would, and each measured round gets a fresh,
// empty one.
type devKafka struct {
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

func (e *Env) startKafka(ctx context.Context) (*devKafka, error) {
	logf, err := os.Create(filepath.Join(e.tmp, fmt.Sprintf("dev-kafka-%d.log", len(e.kafka))))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(e.Opts.KanalBin, "dev-kafka", "--listen", "127.0.0.1:0")
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kanal dev-kafka: %w", err)
	}
	k := &devKafka{cmd: cmd, done: make(chan struct{})}
	e.kafka = append(e.kafka, k)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "dev-kafka listening on "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(k.done)
	}()
	select {
	case k.Addr = <-addr:
		return k, nil
	case <-k.done:
		return nil, fmt.Errorf("kanal dev-kafka exited before listening (log %s)", logf.Name())
	case <-time.After(30 * time.Second):
		k.stop()
		return nil, fmt.Errorf("kanal dev-kafka not listening after 30s")
	case <-ctx.Done():
		k.stop()
		return nil, ctx.Err()
	}
}

func (k *devKafka) stop() {
	if k == nil {
		return
	}
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

func (e *Env) stopKafkas() {
	for _, k := range e.kafka {
		k.stop()
	}
	e.kafka = nil
}

// createTopic creates a topic with the producer's defaults (6 partitions).
func createTopic(ctx context.Context, brokers []string, topic string, partitions int32, policy string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, map[string]*string{"cleanup.policy": &policy}, topic)
	if err == nil {
		err = resp.Err
	}
	return err
}

// procCPU returns the CPU time (user+system) a process has used so far, from
// /proc/<pid>/stat; pid 0 means this process.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// cpuMeter measures the CPU this process, dev-kafka and mariadbd use during a stage.
type cpuMeter struct {
	pids  [3]int
	start [3]time.Duration
}

func (e *Env) meterCPU(k *devKafka) *cpuMeter {
	m := &cpuMeter{}
	m.pids[1] = e.MariaDB.Pid()
	if k != nil {
		m.pids[2] = k.cmd.Process.Pid
	}
	for i, p := range m.pids {
		if i == 0 || p != 0 {
			m.start[i] = procCPU(p)
		}
	}
	return m
}

// CPU is the CPU seconds of one stage by process.
type CPU struct {
	Self    float64 `json:"self_s"` // the bench process: decoder, producer or naive loop
	MariaDB float64 `json:"mariadb_s"`
	Kafka   float64 `json:"kafka_s"`
}

func (m *cpuMeter) stop() CPU {
	var d [3]float64
	for i, p := range m.pids {
		if i == 0 || p != 0 {
			d[i] = (procCPU(p) - m.start[i]).Seconds()
		}
	}
	return CPU{Self: d[0], MariaDB: d[1], Kafka: d[2]}
}

// seedPosition stores pos as the committed position of cfg's source, as a
// producer that stopped there would have: the next producer resumes at pos. The
// record is not transactional, so read_committed readers see it at once.
func seedPosition(ctx context.Context, cfg *producer.Config, pos schemas.Position) error {
	k := &cfg.Kafka
	topic := schemas.PositionsTopic(k.TopicPrefix)
	if err := createTopic(ctx, k.Brokers, topic, 1, "compact"); err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	pos.Source = cfg.Source.Name
	r := &kgo.Record{Topic: topic, Key: []byte(cfg.Source.Name), Value: pos.Marshal()}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("seed the position of %s: %w", cfg.Source.Name, err)
	}
	return nil
}

// topicBytes is the size of a topic's partitions in the broker (DescribeLogDirs):
// its record batches as stored, compressed, headers and framing included.
func topicBytes(ctx context.Context, brokers []string, topic string) (uint64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	dirs, err := kadm.NewClient(cl).DescribeAllLogDirs(ctx, nil) // every partition: kfake describes none of a topic named without its partitions
	if err != nil {
		return 0, fmt.Errorf("describe log dirs of %s: %w", topic, err)
	}
	var n int64
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == topic {
				n += p.Size
			}
		})
	})
	return uint64(n), nil
}

// readSizes reads a topic from its start (read_committed) until it has seen want
// records with a value and adds up their parts.
func readSizes(ctx context.Context, brokers []string, topic string, want uint64) (recordSizes, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return recordSizes{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var s recordSizes
	for s.records < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return s, fmt.Errorf("read %s back: %d of %d records: %w", topic, s.records, want, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value == nil {
				return
			}
			s.records++
			s.key += uint64(len(r.Key))
			s.value += uint64(len(r.Value))
			for _, h := range r.Headers {
				s.headers += uint64(len(h.Key) + len(h.Value))
			}
		})
	}
	return s, nil
}

// lastOffsets returns the offset of the last record of each non-empty partition
// of the workload topic (found once per run): apply stages with several
// members end when every partition is applied past it. The producer writes
// transactions, so a partition ends with a commit marker: the last record is
// the one before it.
func (e *Env) lastOffsets(ctx context.Context) (map[int32]int64, error) {
	if e.last != nil {
		return e.last, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, e.Topic)
	cl.Close()
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", e.Topic, err)
	}
	from := map[int32]kgo.Offset{}
	want := map[int32]int64{} // a record at or after this offset ends the search
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			from[o.Partition] = kgo.NewOffset().At(max(0, o.Offset-10))
			want[o.Partition] = o.Offset - 2
		}
	})
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", e.Topic, err)
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.Topic: from}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	last := map[int32]int64{}
	found := func() bool {
		for p, w := range want {
			if off, ok := last[p]; !ok || off < w {
				return false
			}
		}
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !found() {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			return nil, fmt.Errorf("last records of %s: not found in 30s (found %v, end offsets less 2: %v)", e.Topic, last, want)
		}
		fs.EachRecord(func(r *kgo.Record) { last[r.Partition] = max(last[r.Partition], r.Offset) })
	}
	e.last = last
	return last, nil
}
