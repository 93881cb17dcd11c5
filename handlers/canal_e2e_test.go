package handlers_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestCanalTopicsIntoEveryHandler keeps Canal as the producer and swaps only the
// consumers: topics written exactly the way Canal writes them (no key, no
// headers, several rows per message, `old` with only the changed columns, a
// primary-key change as one UPDATE, composite keys, DDL messages, partitions
// chosen by Canal's own primary-key hash) feed the built-in handlers that keep
// a copy (redis, sqlmirror, aggregate, memcached, elasticsearch with the in-test
// cluster) and stdout from one configuration file, and each target ends equal
// to the source tables; so do the rows a consumer of the rabbitmq handler's
// queue builds with the documented dedupe (by kanal.key and kanal.seq, here
// the versions derived from Canal's offsets).
//
// The Canal messages are built from the real binlog of a random workload: kanal's
// producer captures it into staging topics (full change envelopes with their
// binlog position), and the changes of each rows event are regrouped into the
// FlatMessages Canal would have sent for it.
func TestCanalTopicsIntoEveryHandler(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	rs := testenv.Redis(t)
	pg := testenv.Postgres(t)
	mc := testenv.Memcached(t)
	mq := testenv.RabbitMQ(t)
	es := estest.NewServer(false)
	defer es.Close()
	mqch := amqptest.Channel(t, mq.URL)
	amqptest.BindQueue(t, mqch, "cn", "cn-all", "#")

	m.Exec(t, "CREATE DATABASE cn")
	m.Exec(t, `CREATE TABLE cn.items (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
		amount DECIMAL(14,2) NOT NULL, note TEXT)`)
	m.Exec(t, `CREATE TABLE cn.pairs (a INT NOT NULL, b VARCHAR(20) NOT NULL, v INT NOT NULL, PRIMARY KEY (a, b))`)
	pcfg := cdctest.ProducerConfig(m, k, "canal-stage")
	pcfg.Kafka.TopicPrefix = "stage"
	pcfg.Kafka.Partitions = 1
	pcfg.Tables.Include = []string{"cn.*"}
	prod := cdctest.StartProducer(t, pcfg)

	w := &canalWorkload{db: m.DB(), rand: rand.New(rand.NewPCG(15, 4)), nextID: 1, items: map[int64]bool{}, pairs: map[[2]any]bool{}}
	for i := 0; i < 120; i++ {
		w.step(t)
	}
	ddlFile, ddlPos := cdctest.MasterPos(t, m.DB())
	const alter = "ALTER TABLE cn.items ADD COLUMN tag VARCHAR(8) NULL"
	m.Exec(t, alter)
	w.tagged = true
	for i := 0; i < 120; i++ {
		w.step(t)
	}
	prod.CaughtUp(t, m.DB())
	if err := prod.Stop(t); err != nil {
		t.Fatal(err)
	}

	// Regroup the captured changes into Canal's messages, in binlog order.
	staged := cdctest.ReadAll(t, k.Brokers, `^stage\.cn\.`, time.Minute)
	var changes []*schemas.Change
	for _, r := range staged {
		if r.Change != nil {
			changes = append(changes, r.Change)
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Seq < changes[j].Seq })
	cw := newCanalWriter(t, k, map[string]int32{"items": 1, "pairs": 3})
	ddlDone := false
	for i := 0; i < len(changes); {
		j := i + 1
		for j < len(changes) && sameRowsEvent(changes[i], changes[j]) {
			j++
		}
		c := changes[i]
		if !ddlDone && (c.Source.File > ddlFile || c.Source.File == ddlFile && c.Source.Pos > ddlPos) {
			cw.ddl(t, "items", "ALTER", alter)
			ddlDone = true
		}
		cw.rowsEvent(t, changes[i:j])
		i = j
	}
	if !ddlDone {
		t.Fatal("no change after the ALTER TABLE: the workload did not run")
	}
	cw.flush(t)
	t.Logf("%d changes from %d statements → %d Canal messages (%d with several rows, %d UPDATEs with a partial old, %d primary-key moves, %d DDL)",
		len(changes), w.statements, cw.messages, cw.multiRow, cw.partialOld, cw.keyMoves, cw.ddls)
	if cw.multiRow == 0 || cw.partialOld == 0 || cw.keyMoves == 0 {
		t.Fatal("the workload did not produce multi-row messages, partial olds and key moves")
	}

	// Every built-in handler, from one configuration file, as `kanal consume` runs them.
	pgdb, err := sql.Open("pgx", pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close()
	for _, q := range []string{
		`CREATE TABLE items (id bigint PRIMARY KEY, name varchar(64) NOT NULL, amount numeric(14,2) NOT NULL, note text,
			tag varchar(8), _kanal_version bigint NOT NULL)`,
		`CREATE TABLE pairs (a integer NOT NULL, b varchar(20) NOT NULL, v integer NOT NULL, _kanal_version bigint NOT NULL, PRIMARY KEY (a, b))`,
	} {
		if _, err := pgdb.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	file := fmt.Sprintf(`
kafka:
  brokers: [%s]
  topic_prefix: canal
consumers:
  commit_interval: 200ms
  metadata_max_age: 500ms
  heartbeats: false
  on_failure: dead-letter
  retry: {max_attempts: 3, initial_interval: 10ms, max_interval: 50ms}
  handlers:
    - handler: redis
      name: cn-redis
      tables: ["cn.*"]
      options:
        instances: {main: {addr: "%s"}}
        key_prefix: "kc:"
        tables: [{match: "cn.*", instances: [main]}]
    - handler: sqlmirror
      name: cn-mirror
      tables: ["cn.*"]
      options: {dialect: postgres, dsn: "%s"}
    - handler: aggregate
      name: cn-sums
      tables: ["cn.*"]
      options:
        target: {driver: postgres, dsn: "%s"}
        summaries:
          - {table: pair_totals, source: cn.pairs, group_by: [a], measures: ["count AS n", "sum(v) AS total"]}
          - {table: item_totals, source: cn.items, group_by: [name], measures: ["count AS n", "sum(amount) AS total"]}
    - handler: memcached
      name: cn-memcached
      tables: ["cn.*"]
      options: {servers: ["%s"], tables: [{match: "cn.*"}]}
    - handler: elasticsearch
      name: cn-es
      tables: ["cn.*"]
      options: {urls: ["%s"], tables: [{match: "cn.*"}]}
    - handler: rabbitmq
      name: cn-rabbitmq
      tables: ["cn.*"]
      options: {url: "%s", exchange: cn, tables: [{match: "cn.*"}]}
    - handler: stdout
      name: cn-stdout
      tables: ["cn.*"]
`, strings.Join(k.Brokers, ", "), rs.Addr, pg.DSN, pg.DSN, mc.Addr, es.URL, mq.URL)
	f, err := config.Parse([]byte(file), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	runner, err := handlers.NewRunner(f.Consumers, f.Kafka.Config, handlers.Builtin(), handlers.Env{Log: cdctest.Logger(t), Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("runner: %v", err)
		}
		runner.Close()
	}()

	source := func() map[string]map[string]string {
		rows := cdctest.SourceRows(t, m.DB(), "cn.items", canalItemsKey)
		for k, v := range cdctest.SourceRows(t, m.DB(), "cn.pairs", canalPairsKey) {
			rows[k] = v
		}
		return rows
	}
	rcfg := redissink.DefaultConfig()
	rcfg.Name, rcfg.KeyPrefix = "cn-redis", "kc:"
	rcfg.Instances = map[string]redissink.InstanceConfig{"main": {Addr: rs.Addr}}
	rcfg.Tables = []redissink.TableConfig{{Match: "cn.*", Instances: []string{"main"}}}
	reader, err := redissink.NewReader(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	waitSame(t, "sqlmirror (Postgres)", source, func() map[string]map[string]string {
		rows := pgRows(t, pgdb, `SELECT id::text AS id, name, amount::text AS amount, note, tag FROM items`, canalItemsKey)
		for k, v := range pgRows(t, pgdb, `SELECT a::text AS a, b, v::text AS v FROM pairs`, canalPairsKey) {
			rows[k] = v
		}
		return rows
	})
	waitSame(t, "redis", source, func() map[string]map[string]string { return redisRows(t, rdb, reader) })
	waitSame(t, "aggregate", func() map[string]map[string]string {
		rows := pgRows(t, m.DB(), `SELECT a, COUNT(*) AS n, SUM(v) AS total FROM cn.pairs GROUP BY a`, func(r map[string]string) string { return "a=" + r["a"] })
		for k, v := range pgRows(t, m.DB(), `SELECT name, COUNT(*) AS n, SUM(amount) AS total FROM cn.items GROUP BY name`,
			func(r map[string]string) string { return "name=" + r["name"] }) {
			rows[k] = v
		}
		return rows
	}, func() map[string]map[string]string {
		rows := pgRows(t, pgdb, `SELECT a::text AS a, n::text AS n, total::text AS total FROM pair_totals`, func(r map[string]string) string { return "a=" + r["a"] })
		for k, v := range pgRows(t, pgdb, `SELECT name, n::text AS n, total::text AS total FROM item_totals`,
			func(r map[string]string) string { return "name=" + r["name"] }) {
			rows[k] = v
		}
		return rows
	})
	mcfg := memcachedsink.DefaultConfig()
	mcfg.Name, mcfg.Servers = "cn-memcached", []string{mc.Addr}
	mcfg.Tables = []memcachedsink.TableConfig{{Match: "cn.*"}}
	mreader, err := memcachedsink.NewReader(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mreader.Close()
	everKey := map[string]bool{}
	for _, c := range changes {
		everKey[c.Key()] = true
		if c.Before != nil {
			everKey[string(schemas.AppendKey(nil, c.Source.DB, c.Source.Table, keyValues(c, c.Before)))] = true
		}
	}
	waitSame(t, "memcached", source, func() map[string]map[string]string { return memcachedRows(t, mreader, everKey) })
	cl := estest.Cluster{URL: es.URL}
	waitSame(t, "elasticsearch", source, func() map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, d := range cl.Search(t, "cn.*") {
			row, err := cdctest.RenderJSON(d.Source)
			if err != nil {
				t.Fatal(err)
			}
			out[d.Index+":"+d.ID] = canalColumns(row)
		}
		return out
	})
	model := amqptest.NewModel()
	waitSame(t, "rabbitmq (the queue's consumer)", source, func() map[string]map[string]string {
		model.Add(t, amqptest.Drain(t, mqch, "cn-all"))
		out := map[string]map[string]string{}
		for k, row := range model.Rows {
			out[k] = canalColumns(row)
		}
		return out
	})
	// stdout prints one line per change: none dropped, none twice.
	deadline := time.Now().Add(time.Minute)
	for out.lines() < len(changes) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := out.lines(); n != len(changes) {
		t.Errorf("stdout printed %d changes, want %d", n, len(changes))
	}
	// Nothing was dead-lettered.
	topics, err := kadm.NewClient(k.Client(t)).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "canal._dlq.") {
			recs := cdctest.ReadAll(t, k.Brokers, "^"+strings.ReplaceAll(name, ".", `\.`)+"$", time.Minute)
			if len(recs) > 0 {
				t.Errorf("%s holds %d dead letters", name, len(recs))
			}
		}
	}
}

func canalItemsKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "cn", "items", []any{r["id"]}))
}

func canalPairsKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "cn", "pairs", []any{r["a"], r["b"]}))
}

// canalWorkload drives statements that make multi-row rows events: INSERTs of
// several rows, UPDATEs and DELETEs of ranges, primary-key changes, composite keys
// with characters the record key escapes.
type canalWorkload struct {
	db         *sql.DB
	rand       *rand.Rand
	nextID     int64
	items      map[int64]bool
	pairs      map[[2]any]bool
	tagged     bool // the tag column exists
	statements int
}

var canalNames = []string{"alice", "bob", "crème", "世界", "comma,here", `back\slash`, "quote'd"}

func (w *canalWorkload) exec(t *testing.T, tx *sql.Tx, q string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	w.statements++
}

func (w *canalWorkload) someItems(n int) []any {
	ids := make([]int64, 0, len(w.items))
	for id := range w.items {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	w.rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var out []any
	for _, id := range ids[:min(n, len(ids))] {
		out = append(out, id)
	}
	return out
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

func (w *canalWorkload) step(t *testing.T) {
	t.Helper()
	tx, err := w.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for range 1 + w.rand.IntN(3) {
		w.statement(t, tx)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (w *canalWorkload) statement(t *testing.T, tx *sql.Tx) {
	switch r := w.rand.IntN(100); {
	case r < 25: // several items in one INSERT
		n := 1 + w.rand.IntN(4)
		var args []any
		for range n {
			id := w.nextID
			w.nextID++
			w.items[id] = true
			var note any = strings.Repeat("n", w.rand.IntN(40))
			if w.rand.IntN(4) == 0 {
				note = nil
			}
			args = append(args, id, canalNames[w.rand.IntN(len(canalNames))], fmt.Sprintf("%d.%02d", w.rand.IntN(10000)-5000, w.rand.IntN(100)), note)
		}
		w.exec(t, tx, "INSERT INTO cn.items (id, name, amount, note) VALUES "+strings.TrimSuffix(strings.Repeat("(?,?,?,?),", n), ","), args...)
	case r < 40: // one column of several rows: old holds only amount
		if ids := w.someItems(1 + w.rand.IntN(5)); len(ids) > 0 {
			w.exec(t, tx, "UPDATE cn.items SET amount = amount + 1.25 WHERE id IN ("+placeholders(len(ids))+")", ids...)
		}
	case r < 48: // several columns of one row
		if ids := w.someItems(1); len(ids) > 0 {
			if w.tagged {
				w.exec(t, tx, "UPDATE cn.items SET name = ?, note = NULL, tag = ? WHERE id = ?", canalNames[w.rand.IntN(len(canalNames))], fmt.Sprint("t", w.rand.IntN(9)), ids[0])
			} else {
				w.exec(t, tx, "UPDATE cn.items SET name = ?, note = 'x' WHERE id = ?", canalNames[w.rand.IntN(len(canalNames))], ids[0])
			}
		}
	case r < 56: // a primary-key change: Canal writes one UPDATE whose old has the old id
		if ids := w.someItems(1); len(ids) > 0 {
			id := ids[0].(int64)
			nid := w.nextID
			w.nextID++
			delete(w.items, id)
			w.items[nid] = true
			w.exec(t, tx, "UPDATE cn.items SET id = ? WHERE id = ?", nid, id)
		}
	case r < 64: // several rows in one DELETE
		if ids := w.someItems(1 + w.rand.IntN(3)); len(ids) > 0 {
			for _, id := range ids {
				delete(w.items, id.(int64))
			}
			w.exec(t, tx, "DELETE FROM cn.items WHERE id IN ("+placeholders(len(ids))+")", ids...)
		}
	case r < 80: // composite keys
		a := w.rand.IntN(6)
		var args []any
		for _, b := range canalNames {
			if k := [2]any{a, b}; !w.pairs[k] && w.rand.IntN(3) == 0 {
				w.pairs[k] = true
				args = append(args, a, b, w.rand.IntN(1000))
			}
		}
		if len(args) > 0 {
			w.exec(t, tx, "INSERT INTO cn.pairs VALUES "+strings.TrimSuffix(strings.Repeat("(?,?,?),", len(args)/3), ","), args...)
		}
	case r < 92: // every pair of one a: several rows, spread over partitions
		w.exec(t, tx, "UPDATE cn.pairs SET v = v + ? WHERE a = ?", 1+w.rand.IntN(5), w.rand.IntN(6))
	default:
		a, b := w.rand.IntN(6), canalNames[w.rand.IntN(len(canalNames))]
		delete(w.pairs, [2]any{a, b})
		w.exec(t, tx, "DELETE FROM cn.pairs WHERE a = ? AND b = ?", a, b)
	}
}

// sameRowsEvent: two captured changes come from one binlog rows event.
func sameRowsEvent(a, b *schemas.Change) bool {
	return a.Table() == b.Table() && a.Source.File == b.Source.File && a.Source.Pos == b.Source.Pos
}

// canalMessage is a FlatMessage with its rows kept as raw JSON objects (their key
// order is the column order), fields in Canal's (alphabetical) order.
type canalMessage struct {
	Data      []json.RawMessage `json:"data"`
	Database  string            `json:"database"`
	Es        int64             `json:"es"`
	ID        int64             `json:"id"`
	IsDdl     bool              `json:"isDdl"`
	MysqlType map[string]string `json:"mysqlType"`
	Old       []json.RawMessage `json:"old"`
	PkNames   []string          `json:"pkNames"`
	SQL       string            `json:"sql"`
	SQLType   map[string]int    `json:"sqlType"`
	Table     string            `json:"table"`
	Ts        int64             `json:"ts"`
	Type      string            `json:"type"`
}

// canalMySQLTypes are the column types as Canal reports them (with display widths).
var canalMySQLTypes = map[string]string{
	"id": "bigint(20)", "name": "varchar(64)", "amount": "decimal(14,2)", "note": "text", "tag": "varchar(8)",
	"a": "int(11)", "b": "varchar(20)", "v": "int(11)",
}

// canalWriter writes topics "canal.cn.<table>" as Canal does: a null key, no
// headers, the partition computed by Canal (MQMessageUtils.messagePartition with
// partitionHash on the primary key: the XOR of the Java hashCode of each key
// value's text, abs, modulo the partition count; DDL to partition 0).
type canalWriter struct {
	cl         *kgo.Client
	parts      map[string]int32
	id         int64
	pending    []*kgo.Record
	messages   int
	multiRow   int
	partialOld int
	keyMoves   int
	ddls       int
}

func newCanalWriter(t *testing.T, k *testenv.KafkaCluster, parts map[string]int32) *canalWriter {
	t.Helper()
	cl := k.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	for table, n := range parts {
		resp, err := adm.CreateTopic(context.Background(), n, 1, nil, "canal.cn."+table)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cw := &canalWriter{cl: cl, parts: parts}
	for table := range parts {
		cw.ddl(t, table, "CREATE", "CREATE TABLE cn."+table+" (…)")
	}
	return cw
}

func (cw *canalWriter) send(table string, partition int32, m *canalMessage) {
	value, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	cw.pending = append(cw.pending, &kgo.Record{Topic: "canal.cn." + table, Partition: partition, Value: value})
	cw.messages++
}

func (cw *canalWriter) ddl(t *testing.T, table, typ, stmt string) {
	cw.id++
	cw.send(table, 0, &canalMessage{Database: "cn", Es: time.Now().UnixMilli(), ID: cw.id, IsDdl: true, SQL: stmt, Table: table, Ts: time.Now().UnixMilli(), Type: typ})
	cw.ddls++
}

// rowsEvent writes the changes of one rows event as Canal's message(s): one
// message of the event's type with a row per changed row (a key change, which
// kanal captured as a delete and a create, is one UPDATE row), split by partition.
func (cw *canalWriter) rowsEvent(t *testing.T, changes []*schemas.Change) {
	t.Helper()
	type row struct {
		op            schemas.Op
		before, after map[string]any
	}
	var rows []row
	update := false
	hasD, hasC := false, false
	for _, c := range changes {
		update = update || c.Op == schemas.OpUpdate
		hasD = hasD || c.Op == schemas.OpDelete
		hasC = hasC || c.Op == schemas.OpCreate
	}
	update = update || hasD && hasC
	for i := 0; i < len(changes); i++ {
		c := changes[i]
		switch {
		case update && c.Op == schemas.OpDelete:
			if i+1 >= len(changes) || changes[i+1].Op != schemas.OpCreate {
				t.Fatalf("key change at seq %d: delete without its create", c.Seq)
			}
			rows = append(rows, row{schemas.OpUpdate, c.Before, changes[i+1].After})
			cw.keyMoves++
			i++
		default:
			rows = append(rows, row{c.Op, c.Before, c.After})
		}
	}
	c0 := changes[0]
	cw.id++
	var whole *canalMessage
	for _, r := range rows {
		env := schemas.Envelope{Op: r.op, Source: &c0.Source, Columns: c0.Columns, KeyFallback: c0.KeyFallback}
		env.Before, env.After = ordered(c0.Columns, r.before), ordered(c0.Columns, r.after)
		var one canalMessage
		if err := json.Unmarshal(env.AppendCanalJSON(nil, cw.id, time.Now().UnixMilli()), &one); err != nil {
			t.Fatal(err)
		}
		if whole == nil {
			whole = &one
			for name := range whole.MysqlType {
				whole.MysqlType[name] = canalMySQLTypes[name]
			}
			continue
		}
		whole.Data = append(whole.Data, one.Data...)
		whole.Old = append(whole.Old, one.Old...)
	}
	if whole.Type == "UPDATE" {
		if len(whole.Old) != len(whole.Data) {
			t.Fatalf("UPDATE with %d rows but %d olds", len(whole.Data), len(whole.Old))
		}
		var old map[string]any
		json.Unmarshal(whole.Old[0], &old)
		if len(old) < len(whole.MysqlType) {
			cw.partialOld++
		}
	}
	if len(whole.Data) > 1 {
		cw.multiRow++
	}
	n := cw.parts[c0.Source.Table]
	if n <= 1 {
		cw.send(c0.Source.Table, 0, whole)
		return
	}
	split := make([]*canalMessage, n)
	for i, data := range whole.Data {
		var vals map[string]*string
		if err := json.Unmarshal(data, &vals); err != nil {
			t.Fatal(err)
		}
		var h int32
		for _, pk := range whole.PkNames {
			s := ""
			if v := vals[pk]; v != nil {
				s = *v
			}
			h ^= javaHashCode(s)
		}
		p := javaAbs(javaAbs(h) % n)
		if split[p] == nil {
			cp := *whole
			cp.Data, cp.Old = nil, nil
			split[p] = &cp
		}
		split[p].Data = append(split[p].Data, data)
		if whole.Old != nil {
			split[p].Old = append(split[p].Old, whole.Old[i])
		}
	}
	for p, msg := range split {
		if msg != nil {
			cw.send(c0.Source.Table, int32(p), msg)
		}
	}
}

func (cw *canalWriter) flush(t *testing.T) {
	t.Helper()
	if err := cw.cl.ProduceSync(context.Background(), cw.pending...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cw.pending = nil
}

// ordered returns row's values in column order (nil for a nil row).
func ordered(cols []schemas.Column, row map[string]any) []any {
	if row == nil {
		return nil
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = row[c.Name]
	}
	return out
}

// javaHashCode is Java's String.hashCode: over UTF-16 code units, s[0]*31^(n-1) + …
func javaHashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// javaAbs is Math.abs(int): MinInt32 stays negative.
func javaAbs(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}

// waitSame waits until got() equals want() (both read again on every try).
func waitSame(t *testing.T, what string, want, got func() map[string]map[string]string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		w, g := want(), got()
		d := testdiff.Rows(w, g)
		if d == "" {
			if len(w) == 0 {
				t.Fatalf("%s: the source is empty: the test proves nothing", what)
			}
			t.Logf("%s: equals the source (%d rows)", what, len(w))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still differs from the source after 2 minutes (%d rows, source %d):\n%s", what, len(g), len(w), d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pgRows reads a query's rows as text ("NULL" for NULL), keyed by keyOf.
func pgRows(t *testing.T, db *sql.DB, query string, keyOf func(map[string]string) string) map[string]map[string]string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil && strings.Contains(err.Error(), "SQLSTATE 42P01") {
		return map[string]map[string]string{} // the aggregator creates its tables on first use
	}
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string]map[string]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = "NULL"
			if vals[i].Valid {
				row[c] = vals[i].String
			}
		}
		out[keyOf(row)] = row
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// redisRows reads every row the redis handler stored, with the Reader
// applications use; a column it did not store (tag, before the ALTER) is NULL.
func redisRows(t *testing.T, rdb *redis.Client, rd *redissink.Reader) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]map[string]string{}
	for _, table := range []string{"cn.items", "cn.pairs"} {
		keys, err := rdb.Keys(ctx, "kc:"+table+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			recordKey := strings.TrimPrefix(key, "kc:")
			row, ok, err := rd.Get(ctx, recordKey)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			vals := map[string]string{}
			for _, c := range []string{"id", "name", "amount", "note", "tag", "a", "b", "v"} {
				vals[c] = "NULL"
				if v, ok := row.Values[c]; ok {
					vals[c] = v
				}
			}
			out[recordKey] = vals
		}
	}
	return out
}

// keyValues returns the key column values of row.
func keyValues(c *schemas.Change, row map[string]any) []any {
	var vals []any
	for _, col := range c.Columns {
		if col.PK {
			vals = append(vals, row[col.Name])
		}
	}
	return vals
}

// canalColumns returns row with NULL for the columns it lacks (tag, in rows
// written before the ALTER).
func canalColumns(row map[string]string) map[string]string {
	out := map[string]string{}
	for _, c := range []string{"id", "name", "amount", "note", "tag", "a", "b", "v"} {
		out[c] = "NULL"
		if v, ok := row[c]; ok {
			out[c] = v
		}
	}
	return out
}

// memcachedRows reads the row of every key the source ever had (memcached cannot
// list its keys): a row the source no longer has must be gone.
func memcachedRows(t *testing.T, rd *memcachedsink.Reader, keys map[string]bool) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for key := range keys {
		row, ok, err := rd.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		vals := map[string]string{}
		for _, c := range []string{"id", "name", "amount", "note", "tag", "a", "b", "v"} {
			vals[c] = "NULL"
			if v, ok := row.Values[c]; ok && v != nil {
				vals[c] = fmt.Sprint(v)
			}
		}
		out[key] = vals
	}
	return out
}

// lockedBuffer collects the stdout handler's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Count(b.buf.Bytes(), []byte("\n"))
}
