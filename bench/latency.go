package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
//
// Rows 5e–5h repeat it while one transaction of BigTxnRows rows on another table
// is committed and produced (see loadedRows).
func latencyStage(ctx context.Context, env *Env) []*Row {
	o := env.Opts
	rows := []*Row{
		{ID: "5", Measure: fmt.Sprintf("latency binlog commit → applied by the Redis materialiser in a consumer.Runner, p50 (steady %d rows/s for %v)", o.LatencyRate, o.LatencyDuration), Unit: "ms"},
		{ID: "5b", Measure: "latency p99", Unit: "ms", Goal: "≤ 50 ms"},
		{ID: "5c", Measure: "latency max", Unit: "ms"},
		{ID: "5d", Measure: "latency binlog commit → visible to a read_committed consumer (the producer's share), p99", Unit: "ms"},
	}
	env.logf("latency: %d rows/s for %v", o.LatencyRate, o.LatencyDuration)
	res, err := measureLatency(ctx, env, false)
	if err != nil {
		for _, r := range rows {
			setStatus(r, err)
		}
	} else {
		var applied, visible []float64
		for _, s := range res.samples {
			applied = append(applied, s.applied())
			visible = append(visible, s.visible())
		}
		slices.Sort(applied)
		slices.Sort(visible)
		rows[0].Value = spreadOf([]float64{pct(applied, 0.50)})
		rows[1].Value = spreadOf([]float64{pct(applied, 0.99)})
		rows[1].Status = goalStatus(pct(applied, 0.99) <= 50)
		rows[2].Value = spreadOf([]float64{applied[len(applied)-1]})
		rows[3].Value = spreadOf([]float64{pct(visible, 0.99)})
		rows[3].Note = fmt.Sprintf("visible: p50 %.2f ms, max %.1f ms", pct(visible, 0.50), visible[len(visible)-1])
		rows[0].Note = res.note
	}
	return append(rows, loadedRows(ctx, env)...)
}

// pct is the p-quantile of sorted values.
func pct(lat []float64, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(p*float64(len(lat))))]
}

// loadedRows measures the steady writer while a big transaction on another table
// is produced. The binlog is serial: changes committed after the big
// transaction sit behind it and cannot become visible before the producer has
// written all of it, however fast it is. So the rows of the writer are split by
// their place in the binlog (their GTID against the big transaction's): those
// ahead of it (committed while it was still executing) must keep the quiet
// pipeline's latency — the producer is not slowed down by what is still in the
// server — and for those behind it the figure is how long the producer takes to
// stream the big transaction and catch up. Latencies are measured from each
// row's commit (when its INSERT returned to the writer).
func loadedRows(ctx context.Context, env *Env) []*Row {
	o := env.Opts
	rows := []*Row{
		{ID: "5e", Measure: fmt.Sprintf("latency under load: a %d rows/s writer's commit → applied (Redis materialiser), p99, rows ahead of a concurrent %d-row transaction in the binlog", o.LatencyRate, o.BigTxnRows), Unit: "ms", Goal: "≤ 10 ms"},
		{ID: "5f", Measure: "latency under load: commit → visible to a read_committed consumer, p99, rows ahead of the big transaction", Unit: "ms"},
		{ID: "5g", Measure: "latency under load: commit → applied, max, rows behind the big transaction (they wait for all of it)", Unit: "ms"},
		{ID: "5h", Measure: "the big transaction: its commit → its last change visible (the producer streaming it)", Unit: "ms"},
	}
	env.logf("latency under load: %d rows/s and one %d-row transaction", o.LatencyRate, o.BigTxnRows)
	res, err := measureLatency(ctx, env, true)
	if err != nil {
		for _, r := range rows {
			setStatus(r, err)
		}
		return rows
	}
	var ahead, aheadVis, behind []float64
	for _, s := range res.samples {
		if s.commitUs < res.bigStartUs {
			continue // before the load: row 5's business
		}
		if s.gtidSeq < res.bigSeq {
			ahead = append(ahead, s.appliedFromCommit())
			aheadVis = append(aheadVis, s.visibleFromCommit())
		} else {
			behind = append(behind, s.appliedFromCommit())
		}
	}
	slices.Sort(ahead)
	slices.Sort(aheadVis)
	slices.Sort(behind)
	if len(ahead) == 0 || len(behind) == 0 {
		err := fmt.Errorf("%d rows ahead of the big transaction and %d behind it: need both", len(ahead), len(behind))
		for _, r := range rows {
			setStatus(r, err)
		}
		return rows
	}
	rows[0].Value = spreadOf([]float64{pct(ahead, 0.99)})
	rows[0].Status = goalStatus(pct(ahead, 0.99) <= 10)
	rows[0].Note = fmt.Sprintf("%d rows ahead of the big transaction (committed while it executed, %.1f s): p50 %.2f ms, max %.1f ms; %s",
		len(ahead), float64(res.bigCommitUs-res.bigStartUs)/1e6, pct(ahead, 0.5), ahead[len(ahead)-1], res.note)
	rows[1].Value = spreadOf([]float64{pct(aheadVis, 0.99)})
	rows[2].Value = spreadOf([]float64{behind[len(behind)-1]})
	rows[2].Note = fmt.Sprintf("%d rows behind it in the window: p50 %.0f ms, p99 %.0f ms", len(behind), pct(behind, 0.5), pct(behind, 0.99))
	rows[3].Value = spreadOf([]float64{float64(res.bigVisibleUs-res.bigCommitUs) / 1000})
	rows[3].Note = fmt.Sprintf("%.0f rows/s", float64(o.BigTxnRows)/(float64(res.bigVisibleUs-res.bigCommitUs)/1e6))
	return rows
}

// latencySample is one row of the steady writer.
type latencySample struct {
	stampUs   int64 // the writer's clock right before the INSERT was sent
	commitUs  int64 // when the INSERT returned
	gtidSeq   uint64
	visibleUs int64 // arrival at the plain read_committed consumer
	appliedUs int64 // the Redis sink's Handle returned for its batch
}

func (s latencySample) applied() float64           { return float64(s.appliedUs-s.stampUs) / 1000 }
func (s latencySample) visible() float64           { return float64(s.visibleUs-s.stampUs) / 1000 }
func (s latencySample) appliedFromCommit() float64 { return float64(s.appliedUs-s.commitUs) / 1000 }
func (s latencySample) visibleFromCommit() float64 { return float64(s.visibleUs-s.commitUs) / 1000 }

// latencyResult is one latency run: the samples of the rows written after the
// warm-up.
type latencyResult struct {
	samples []latencySample
	note    string
	// The loaded run's big transaction: when its INSERT was sent and returned,
	// its GTID sequence number, and when the first writer row behind it became
	// visible (so all of it had).
	bigStartUs, bigCommitUs, bigVisibleUs int64
	bigSeq                                uint64
}

func measureLatency(ctx context.Context, env *Env, loaded bool) (*latencyResult, error) {
	o := env.Opts
	db := env.MariaDB.DB()
	ddl := []string{"DROP TABLE IF EXISTS bench.lat", latencyDDL}
	if loaded {
		ddl = append(ddl, "DROP TABLE IF EXISTS bench.bigload", strings.Replace(ordersDDL, "bench.orders", "bench.bigload", 1))
	}
	for _, q := range ddl {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	k, err := env.startKafka(ctx)
	if err != nil {
		return nil, err
	}
	defer k.stop()
	brokers := []string{k.Addr}
	source := "benchlat"
	if loaded {
		source = "benchlatload"
	}
	cfg := producerConfig(env, brokers, source, 5000+uint32(btoi(loaded)), "bench.lat")
	if loaded {
		cfg.Tables.Include = append(cfg.Tables.Include, "bench.bigload")
	}
	cfg.Source.Start = "current"
	topic := schemas.TopicName(cfg.Kafka.TopicPrefix, "bench", "lat")
	// Created up front so the consumer is assigned its partitions before the clock runs.
	if err := createTopic(ctx, brokers, topic, cfg.Kafka.Partitions, cfg.Kafka.CleanupPolicy); err != nil {
		return nil, err
	}
	p, err := producer.New(cfg, discardLog)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	prodDone := make(chan error, 1)
	go func() { prodDone <- p.Run(runCtx) }()

	// What each row went through, by id (ids count up from 1).
	var mu sync.Mutex
	var samples []latencySample
	sample := func(id int64) *latencySample { // with mu held
		for int64(len(samples)) <= id {
			samples = append(samples, latencySample{})
		}
		return &samples[id]
	}
	var seen, applies, bad int

	// The handler end: the Redis materialiser in a Runner, stamped when its Handle
	// returns.
	srv, err := env.Redis()
	if err != nil {
		return nil, err
	}
	scfg := redissink.DefaultConfig()
	scfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: srv.Addr}}
	scfg.Tables = []redissink.TableConfig{{Match: "bench.lat"}}
	sink, err := redissink.New(scfg, discardLog)
	if err != nil {
		return nil, err
	}
	defer sink.Close()
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
			if _, ok := r.Change.After["stamp_us"].(int64); !ok || id <= 0 {
				bad++
				continue
			}
			applies++
			if s := sample(id); s.appliedUs == 0 { // a redelivered batch keeps the first time
				s.appliedUs = now
			}
		}
		return nil
	})
	env.groups++
	reg := consumer.NewRegistry()
	if err := reg.Register(stamped, consumer.Tables("bench.lat"), consumer.Group(fmt.Sprintf("bench-lat-%d", env.groups))); err != nil {
		return nil, err
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka.Brokers = brokers
	ccfg.Heartbeats = false
	ccfg.MetadataMaxAge = time.Second
	runner, err := consumer.NewRunner(ccfg, reg, discardLog)
	if err != nil {
		return nil, err
	}
	runnerDone := make(chan error, 1)
	go func() { runnerDone <- runner.Run(runCtx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	// bigSeq is the big transaction's GTID sequence number once known; the
	// first row behind it to arrive says it is all visible.
	var bigSeq uint64
	var bigVisibleUs int64
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for runCtx.Err() == nil {
			fs := cl.PollFetches(runCtx)
			now := time.Now().UnixMicro()
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				id, stamp, seq, ok := latencyFields(r.Value)
				if !ok || stamp == 0 {
					bad++
					return
				}
				seen++
				s := sample(id)
				s.visibleUs, s.gtidSeq = now, seq
				if bigSeq > 0 && seq > bigSeq && bigVisibleUs == 0 {
					bigVisibleUs = now
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
		first := id + 1
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
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			return err
		}
		committed := time.Now().UnixMicro()
		mu.Lock()
		for i := first; i <= id; i++ {
			s := sample(i)
			s.stampUs, s.commitUs = stamp, committed
		}
		mu.Unlock()
		return nil
	}
	warmEnd := time.Now().Add(30 * time.Second)
	for {
		if err := insert(1); err != nil {
			return nil, err
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
			return nil, fmt.Errorf("producer stopped: %v", err)
		case err := <-runnerDone:
			return nil, fmt.Errorf("consumer runner stopped: %v", err)
		default:
		}
		if time.Now().After(warmEnd) {
			return nil, fmt.Errorf("no record reached the consumer and the handler within 30s (%d, %d)", n, a)
		}
	}
	time.Sleep(200 * time.Millisecond)
	warmupID := id

	res := &latencyResult{}
	// The loaded run: a second after the steady writing starts, the big
	// transaction goes in on a connection of its own; the writing stops a second
	// after the first row behind it became visible.
	bigErr := make(chan error, 1)
	startBig := func() {
		go func() {
			conn, err := db.Conn(ctx)
			if err != nil {
				bigErr <- err
				return
			}
			defer conn.Close()
			res.bigStartUs = time.Now().UnixMicro()
			if _, err := conn.ExecContext(ctx, bigInsert("bench.bigload", o.BigTxnRows)); err != nil {
				bigErr <- fmt.Errorf("big transaction: %w", err)
				return
			}
			res.bigCommitUs = time.Now().UnixMicro()
			var gtid string
			if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&gtid); err != nil {
				bigErr <- fmt.Errorf("the big transaction's GTID: %w", err)
				return
			}
			seq, err := gtidSeq(gtid)
			if err != nil {
				bigErr <- err
				return
			}
			mu.Lock()
			bigSeq = seq
			mu.Unlock()
			bigErr <- nil
		}()
	}

	// Steady rate: every 5ms a transaction of rate/200 rows (25 at 5,000 rows/s).
	const tickEvery = 5 * time.Millisecond
	perTick := max(1, o.LatencyRate*int(tickEvery)/int(time.Second))
	tick := time.NewTicker(tickEvery)
	began := time.Now()
	end := began.Add(o.LatencyDuration)
	if loaded {
		end = began.Add(15 * time.Minute) // until the big transaction is through
	}
	bigStarted, bigDone := false, false
	written := 0
	for time.Now().Before(end) {
		<-tick.C
		if err := insert(perTick); err != nil {
			tick.Stop()
			return nil, err
		}
		written += perTick
		if !loaded {
			continue
		}
		if !bigStarted && time.Since(began) >= time.Second {
			startBig()
			bigStarted = true
		}
		select {
		case err := <-bigErr:
			if err != nil {
				tick.Stop()
				return nil, err
			}
			bigDone = true
		default:
		}
		mu.Lock()
		through := bigDone && bigVisibleUs > 0
		mu.Unlock()
		if through && end.After(time.Now().Add(time.Second)) {
			end = time.Now().Add(time.Second)
		}
	}
	tick.Stop()
	elapsed := time.Since(began)
	// Drain: everything written must arrive.
	total := int(id - warmupID)
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := warmupID + 1; i <= id; i++ {
			if i >= int64(len(samples)) || samples[i].visibleUs == 0 || samples[i].appliedUs == 0 {
				return false
			}
		}
		return true
	}
	drainEnd := time.Now().Add(60 * time.Second)
	for !complete() && time.Now().Before(drainEnd) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-consDone
	<-prodDone
	<-runnerDone
	mu.Lock()
	defer mu.Unlock()
	for i := warmupID + 1; i <= id; i++ {
		s := samples[i]
		switch {
		case s.visibleUs == 0:
			return nil, fmt.Errorf("row %d of %d never reached the consumer", i-warmupID, total)
		case s.appliedUs == 0:
			return nil, fmt.Errorf("row %d of %d was never applied by the handler", i-warmupID, total)
		}
		res.samples = append(res.samples, s)
	}
	if bad > 0 {
		return nil, fmt.Errorf("%d records without id/stamp_us/gtid", bad)
	}
	res.bigSeq, res.bigVisibleUs = bigSeq, bigVisibleUs
	res.note = fmt.Sprintf("%d rows in %d transactions of %d at %.0f rows/s achieved; producer in-process, dev-kafka a separate process, Runner (default config) with the Redis materialiser and a plain read_committed franz-go consumer (fetch max wait 100ms) in-process; one run, the percentiles are over all rows after a warm-up",
		written, written/perTick, perTick, float64(written)/elapsed.Seconds())
	return res, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gtidSeq is the sequence number of a MariaDB GTID ("0-1-42").
func gtidSeq(gtid string) (uint64, error) {
	i := strings.LastIndexByte(gtid, '-')
	if i < 0 {
		return 0, fmt.Errorf("not a MariaDB GTID: %q", gtid)
	}
	n, err := strconv.ParseUint(gtid[i+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a MariaDB GTID: %q", gtid)
	}
	return n, nil
}

// latencyFields extracts after.id, after.stamp_us and the GTID's sequence number
// from a kanal JSON envelope.
func latencyFields(v []byte) (id, stamp int64, seq uint64, ok bool) {
	g := bytes.Index(v, []byte(`"gtid":"`))
	i := bytes.Index(v, []byte(`"after":{`))
	if i < 0 || g < 0 {
		return 0, 0, 0, false
	}
	gtid := v[g+8:]
	if e := bytes.IndexByte(gtid, '"'); e >= 0 {
		gtid = gtid[:e]
	}
	seq, err := gtidSeq(string(gtid))
	if err != nil {
		return 0, 0, 0, false
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
	return id, stamp, seq, ok1 && ok2
}
