package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/canal"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// runResult is one measured pass over the workload's binlog.
type runResult struct {
	rows  uint64
	bytes uint64
	dur   time.Duration
	cpu   CPU
	// allocs and allocBytes are heap allocations in this process during the run
	// (runtime.MemStats): deterministic where CPU time is not.
	allocs, allocBytes uint64
	// startup is the time until the first change was handed to Kafka (connect,
	// fencing, position load, topic creation): producer runs only.
	startup time.Duration
	// commits counts the producer's Kafka transactions: producer runs only.
	commits uint64
	// commitWait is the producer's time blocked in Kafka commits.
	commitWait time.Duration
	// recordBytes is the key and value bytes the producer committed.
	recordBytes uint64
	// brokerBytes is the size of the table topic in the broker after the run
	// (compressed batches, headers and framing included), when asked for;
	// sizes what its records hold.
	brokerBytes uint64
	sizes       recordSizes
}

func (r runResult) rate() float64 { return float64(r.rows) / r.dur.Seconds() }

var discardLog = slog.New(slog.DiscardHandler)

// benchCleanupPolicy is the cleanup.policy of every topic the benchmark writes.
const benchCleanupPolicy = "delete"

// naiveRounds caps the rounds of the naive baseline (row 3): it takes ~20× as
// long as the producer, and its figure only needs to be of the right order.
const naiveRounds = 3

// throughputStages runs stages 1–3 in rounds: limit, kanal, naive back to back on the
// same binlog, so each round's ratios compare runs taken under the same machine noise.
func throughputStages(ctx context.Context, env *Env) []*Row {
	wl := env.Workload
	var limit, kanal, naive, limitMB, ratio, speedup []float64
	var limitErr, kanalErr, naiveErr error
	var cpus [3][]runResult
	var kanalCPU, cpuRatio, allocs, allocBytes, startupMs, commits, commitShare []float64
	var avro, avroRatio, avroBytes, avroBytesRatio []float64
	var avroErr error
	for round := range env.Opts.Runs {
		env.logf("round %d/%d: decode limit", round+1, env.Opts.Runs)
		l, lerr := decodeLimit(ctx, env, uint32(2000+round))
		if lerr == nil && l.rows != uint64(wl.RowChanges) {
			lerr = fmt.Errorf("decoded %d row changes, the workload made %d", l.rows, wl.RowChanges)
		}
		if err := lerr; err != nil {
			limitErr = err
			env.logf("limit: %v", err)
		} else {
			wl.BinlogBytes = l.bytes
			cpus[0] = append(cpus[0], l)
			limit = append(limit, l.rate())
			limitMB = append(limitMB, float64(l.bytes)/1e6/l.dur.Seconds())
		}

		env.logf("round %d/%d: kanal producer", round+1, env.Opts.Runs)
		last := round == env.Opts.Runs-1
		k, kerr := runProducer(ctx, env, fmt.Sprintf("bench%d", round), uint32(3000+round), last, nil)
		if err := kerr; err != nil {
			kanalErr = err
			env.logf("kanal: %v", err)
		} else {
			kanal = append(kanal, k.rate())
			cpus[1] = append(cpus[1], k)
			kanalCPU = append(kanalCPU, k.cpu.Self/float64(k.rows)*1e6)
			startupMs = append(startupMs, float64(k.startup.Microseconds())/1000)
			commits = append(commits, float64(k.commits))
			commitShare = append(commitShare, k.commitWait.Seconds()/k.dur.Seconds())
			allocs = append(allocs, float64(k.allocs)/float64(k.rows))
			allocBytes = append(allocBytes, float64(k.allocBytes)/float64(k.rows))
			if lerr == nil {
				ratio = append(ratio, k.rate()/l.rate())
				cpuRatio = append(cpuRatio, (l.cpu.Self/float64(l.rows))/(k.cpu.Self/float64(k.rows)))
			}
		}

		env.logf("round %d/%d: kanal producer, avro", round+1, env.Opts.Runs)
		a, aerr := runProducerFormat(ctx, env, fmt.Sprintf("benchavro%d", round), uint32(6000+round), false, nil, schemas.FormatAvro)
		if aerr != nil {
			avroErr = aerr
			env.logf("avro: %v", aerr)
		} else {
			avro = append(avro, a.rate())
			avroBytes = append(avroBytes, float64(a.recordBytes)/float64(a.rows))
			if kerr == nil {
				avroRatio = append(avroRatio, a.rate()/k.rate())
				avroBytesRatio = append(avroBytesRatio, (float64(a.recordBytes)/float64(a.rows))/(float64(k.recordBytes)/float64(k.rows)))
			}
		}

		if !env.Opts.runs("naive") || round >= naiveRounds {
			continue
		}
		env.logf("round %d/%d: naive canal + ProduceSync", round+1, env.Opts.Runs)
		n, err := runNaive(ctx, env, uint32(4000+round))
		if err != nil {
			naiveErr = err
			env.logf("naive: %v", err)
		} else {
			naive = append(naive, n.rate())
			cpus[2] = append(cpus[2], n)
			if kerr == nil {
				speedup = append(speedup, k.rate()/n.rate())
			}
		}
	}
	limitRow := &Row{ID: "1", Measure: "limit: go-mysql BinlogSyncer decoding the binlog, no output (ParseTime on)", Unit: "rows/s",
		Value: spreadOf(limit), Note: cpuNote(cpus[0], "decoder")}
	limitMBRow := &Row{ID: "1b", Measure: "limit: binlog bytes decoded", Unit: "MB/s", Value: spreadOf(limitMB)}
	kanalRow := &Row{ID: "2", Measure: "kanal produce → dev-kafka (transactional, acks=all, JSON, 6 partitions)", Unit: "rows/s",
		Value: spreadOf(kanal), Ratio: spreadOf(ratio), RatioOf: "limit", Goal: "≥ 0.7 × limit",
		Note: cpuNote(cpus[1], "kanal producer (in-process)")}
	if st := spreadOf(startupMs); st != nil {
		// Part of the producer's time but not of the limit's: how much of the
		// ratio it explains on a short run.
		kanalRow.Note += fmt.Sprintf("; first change handed to Kafka after %.0f ms (connect, fence, position, topics; median)", st.Median)
	}
	if c := spreadOf(commits); c != nil {
		kanalRow.Note += fmt.Sprintf("; %.0f Kafka transactions of %.0f changes on average, waiting for their commits %.0f %% of the wall time (medians)",
			c.Median, float64(wl.RowChanges)/c.Median, 100*spreadOf(commitShare).Median)
	}
	cpuRow := &Row{ID: "2b", Measure: "CPU per row of the kanal producer process, and the decoder's relative to it (less sensitive to a busy machine)",
		Unit: "µs/row", Value: spreadOf(kanalCPU), Ratio: spreadOf(cpuRatio), RatioOf: "decoder µs/row ÷ kanal µs/row"}
	allocRow := &Row{ID: "2c", Measure: "heap allocations per row in the kanal producer process (deterministic)", Unit: "allocs/row",
		Value: spreadOf(allocs)}
	if b := spreadOf(allocBytes); b != nil {
		allocRow.Note = fmt.Sprintf("%.0f bytes allocated per row (median)", b.Median)
		if len(cpus[0]) > 0 {
			l := cpus[0][0]
			allocRow.Note += fmt.Sprintf("; the decoder alone: %.1f allocations, %.0f bytes per row",
				float64(l.allocs)/float64(l.rows), float64(l.allocBytes)/float64(l.rows))
		}
	}
	avroRow := &Row{ID: "2d", Measure: "kanal produce → dev-kafka with kafka.format avro (schemas in _schemas)", Unit: "rows/s",
		Value: spreadOf(avro), Ratio: spreadOf(avroRatio), RatioOf: "kanal JSON (2)", Goal: "≥ 0.9 × JSON"}
	avroBytesRow := &Row{ID: "2e", Measure: "record bytes per change (keys and values, uncompressed), avro", Unit: "bytes/change",
		Value: spreadOf(avroBytes), Ratio: spreadOf(avroBytesRatio), RatioOf: "JSON's bytes/change", Goal: "≤ 0.5 × JSON"}
	naiveRow := &Row{ID: "3", Measure: "naive: go-mysql canal + franz-go ProduceSync per rows event (encoding/json map)", Unit: "rows/s",
		Value: spreadOf(naive), Note: cpuNote(cpus[2], "canal loop")}
	speedupRow := &Row{ID: "3b", Measure: "kanal speed-up over naive", Unit: "×", Value: spreadOf(speedup)}
	for _, r := range []*Row{limitRow, limitMBRow} {
		setStatus(r, limitErr)
	}
	for _, r := range []*Row{kanalRow, cpuRow, allocRow} {
		setStatus(r, kanalErr)
	}
	if kanalRow.Ratio != nil && kanalRow.Status == "" {
		kanalRow.Status = goalStatus(kanalRow.Ratio.Median >= 0.7)
	}
	for _, r := range []*Row{avroRow, avroBytesRow} {
		setStatus(r, avroErr)
	}
	if avroRow.Ratio != nil && avroRow.Status == "" {
		avroRow.Status = goalStatus(avroRow.Ratio.Median >= 0.9)
	}
	if avroBytesRow.Ratio != nil && avroBytesRow.Status == "" {
		avroBytesRow.Status = goalStatus(avroBytesRow.Ratio.Median <= 0.5)
	}
	for _, r := range []*Row{naiveRow, speedupRow} {
		setStatus(r, naiveErr)
	}
	rows := []*Row{limitRow, limitMBRow, kanalRow, cpuRow, allocRow, avroRow, avroBytesRow}
	if env.Opts.runs("naive") {
		rows = append(rows, naiveRow, speedupRow)
	}
	return rows
}

func setStatus(r *Row, err error) {
	if err != nil {
		r.Status = "failed: " + err.Error()
	}
}

func goalStatus(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// syncerConfig is the configuration kanal's producer uses (producer/producer.go
// syncerConfig), so the limit decodes exactly what the producer decodes. Like the
// producer it sets no ReadTimeout (a read deadline per packet); the producer's
// silence watchdog on the connection (producer/silence.go) is left out here, so
// the limit pays nothing for it.
func syncerConfig(env *Env, serverID uint32) replication.BinlogSyncerConfig {
	m := env.MariaDB
	return replication.BinlogSyncerConfig{
		ServerID:         serverID,
		Flavor:           mysql.MariaDBFlavor,
		Host:             m.Host,
		Port:             uint16(m.Port),
		User:             m.User,
		Password:         m.Password,
		ParseTime:        true,
		HeartbeatPeriod:  10 * time.Second,
		DisableRetrySync: true,
		Logger:           discardLog,
	}
}

// limitCounter is the limit's SynchronousEventHandler: it runs in go-mysql's
// reading goroutine, so no event changes goroutines — the least any program
// can do with go-mysql's decoded events.
type limitCounter struct {
	res        runResult
	file       string
	endFile    string
	endPos     uint32
	done       chan struct{}
	doneClosed bool
}

func (c *limitCounter) HandleEvent(ev *replication.BinlogEvent) error {
	if c.doneClosed {
		return nil
	}
	c.res.bytes += uint64(ev.Header.EventSize)
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		c.file = string(e.NextLogName)
	case *replication.RowsEvent:
		switch ev.Header.EventType {
		case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.PARTIAL_UPDATE_ROWS_EVENT:
			c.res.rows += uint64(len(e.Rows) / 2)
		default:
			c.res.rows += uint64(len(e.Rows))
		}
	}
	if c.file == c.endFile && ev.Header.LogPos >= c.endPos {
		c.doneClosed = true
		close(c.done)
	}
	return nil
}

// decodeLimit streams the binlog from its first file to the workload's end with
// go-mysql and does nothing with the rows: the speed no binlog consumer built on
// go-mysql's decoding can exceed on this machine.
func decodeLimit(ctx context.Context, env *Env, serverID uint32) (runResult, error) {
	wl := env.Workload
	return decodeRange(ctx, env, serverID, mysql.Position{Name: wl.FirstBinlog, Pos: 4}, wl.BinlogFile, wl.BinlogPos)
}

// decodeRange is the limit on the binlog from `from` to endFile:endPos.
func decodeRange(ctx context.Context, env *Env, serverID uint32, from mysql.Position, endFile string, endPos uint32) (runResult, error) {
	meter := env.meterCPU(nil)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	began := time.Now()
	c := &limitCounter{file: from.Name, endFile: endFile, endPos: endPos, done: make(chan struct{})}
	cfg := syncerConfig(env, serverID)
	cfg.SynchronousEventHandler = c
	syncer := replication.NewBinlogSyncer(cfg)
	defer syncer.Close()
	st, err := syncer.StartSync(from)
	if err != nil {
		return runResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	go func() { // the streamer carries only a stream error
		if _, err := st.GetEvent(ctx); err != nil {
			cancel()
		}
	}()
	select {
	case <-c.done:
	case <-ctx.Done():
		return runResult{}, fmt.Errorf("decoding stopped before the workload's end: %w", ctx.Err())
	}
	res := c.res // written before done was closed
	res.dur = time.Since(began)
	res.cpu = meter.stop()
	runtime.ReadMemStats(&ms1)
	res.allocs, res.allocBytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	return res, nil
}

// producerConfig is the default configuration with the bench's servers.
func producerConfig(env *Env, brokers []string, source string, serverID uint32, table string) producer.Config {
	return producerConfigFormat(env, brokers, source, serverID, table, schemas.FormatJSON)
}

// producerConfigFormat is producerConfig writing records in format.
func producerConfigFormat(env *Env, brokers []string, source string, serverID uint32, table, format string) producer.Config {
	cfg := producer.DefaultConfig()
	cfg.Source.Name = source
	cfg.Source.Addr = env.MariaDB.Addr()
	cfg.Source.User = env.MariaDB.User
	cfg.Source.Password = env.MariaDB.Password
	cfg.Source.ServerID = serverID
	cfg.Source.Start = "earliest"
	cfg.Kafka.Brokers = brokers
	cfg.Tables.Include = []string{table}
	// kfake compacts by re-reading every batch of every compacted partition each
	// log.cleaner.backoff.ms (1s in dev-kafka), inside its single request loop: with
	// compacted topics the benchmark would measure that, not kanal. Kafka's cleaner
	// runs in background threads on dirty segments only.
	cfg.Kafka.CleanupPolicy = benchCleanupPolicy
	cfg.Kafka.Format = format
	return cfg
}

// runProducer runs kanal's producer in this process against a fresh dev-kafka from
// the first binlog until every change of the workload is committed. The time counts
// from Run (connect, fence, topic creation included) to the commit of the last change.
// keep leaves the Kafka running for the apply stages.
func runProducer(ctx context.Context, env *Env, source string, serverID uint32, keep bool, beforeRun func()) (runResult, error) {
	return runProducerFormat(ctx, env, source, serverID, keep, beforeRun, schemas.FormatJSON)
}

// runProducerFormat is runProducer writing records in format.
func runProducerFormat(ctx context.Context, env *Env, source string, serverID uint32, keep bool, beforeRun func(), format string) (runResult, error) {
	return runProducerSpec(ctx, env, producerRun{source: source, serverID: serverID, keep: keep, beforeRun: beforeRun, format: format,
		table: "bench.orders", want: uint64(env.Workload.RowChanges)})
}

// producerRun is one in-process producer pass.
type producerRun struct {
	source   string
	serverID uint32
	table    string // the one table captured
	format   string
	// want is the number of changes that ends the run.
	want uint64
	// from, when set, is stored as the source's position before the producer
	// starts: it resumes there instead of at the first binlog.
	from *schemas.Position
	// keep leaves the Kafka running for the apply stages (env.Brokers, env.Topic).
	keep      bool
	beforeRun func()
	// logDirs: after the run, read the table topic's size from the broker
	// (runResult.brokerBytes) and its records back (runResult.sizes).
	logDirs bool
}

// runProducerSpec runs one producer pass as r describes.
func runProducerSpec(ctx context.Context, env *Env, r producerRun) (runResult, error) {
	k, err := env.startKafka(ctx)
	if err != nil {
		return runResult{}, err
	}
	if !r.keep {
		defer k.stop()
	}
	cfg := producerConfigFormat(env, []string{k.Addr}, r.source, r.serverID, r.table, r.format)
	if r.from != nil {
		if err := seedPosition(ctx, &cfg, *r.from); err != nil {
			return runResult{}, err
		}
	}
	p, err := producer.New(cfg, discardLog)
	if err != nil {
		return runResult{}, err
	}
	want := r.want
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	if r.beforeRun != nil {
		r.beforeRun()
	}
	meter := env.meterCPU(k)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	began := time.Now()
	go func() { done <- p.Run(runCtx) }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Minute)
	var startup time.Duration
	for p.Stats().Committed.Load() < want {
		if startup == 0 && p.Stats().Changes.Load() > 0 {
			startup = time.Since(began)
		}
		select {
		case err := <-done:
			return runResult{}, fmt.Errorf("producer stopped after %d of %d changes: %v", p.Stats().Committed.Load(), want, err)
		case <-deadline:
			return runResult{}, fmt.Errorf("producer committed %d of %d changes in 15 minutes", p.Stats().Committed.Load(), want)
		case <-tick.C:
		}
	}
	res := runResult{rows: p.Stats().Committed.Load(), dur: time.Since(began), cpu: meter.stop(), startup: startup,
		commits: p.Stats().Commits.Load(), commitWait: time.Duration(p.Stats().CommitNanos.Load()), recordBytes: p.Stats().CommittedBytes.Load()}
	runtime.ReadMemStats(&ms1)
	res.allocs, res.allocBytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	cancel()
	if err := <-done; err != nil {
		return res, err
	}
	db, table, _ := strings.Cut(r.table, ".")
	topic := schemas.TopicName(cfg.Kafka.TopicPrefix, db, table)
	if r.logDirs {
		if res.brokerBytes, err = topicBytes(ctx, []string{k.Addr}, topic); err != nil {
			return res, err
		}
		if res.sizes, err = readSizes(ctx, []string{k.Addr}, topic, want); err != nil {
			return res, err
		}
	}
	if r.keep {
		env.Brokers = []string{k.Addr}
		env.Topic = topic
	}
	return res, nil
}

// naiveHandler is what a user writes around go-mysql's canal: turn each rows event
// into JSON with encoding/json and produce it synchronously, record by record of the
// event, before taking the next event.
type naiveHandler struct {
	canal.DummyEventHandler
	ctx   context.Context
	cl    *kgo.Client
	topic string
	rows  atomic.Uint64
	want  uint64
	done  chan struct{}
}

func (h *naiveHandler) OnRow(e *canal.RowsEvent) error {
	rows := e.Rows
	step := 1
	if e.Action == canal.UpdateAction {
		step = 2 // before, after
	}
	recs := make([]*kgo.Record, 0, len(rows)/step)
	for i := step - 1; i < len(rows); i += step {
		row := rows[i]
		data := make(map[string]any, len(e.Table.Columns))
		for c, col := range e.Table.Columns {
			data[col.Name] = row[c]
		}
		val, err := json.Marshal(map[string]any{
			"database": e.Table.Schema, "table": e.Table.Name, "type": e.Action,
			"ts": e.Header.Timestamp, "data": data,
		})
		if err != nil {
			return err
		}
		pk, _ := e.Table.GetPKValues(row)
		key := e.Table.Schema + "." + e.Table.Name + ":" + fmt.Sprint(pk...)
		recs = append(recs, &kgo.Record{Topic: h.topic, Key: []byte(key), Value: val})
	}
	if err := h.cl.ProduceSync(h.ctx, recs...).FirstErr(); err != nil {
		return err
	}
	if h.rows.Add(uint64(len(recs))) >= h.want && h.done != nil {
		close(h.done)
		h.done = nil
	}
	return nil
}

// runNaive measures the hand-written baseline: non-transactional, idempotent
// producer (franz-go's default acks=all), one synchronous ProduceSync per rows event.
func runNaive(ctx context.Context, env *Env, serverID uint32) (runResult, error) {
	k, err := env.startKafka(ctx)
	if err != nil {
		return runResult{}, err
	}
	defer k.stop()
	topic := "naive.bench.orders"
	if err := createTopic(ctx, []string{k.Addr}, topic, 6, benchCleanupPolicy); err != nil {
		return runResult{}, err
	}
	meter := env.meterCPU(k)
	began := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addr), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return runResult{}, err
	}
	defer cl.Close()
	m := env.MariaDB
	cfg := canal.NewDefaultConfig()
	cfg.Addr = m.Addr()
	cfg.User = m.User
	cfg.Password = m.Password
	cfg.Flavor = mysql.MariaDBFlavor
	cfg.ServerID = serverID
	cfg.ParseTime = true
	cfg.Dump.ExecutionPath = "" // no mysqldump: binlog only
	cfg.IncludeTableRegex = []string{`bench\.orders`}
	cfg.Logger = discardLog
	cfg.DisableRetrySync = true
	c, err := canal.NewCanal(cfg)
	if err != nil {
		return runResult{}, err
	}
	defer c.Close()
	done := make(chan struct{})
	h := &naiveHandler{ctx: ctx, cl: cl, topic: topic, want: uint64(env.Workload.RowChanges), done: done}
	c.SetEventHandler(h)
	runErr := make(chan error, 1)
	go func() { runErr <- c.RunFrom(mysql.Position{Name: env.Workload.FirstBinlog, Pos: 4}) }()
	select {
	case <-done:
	case err := <-runErr:
		return runResult{}, fmt.Errorf("canal stopped after %d rows: %v", h.rows.Load(), err)
	case <-time.After(30 * time.Minute):
		return runResult{}, fmt.Errorf("naive baseline: %d rows after 30 minutes", h.rows.Load())
	case <-ctx.Done():
		return runResult{}, ctx.Err()
	}
	return runResult{rows: h.rows.Load(), dur: time.Since(began), cpu: meter.stop()}, nil
}

// cpuNote summarises where the CPU went in a stage's runs (medians).
func cpuNote(rs []runResult, self string) string {
	if len(rs) == 0 {
		return ""
	}
	var wall, me, db, kafka []float64
	for _, r := range rs {
		wall = append(wall, r.dur.Seconds())
		me = append(me, r.cpu.Self)
		db = append(db, r.cpu.MariaDB)
		kafka = append(kafka, r.cpu.Kafka)
	}
	med := func(v []float64) float64 { return spreadOf(v).Median }
	n := fmt.Sprintf("median wall %.2fs; CPU: %s %.2fs, mariadbd %.2fs", med(wall), self, med(me), med(db))
	if med(kafka) > 0 {
		n += fmt.Sprintf(", dev-kafka %.2fs", med(kafka))
	}
	return n + fmt.Sprintf(" (of %.2f core-seconds available)", med(wall)*float64(runtime.NumCPU()))
}
