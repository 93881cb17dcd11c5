package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

const latencyDDL = `CREATE TABLE bench.lat (
  id       BIGINT NOT NULL PRIMARY KEY,
  payload  VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,
  amount   DECIMAL(12,2) NOT NULL,
  stamp_us BIGINT NOT NULL
) ENGINE=InnoDB`

// latencyStage writes rows at a steady rate, each stamped with the writer's wall
// clock (µs) right before its autocommit INSERT is sent, while kanal produce runs, a
// consumer.Runner with the Redis materialiser applies the topic, and a plain
// read_committed consumer in this process notes when each record arrives. The end
// point of 5/5b/5c is "handler applied" (the Redis sink's Handle returned for the
// record's batch); 5d is the p99 of "visible to a read_committed consumer", the
// producer's share. The binlog's own timestamps have one-second precision; this
// clock is the same machine's.
func latencyStage(ctx context.Context, env *Env) []*Row {
	o := env.Opts
	rows := []*Row{
		{ID: "5", Measure: fmt.Sprintf("latency binlog commit → applied by the Redis materialiser in a consumer.Runner, p50 (steady %d rows/s for %v)", o.LatencyRate, o.LatencyDuration), Unit: "ms"},
		{ID: "5b", Measure: "latency p99", Unit: "ms", Goal: "≤ 50 ms"},
		{ID: "5c", Measure: "latency max", Unit: "ms"},
		{ID: "5d", Measure: "latency binlog commit → visible to a read_committed consumer (the producer's share), p99", Unit: "ms"},
	}
	env.logf("latency: %d rows/s for %v", o.LatencyRate, o.LatencyDuration)
	applied, visible, note, err := measureLatency(ctx, env)
	if err != nil {
		for _, r := range rows {
			setStatus(r, err)
		}
		return rows
	}
	pct := func(lat []float64, p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	slices.Sort(applied)
	slices.Sort(visible)
	rows[0].Value = spreadOf([]float64{pct(applied, 0.50)})
	rows[1].Value = spreadOf([]float64{pct(applied, 0.99)})
	rows[1].Status = goalStatus(pct(applied, 0.99) <= 50)
	rows[2].Value = spreadOf([]float64{applied[len(applied)-1]})
	rows[3].Value = spreadOf([]float64{pct(visible, 0.99)})
	rows[3].Note = fmt.Sprintf("visible: p50 %.2f ms, max %.1f ms", pct(visible, 0.50), visible[len(visible)-1])
	rows[0].Note = note
	return rows
}

func measureLatency(ctx context.Context, env *Env) (applied, visible []float64, note string, err error) {
	o := env.Opts
	db := env.MariaDB.DB()
	for _, q := range []string{"DROP TABLE IF EXISTS bench.lat", latencyDDL} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, nil, "", fmt.Errorf("%s: %w", q, err)
		}
	}
	k, err := env.startKafka(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	defer k.stop()
	brokers := []string{k.Addr}
	cfg := producerConfig(env, brokers, "benchlat", 5000, "bench.lat")
	cfg.Source.Start = "current"
	topic := schemas.TopicName(cfg.Kafka.TopicPrefix, "bench", "lat")
	// Created up front so the consumer is assigned its partitions before the clock runs.
	if err := createTopic(ctx, brokers, topic, cfg.Kafka.Partitions, cfg.Kafka.CleanupPolicy); err != nil {
		return nil, nil, "", err
	}
	p, err := producer.New(cfg, discardLog)
	if err != nil {
		return nil, nil, "", err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	prodDone := make(chan error, 1)
	go func() { prodDone <- p.Run(runCtx) }()

	// The handler end: the Redis materialiser in a Runner, stamped when its Handle
	// returns.
	srv, err := env.Redis()
	if err != nil {
		return nil, nil, "", err
	}
	scfg := redissink.DefaultConfig()
	scfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}
	scfg.Tables = []redissink.TableConfig{{Match: "bench.lat"}}
	sink, err := redissink.New(scfg, discardLog)
	if err != nil {
		return nil, nil, "", err
	}
	defer sink.Close()
	var mu sync.Mutex
	var lat, vis []float64
	var seen, applies, bad int
	var warmupID int64 = 1 << 62
	stamped := consumer.Wrap(sink, func(ctx context.Context, b consumer.Batch) error {
		if err := sink.Handle(ctx, b); err != nil {
			return err
		}
		now := time.Now().UnixMicro()
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			if r.Change == nil || r.Change.After == nil {
				continue
			}
			id, _ := r.Change.After["id"].(int64)
			stamp, ok := r.Change.After["stamp_us"].(int64)
			if !ok {
				bad++
				continue
			}
			applies++
			if id > warmupID {
				lat = append(lat, float64(now-stamp)/1000)
			}
		}
		return nil
	})
	env.groups++
	reg := consumer.NewRegistry()
	if err := reg.Register(stamped, consumer.Tables("bench.lat"), consumer.Group(fmt.Sprintf("bench-lat-%d", env.groups))); err != nil {
		return nil, nil, "", err
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka.Brokers = brokers
	ccfg.Heartbeats = false
	ccfg.MetadataMaxAge = time.Second
	runner, err := consumer.NewRunner(ccfg, reg, discardLog)
	if err != nil {
		return nil, nil, "", err
	}
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- runner.Run(runCtx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, nil, "", err
	}
	defer cl.Close()

	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for runCtx.Err() == nil {
			fs := cl.PollFetches(runCtx)
			now := time.Now().UnixMicro()
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				id, stamp, ok := latencyFields(r.Value)
				if !ok {
					bad++
					return
				}
				seen++
				if id > warmupID {
					vis = append(vis, float64(now-stamp)/1000)
				}
			})
			mu.Unlock()
		}
	}()

	// Warm-up: the producer is connected and the consumer has its partitions once a
	// first row comes through.
	var id int64
	insert := func(n int) error {
		b := []byte("INSERT INTO bench.lat (id,payload,amount,stamp_us) VALUES ")
		stamp := time.Now().UnixMicro()
		for i := range n {
			id++
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '(')
			b = strconv.AppendInt(b, id, 10)
			b = append(b, ",'order paid — café 🚚 "...)
			b = strconv.AppendInt(b, id, 10)
			b = append(b, "',12.50,"...)
			b = strconv.AppendInt(b, stamp, 10)
			b = append(b, ')')
		}
		_, err := db.ExecContext(ctx, string(b))
		return err
	}
	warmEnd := time.Now().Add(30 * time.Second)
	for {
		if err := insert(1); err != nil {
			return nil, nil, "", err
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		n, a := seen, applies
		mu.Unlock()
		if n > 0 && a > 0 {
			break
		}
		select {
		case err := <-prodDone:
			return nil, nil, "", fmt.Errorf("producer stopped: %v", err)
		case err := <-runnerDone:
			return nil, nil, "", fmt.Errorf("consumer runner stopped: %v", err)
		default:
		}
		if time.Now().After(warmEnd) {
			return nil, nil, "", fmt.Errorf("no record reached the consumer and the handler within 30s (%d, %d)", n, a)
		}
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	warmupID = id
	mu.Unlock()

	// Steady rate: every 5ms a transaction of rate/200 rows (25 at 5,000 rows/s).
	const tickEvery = 5 * time.Millisecond
	perTick := max(1, o.LatencyRate*int(tickEvery)/int(time.Second))
	tick := time.NewTicker(tickEvery)
	began := time.Now()
	end := began.Add(o.LatencyDuration)
	written := 0
	for time.Now().Before(end) {
		<-tick.C
		if err := insert(perTick); err != nil {
			tick.Stop()
			return nil, nil, "", err
		}
		written += perTick
	}
	tick.Stop()
	elapsed := time.Since(began)
	// Drain: everything written must arrive.
	drainEnd := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, a := len(vis), len(lat)
		mu.Unlock()
		if n >= written && a >= written || time.Now().After(drainEnd) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-consDone
	<-prodDone
	<-runnerDone
	mu.Lock()
	defer mu.Unlock()
	if len(vis) < written {
		return nil, nil, "", fmt.Errorf("only %d of %d rows reached the consumer", len(vis), written)
	}
	// A redelivered batch is stamped again: more is fine, fewer is not.
	if len(lat) < written {
		return nil, nil, "", fmt.Errorf("only %d of %d rows were applied by the handler", len(lat), written)
	}
	if bad > 0 {
		return nil, nil, "", fmt.Errorf("%d records without id/stamp_us", bad)
	}
	note = fmt.Sprintf("%d rows in %d transactions of %d at %.0f rows/s achieved; producer in-process, dev-kafka a separate process, Runner (default config) with the Redis materialiser and a plain read_committed franz-go consumer (fetch max wait 100ms) in-process; one run, the percentiles are over all rows after a warm-up",
		written, written/perTick, perTick, float64(written)/elapsed.Seconds())
	return lat, vis, note, nil
}

// latencyFields extracts after.id and after.stamp_us from a kanal JSON envelope.
func latencyFields(v []byte) (id, stamp int64, ok bool) {
	i := bytes.Index(v, []byte(`"after":{`))
	if i < 0 {
		return 0, 0, false
	}
	after := v[i:]
	num := func(field string) (int64, bool) {
		j := bytes.Index(after, []byte(`"`+field+`":`))
		if j < 0 {
			return 0, false
		}
		rest := after[j+len(field)+3:]
		end := bytes.IndexAny(rest, ",}")
		if end < 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(string(rest[:end]), 10, 64)
		return n, err == nil
	}
	id, ok1 := num("id")
	stamp, ok2 := num("stamp_us")
	return id, stamp, ok1 && ok2
}
