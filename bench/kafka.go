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
