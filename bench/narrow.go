package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/kanal-cdc/kanal/schemas"
)

// The narrow-row workload (issue 22): a table of earnings with six short columns,
// the shape of a ledger. Rows this small make the per-event and per-record costs
// (event parsing, the envelope, headers, the Kafka client) dominate, where the
// orders workload's TEXT column and wider rows spread them over more bytes.
const earningsDDL = `CREATE TABLE bench.earnings (
  id         BIGINT NOT NULL PRIMARY KEY,
  user_id    BIGINT NOT NULL,
  kind       VARCHAR(16) NOT NULL,
  amount     DECIMAL(18,2) NOT NULL,
  note       VARCHAR(64),
  created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

// Full size: 500 transactions of 1,000-row INSERTs, then 50,000 single-row
// INSERTs (550k rows), at Options.Rows of 400k and more; fewer scale both down
// (quick: a quarter, so that a run still lasts a fair fraction of a second).
const (
	narrowBulkTxns   = 500
	narrowSingleRows = 50_000
)

var earningKinds = []string{"sale", "refund", "bonus", "payout", "fee", "adjustment"}

// NarrowWorkload is the narrow-row workload as generated.
type NarrowWorkload struct {
	RowChanges int     `json:"row_changes"`
	BulkTxns   int     `json:"bulk_transactions"`
	SingleTxns int     `json:"single_row_transactions"`
	GenSeconds float64 `json:"generate_seconds"`
	// From and the end position delimit its binlog.
	FromFile string `json:"binlog_from_file"`
	FromPos  uint32 `json:"binlog_from_pos"`
	EndFile  string `json:"binlog_end_file"`
	EndPos   uint32 `json:"binlog_end_pos"`
	// MinimalJSONBytes is the size of the rows as the smallest JSON that names
	// every column: {"id":1,"user_id":2,…}, values as kanal encodes them
	// (DECIMAL and DATETIME as strings), no spaces. The reference of the
	// bytes-per-change rows.
	MinimalJSONBytes uint64 `json:"minimal_json_bytes"`
}

// narrowSizes scales the workload to Options.Rows.
func narrowSizes(o *Options) (bulk, single int) {
	scale := min(1, float64(o.Rows)/400_000)
	return max(1, int(narrowBulkTxns*scale)), max(10, int(narrowSingleRows*scale))
}

// generateNarrow writes the narrow workload through one connection and returns
// where it lies in the binlog.
func generateNarrow(ctx context.Context, db *sql.DB, o *Options) (*NarrowWorkload, error) {
	began := time.Now()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS bench", "DROP TABLE IF EXISTS bench.earnings", earningsDDL} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	nw := &NarrowWorkload{}
	if nw.FromFile, nw.FromPos, err = masterStatus(ctx, db, false); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e6172726f77))
	bulk, single := narrowSizes(o)
	const insert = "INSERT INTO bench.earnings (id,user_id,kind,amount,note,created_at) VALUES "
	var id int64
	var q, js []byte
	row := func(q []byte) []byte {
		id++
		user := 1 + rng.Int64N(2_000_000)
		kind := earningKinds[rng.IntN(len(earningKinds))]
		cents := rng.Int64N(100_000_000) - 10_000_000
		amount := decimalCents(cents)
		var note string
		hasNote := rng.IntN(10) != 0
		if hasNote {
			note = "order " + strconv.Itoa(rng.IntN(10_000_000))
		}
		created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id)*997*time.Millisecond + time.Duration(rng.IntN(1e6))*time.Microsecond)
		ts := created.Format("2006-01-02 15:04:05.000000")

		q = append(q, '(')
		q = strconv.AppendInt(q, id, 10)
		q = append(q, ',')
		q = strconv.AppendInt(q, user, 10)
		q = append(q, ",'"...)
		q = append(q, kind...)
		q = append(q, "',"...)
		q = append(q, amount...)
		q = append(q, ',')
		if hasNote {
			q = append(append(append(q, '\''), note...), '\'')
		} else {
			q = append(q, "NULL"...)
		}
		q = append(q, ",'"...)
		q = append(q, ts...)
		q = append(q, "')"...)

		js = append(js[:0], `{"id":`...)
		js = schemas.AppendValueJSON(js, schemas.IntValue(id))
		js = append(js, `,"user_id":`...)
		js = schemas.AppendValueJSON(js, schemas.IntValue(user))
		js = append(js, `,"kind":`...)
		js = schemas.AppendValueJSON(js, schemas.StringValue(kind))
		js = append(js, `,"amount":`...)
		js = schemas.AppendValueJSON(js, schemas.DecimalValue(amount))
		js = append(js, `,"note":`...)
		if hasNote {
			js = schemas.AppendValueJSON(js, schemas.StringValue(note))
		} else {
			js = schemas.AppendValueJSON(js, schemas.NullValue())
		}
		js = append(js, `,"created_at":`...)
		js = schemas.AppendValueJSON(js, schemas.StringValue(ts))
		js = append(js, '}')
		nw.MinimalJSONBytes += uint64(len(js))
		return q
	}
	for range bulk {
		q = append(q[:0], insert...)
		for i := range bulkSize {
			if i > 0 {
				q = append(q, ',')
			}
			q = row(q)
		}
		if _, err := conn.ExecContext(ctx, string(q)); err != nil {
			return nil, fmt.Errorf("narrow bulk insert: %w", err)
		}
		nw.BulkTxns++
		nw.RowChanges += bulkSize
	}
	q = q[:0]
	pending := 0
	for i := range single {
		q = append(row(append(q, insert...)), ';')
		pending++
		nw.SingleTxns++
		nw.RowChanges++
		if pending == singleBatch || i == single-1 {
			if _, err := conn.ExecContext(ctx, string(q)); err != nil {
				return nil, fmt.Errorf("narrow single-row inserts: %w", err)
			}
			q, pending = q[:0], 0
		}
	}
	if nw.EndFile, nw.EndPos, err = masterStatus(ctx, db, false); err != nil {
		return nil, err
	}
	nw.GenSeconds = time.Since(began).Seconds()
	return nw, nil
}

// decimalCents is cents as DECIMAL(18,2) text, as MySQL prints it.
func decimalCents(cents int64) string {
	neg := cents < 0
	if neg {
		cents = -cents
	}
	b := make([]byte, 0, 24)
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendInt(b, cents/100, 10)
	b = append(b, '.', byte('0'+cents%100/10), byte('0'+cents%10))
	return string(b)
}

// from is where the narrow workload starts, as a producer position.
func (nw *NarrowWorkload) from() *schemas.Position {
	return &schemas.Position{File: nw.FromFile, Pos: nw.FromPos}
}

func (nw *NarrowWorkload) mysqlFrom() mysql.Position {
	return mysql.Position{Name: nw.FromFile, Pos: nw.FromPos}
}

// narrowStage generates the narrow workload and measures it like rows 1–2: the
// limit and kanal's producer in rounds, then `kanal produce` as a child process
// for its peak RSS, then once per format the bytes each change takes.
func narrowStage(ctx context.Context, env *Env) []*Row {
	o := env.Opts
	bulk, single := narrowSizes(o)
	rows := []*Row{
		{ID: "7", Measure: fmt.Sprintf("narrow rows (bench.earnings, %d × 1,000-row + %d single-row INSERTs): limit, go-mysql BinlogSyncer decoding", bulk, single), Unit: "rows/s"},
		{ID: "7a", Measure: "narrow rows: kanal produce → dev-kafka (transactional, acks=all, JSON)", Unit: "rows/s", RatioOf: "limit (7)", Goal: "≥ 1.0 × limit"},
		{ID: "7b", Measure: "narrow rows: CPU per row of the kanal producer process", Unit: "µs/row", RatioOf: "decoder µs/row ÷ kanal µs/row", Goal: "≤ 1.5 µs/row"},
		{ID: "7c", Measure: "narrow rows: heap allocations per row in the kanal producer process", Unit: "allocs/row", Goal: "≤ 1 alloc/row"},
		{ID: "7d", Measure: "narrow rows: `kanal produce` peak RSS (child process, VmHWM)", Unit: "MiB", Goal: "≤ 80 MiB (max of runs)"},
	}
	env.logf("narrow workload: %d bulk transactions, %d single-row ones", bulk, single)
	nw, err := generateNarrow(ctx, env.MariaDB.DB(), o)
	if err != nil {
		for _, r := range rows {
			setStatus(r, err)
		}
		return rows
	}
	env.Narrow = nw
	want := uint64(nw.RowChanges)
	var limit, kanal, ratio, cpu, cpuRatio, allocs, rss, childRate []float64
	var limitRes, kanalRes []runResult
	var limitErr, kanalErr, rssErr error
	for round := range o.Runs {
		env.logf("narrow round %d/%d: decode limit", round+1, o.Runs)
		l, lerr := decodeRange(ctx, env, uint32(7000+round), nw.mysqlFrom(), nw.EndFile, nw.EndPos)
		if lerr == nil && l.rows != want {
			lerr = fmt.Errorf("decoded %d row changes, the workload made %d", l.rows, want)
		}
		if lerr != nil {
			limitErr = lerr
		} else {
			limit = append(limit, l.rate())
			limitRes = append(limitRes, l)
		}
		env.logf("narrow round %d/%d: kanal producer", round+1, o.Runs)
		k, kerr := runProducerSpec(ctx, env, producerRun{source: fmt.Sprintf("narrow%d", round), serverID: uint32(7100 + round),
			table: "bench.earnings", format: schemas.FormatJSON, want: want, from: nw.from()})
		if kerr != nil {
			kanalErr = kerr
		} else {
			kanal = append(kanal, k.rate())
			kanalRes = append(kanalRes, k)
			cpu = append(cpu, k.cpu.Self/float64(k.rows)*1e6)
			allocs = append(allocs, float64(k.allocs)/float64(k.rows))
			if lerr == nil {
				ratio = append(ratio, k.rate()/l.rate())
				cpuRatio = append(cpuRatio, (l.cpu.Self/float64(l.rows))/(k.cpu.Self/float64(k.rows)))
			}
		}
		env.logf("narrow round %d/%d: kanal produce as a child process (peak RSS)", round+1, o.Runs)
		mib, rate, rerr := narrowRSS(ctx, env, nw, round)
		if rerr != nil {
			rssErr = rerr
		} else {
			rss = append(rss, mib)
			childRate = append(childRate, rate)
		}
	}
	rows[0].Value = spreadOf(limit)
	rows[0].Note = cpuNote(limitRes, "decoder")
	setStatus(rows[0], limitErr)
	rows[1].Value, rows[1].Ratio = spreadOf(kanal), spreadOf(ratio)
	rows[1].Note = cpuNote(kanalRes, "kanal producer (in-process)")
	rows[2].Value, rows[2].Ratio = spreadOf(cpu), spreadOf(cpuRatio)
	rows[3].Value = spreadOf(allocs)
	for _, r := range rows[1:4] {
		setStatus(r, kanalErr)
	}
	if rows[1].Status == "" && rows[1].Ratio != nil {
		rows[1].Status = goalStatus(rows[1].Ratio.Median >= 1.0)
	}
	if rows[2].Status == "" && rows[2].Value != nil {
		rows[2].Status = goalStatus(rows[2].Value.Median <= 1.5)
	}
	if rows[3].Status == "" && rows[3].Value != nil {
		rows[3].Status = goalStatus(rows[3].Value.Median <= 1)
	}
	if len(limitRes) > 0 {
		l := limitRes[0]
		rows[3].Note = fmt.Sprintf("the decoder alone: %.1f allocations per row", float64(l.allocs)/float64(l.rows))
	}
	rows[4].Value = spreadOf(rss)
	setStatus(rows[4], rssErr)
	if rows[4].Status == "" && rows[4].Value != nil {
		rows[4].Status = goalStatus(rows[4].Value.Max <= 80)
		rows[4].Note = fmt.Sprintf("the child's rate, from its start to its committed position past the workload (polled every 20 ms): %s rows/s",
			fmtSpread(spreadOf(childRate), "rows/s"))
	}
	return append(rows, formatBytesRows(ctx, env, nw)...)
}

// narrowRSS runs `kanal produce` as a child process over the narrow workload,
// from its start until the committed position passes its end, and returns the
// child's peak RSS (VmHWM) and its rate.
func narrowRSS(ctx context.Context, env *Env, nw *NarrowWorkload, run int) (mib, rate float64, err error) {
	k, err := env.startKafka(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer k.stop()
	source := fmt.Sprintf("narrowrss%d", run)
	cfg := producerConfig(env, []string{k.Addr}, source, uint32(7200+run), "bench.earnings")
	if err := seedPosition(ctx, &cfg, *nw.from()); err != nil {
		return 0, 0, err
	}
	m := env.MariaDB
	yaml := fmt.Sprintf(`source:
  name: %s
  addr: %s
  user: %s
  password: %s
  server_id: %d
kafka:
  brokers: [%q]
  cleanup_policy: delete
tables:
  include: ["bench.earnings"]
log:
  level: warn
`, source, m.Addr(), m.User, m.Password, 7200+run, k.Addr)
	began := time.Now()
	child, err := startChildProducer(ctx, env, fmt.Sprintf("narrow-%d", run), yaml)
	if err != nil {
		return 0, 0, err
	}
	defer child.kill()
	if err := child.waitPosition(ctx, &cfg, nw.EndFile, nw.EndPos, 0); err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(began)
	kib, _, err := child.stop()
	if err != nil {
		return 0, 0, err
	}
	return float64(kib) / 1024, float64(nw.RowChanges) / elapsed.Seconds(), nil
}

// narrowFormats are the formats whose bytes per change rows 7e… report.
var narrowFormats = []string{schemas.FormatJSON, schemas.FormatCanalJSON, schemas.FormatAvro, schemas.FormatJSONCompact}

// narrowFormatGoals are the goals of those rows (issue 22 goal 4: the per-record
// repetition of the envelope made optional).
var narrowFormatGoals = map[string]float64{schemas.FormatJSONCompact: 1.5}

// formatBytesRows writes the narrow workload in each format and reports what a
// change takes: its value, its key and headers, and its share of the topic in
// the broker (compressed batches), with the producer's CPU per row. Each round
// writes every format once, one after the other, so that the CPU figures of
// the formats come from the same conditions.
func formatBytesRows(ctx context.Context, env *Env, nw *NarrowWorkload) []*Row {
	minimal := float64(nw.MinimalJSONBytes) / float64(nw.RowChanges)
	rows := make([]*Row, len(narrowFormats))
	type acc struct {
		sizes              recordSizes
		broker, rate, cpus []float64
		err                error
	}
	accs := make([]acc, len(narrowFormats))
	for i, f := range narrowFormats {
		rows[i] = &Row{ID: fmt.Sprintf("7%c", 'e'+i), Measure: fmt.Sprintf("narrow rows: record value bytes per change, %s", f),
			Unit: "bytes/change", RatioOf: fmt.Sprintf("minimal JSON of the row (%.0f bytes)", minimal)}
		if g, ok := narrowFormatGoals[f]; ok {
			rows[i].Goal = fmt.Sprintf("≤ %.1f × minimal JSON", g)
		}
	}
	for round := range env.Opts.Runs {
		for i, f := range narrowFormats {
			if accs[i].err != nil {
				continue
			}
			env.logf("narrow rows: bytes per change, %s (round %d/%d)", f, round+1, env.Opts.Runs)
			res, sizes, err := runFormatBytes(ctx, env, nw, f, i)
			if err != nil {
				accs[i].err = err
				continue
			}
			n := float64(sizes.records)
			a := &accs[i]
			a.sizes = sizes
			a.broker = append(a.broker, float64(res.brokerBytes)/n)
			a.rate = append(a.rate, res.rate())
			a.cpus = append(a.cpus, res.cpu.Self/float64(res.rows)*1e6)
		}
	}
	jsonCPU := spreadOf(accs[0].cpus)
	for i, f := range narrowFormats {
		row, a := rows[i], &accs[i]
		if a.err != nil {
			setStatus(row, a.err)
			continue
		}
		n := float64(a.sizes.records)
		row.Value = spreadOf([]float64{float64(a.sizes.value) / n})
		row.Ratio = spreadOf([]float64{float64(a.sizes.value) / n / minimal})
		row.Note = fmt.Sprintf("key %.0f and headers %.0f bytes per change; in the broker (snappy batches) %s per change; producer %s, CPU %s",
			float64(a.sizes.key)/n, float64(a.sizes.headers)/n, fmtSpread(spreadOf(a.broker), "bytes"),
			fmtSpread(spreadOf(a.rate), "rows/s"), fmtSpread(spreadOf(a.cpus), "µs/row"))
		if i > 0 && jsonCPU != nil {
			row.Note += fmt.Sprintf(" (json in the same rounds: %s)", fmtSpread(jsonCPU, "µs/row"))
		}
		if g, ok := narrowFormatGoals[f]; ok {
			row.Status = goalStatus(row.Ratio.Median <= g)
		}
	}
	return rows
}

// recordSizes adds up the parts of a topic's records.
type recordSizes struct {
	records, key, value, headers uint64
}

func runFormatBytes(ctx context.Context, env *Env, nw *NarrowWorkload, format string, i int) (runResult, recordSizes, error) {
	res, err := runProducerSpec(ctx, env, producerRun{source: "narrowfmt" + strconv.Itoa(i), serverID: uint32(7300 + i),
		table: "bench.earnings", format: format, want: uint64(nw.RowChanges), from: nw.from(), logDirs: true})
	if err != nil {
		return res, recordSizes{}, err
	}
	return res, res.sizes, nil
}
