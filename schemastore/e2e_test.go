package schemastore_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// End to end through the Avro formats: a real MariaDB, the producer, kfake, the
// consumer Runner and real Redis and Postgres sinks.

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// collector records every change a Runner hands it.
type collector struct {
	mu   sync.Mutex
	seqs map[uint64]schemas.Op
	recs []consumer.Record
}

func (c *collector) Name() string { return "collector" }

func (c *collector) Handle(_ context.Context, b consumer.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range b.Records {
		if !r.Tombstone {
			c.seqs[r.Seq] = r.Op
			c.recs = append(c.recs, r)
		}
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

// pipeline is one format's producer and consumers over a shared source.
type pipeline struct {
	format string
	prefix string
	kafka  kafkaconn.Config
	prod   *cdctest.Producer
	coll   *collector
	redis  redissink.Config
	agg    aggregators.Config
}

func startPipeline(t *testing.T, m *testenv.MariaDBServer, k *testenv.KafkaCluster, rs *testenv.RedisServer, redisDB int,
	pg *testenv.PostgresServer, reg *testenv.RegistryServer, format string, table string) *pipeline {
	t.Helper()
	p := &pipeline{format: format, prefix: "k" + strings.ReplaceAll(format, "-", ""), coll: &collector{seqs: map[uint64]schemas.Op{}}}
	cfg := cdctest.ProducerConfig(m, k, p.prefix)
	cfg.Kafka.TopicPrefix = p.prefix
	cfg.Kafka.Format = format
	cfg.Kafka.CleanupPolicy = "delete" // every change stays, so the collector can count them
	cfg.Tables.Include = []string{table}
	cfg.Source.ServerID = 1001 + uint32(redisDB) // each producer is a replica of its own
	if format == schemas.FormatAvroConfluent {
		cfg.Kafka.SchemaRegistry = &kafkaconn.SchemaRegistryConfig{URL: reg.URL, User: reg.User, Password: reg.Password}
	}
	p.kafka = cfg.Kafka.Config
	p.prod = cdctest.StartProducer(t, cfg)

	p.redis = redissink.DefaultConfig()
	p.redis.Name = "redis-" + p.prefix
	p.redis.Instances = map[string]redissink.InstanceConfig{"main": {Addr: rs.Addr, DB: redisDB}}
	p.redis.Tables = []redissink.TableConfig{{Match: table}}
	rh, err := redissink.New(p.redis, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rh.Close() })

	p.agg = aggregators.DefaultConfig()
	p.agg.Name = "agg-" + p.prefix
	p.agg.Target.Driver, p.agg.Target.DSN = aggregators.DriverPostgres, pg.DSN
	p.agg.Summaries = []aggregators.SummaryConfig{{Table: "by_user_" + p.prefix, Source: table,
		GroupBy: []string{"user_id"}, Measures: []string{"count", "sum(amount) AS total"}}}
	agg, err := aggregators.New(p.agg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agg.Close)

	creg := consumer.NewRegistry()
	for _, err := range []error{
		creg.Register(rh, consumer.Tables(table)),
		agg.RegisterWith(creg, consumer.OnFailure(consumer.DeadLetter)),
		creg.Register(p.coll, consumer.Tables(table)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	runConsumers(t, k, p.prefix, p.kafka, creg)
	return p
}

func runConsumers(t *testing.T, k *testenv.KafkaCluster, prefix string, kc kafkaconn.Config, reg *consumer.Registry) {
	t.Helper()
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka = kc
	ccfg.Kafka.TopicPrefix = prefix
	ccfg.CommitInterval = 200 * time.Millisecond
	ccfg.SessionTimeout = 2 * time.Second
	ccfg.MetadataMaxAge = 300 * time.Millisecond
	ccfg.Heartbeats = false
	ccfg.RevokeTimeout = 5 * time.Second
	ccfg.Retry = consumer.RetryConfig{MaxAttempts: 3, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	r, err := consumer.NewRunner(ccfg, reg, logger(t), consumer.WithKafkaOptions(kgo.HeartbeatInterval(300*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop")
		}
	})
}

// sourceRows renders db.table as key → column → text ("NULL" for NULL).
func sourceRows(t *testing.T, db *sql.DB, table string) map[string]map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatal(err)
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
		out[table+":"+row["id"]] = row
	}
	return out
}

// redisRows reads every row key of the table from Redis.
func redisRows(t *testing.T, cfg redissink.Config, table string, keys []string) map[string]map[string]string {
	t.Helper()
	rd, err := redissink.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	out := map[string]map[string]string{}
	for _, k := range keys {
		row, ok, err := rd.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		m := map[string]string{}
		for c, v := range row.Values {
			m[c] = v
		}
		for c := range row.Null {
			m[c] = "NULL"
		}
		out[k] = m
	}
	return out
}

func summary(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.Query("SELECT user_id::text, row_count::text, total::text FROM " + table + " ORDER BY user_id")
	if err != nil {
		return "error: " + err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var u, n, s string
		if err := rows.Scan(&u, &n, &s); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s ", u, n, s)
	}
	return b.String()
}

func sourceSummary(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.Query("SELECT user_id, COUNT(*), SUM(amount) FROM " + table + " GROUP BY user_id ORDER BY user_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var u, n, s string
		if err := rows.Scan(&u, &n, &s); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s ", u, n, s)
	}
	return b.String()
}

// eventually polls cond until it returns "" or the deadline passes, then fails
// with its last answer.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func diffRows(want, got map[string]map[string]string) string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			out = append(out, "missing "+k)
			continue
		}
		if fmt.Sprint(w) != fmt.Sprint(g) {
			out = append(out, fmt.Sprintf("%s: source %v, sink %v", k, w, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("… %d more", len(out)-5))
	}
	return strings.Join(out, "; ")
}

// TestAvroSchemaEvolution: ADD, MODIFY, RENAME and DROP COLUMN while producing,
// in avro, avro-confluent (registry compatibility BACKWARD, its default) and
// json-compact (a descriptor per table version in _schemas): consumers reading
// from the earliest offset decode every record with its own schema version or
// descriptor, and Redis and the aggregate summary end equal to the source.
func TestAvroSchemaEvolution(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	rs := testenv.Redis(t)
	pg := testenv.Postgres(t)
	reg := testenv.SchemaRegistry(t)
	pgdb, err := sql.Open("pgx", pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close()
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, `CREATE TABLE shop.items (id INT PRIMARY KEY, user_id INT NOT NULL, amount DECIMAL(10,2) NOT NULL, note VARCHAR(20) NULL)`)
	src := m.DB()
	for i := 1; i <= 30; i++ {
		m.Exec(t, "INSERT INTO shop.items VALUES (?, ?, ?, ?)", i, i%4, fmt.Sprintf("%d.%02d", i, i), fmt.Sprint("n", i))
	}
	var pipes []*pipeline
	for i, format := range []string{schemas.FormatAvro, schemas.FormatAvroConfluent, schemas.FormatJSONCompact} {
		pipes = append(pipes, startPipeline(t, m, k, rs, i, pg, reg, format, "shop.items"))
	}
	steps := []string{
		"ALTER TABLE shop.items ADD COLUMN extra INT NULL",
		"UPDATE shop.items SET extra = id * 10 WHERE id % 3 = 0",
		"INSERT INTO shop.items VALUES (31, 1, 5.55, 'x', 7)",
		"ALTER TABLE shop.items MODIFY COLUMN extra BIGINT NULL",
		"UPDATE shop.items SET extra = 9000000000 WHERE id = 31",
		"ALTER TABLE shop.items RENAME COLUMN note TO memo",
		"UPDATE shop.items SET memo = CONCAT('m', id), amount = amount + 1 WHERE id % 2 = 0",
		"DELETE FROM shop.items WHERE id IN (5, 7)",
		"ALTER TABLE shop.items DROP COLUMN extra",
		"INSERT INTO shop.items VALUES (32, 2, 1.01, NULL)",
		"UPDATE shop.items SET user_id = 3 WHERE id = 8",
		// Every row changes once more, so its last change carries the final columns.
		"UPDATE shop.items SET amount = amount + 0.01",
	}
	for _, q := range steps {
		m.Exec(t, q)
	}
	want := sourceRows(t, src, "shop.items")
	var keys []string
	for i := 1; i <= 32; i++ {
		keys = append(keys, fmt.Sprintf("shop.items:%d", i))
	}
	for _, p := range pipes {
		t.Run(p.format, func(t *testing.T) {
			p.prod.CaughtUp(t, src)
			eventually(t, "redis equals the source", func() string { return diffRows(want, redisRows(t, p.redis, "shop.items", keys)) })
			wantSum := sourceSummary(t, src, "shop.items")
			eventually(t, "summary equals the source", func() string {
				if got := summary(t, pgdb, "by_user_"+p.prefix); got != wantSum {
					return fmt.Sprintf("summary %q, source %q", got, wantSum)
				}
				return ""
			})
			changes := int(p.prod.P.Stats().Changes.Load())
			eventually(t, "every change decoded", func() string {
				if n := p.coll.count(); n != changes {
					return fmt.Sprintf("collector saw %d changes, the producer wrote %d", n, changes)
				}
				return ""
			})
			// Five table versions: the first, ADD, MODIFY, RENAME, DROP.
			versions := map[string]bool{}
			for _, r := range p.coll.recs {
				var names []string
				for _, c := range r.Change.Columns {
					names = append(names, c.Name+" "+c.Type)
				}
				versions[strings.Join(names, ",")] = true
			}
			if len(versions) != 5 {
				t.Errorf("%d column lists seen, want 5: %v", len(versions), versions)
			}
			if p.format == schemas.FormatAvroConfluent {
				if ids := reg.Subjects()[p.prefix+".shop.items-value"]; len(ids) != 5 {
					t.Errorf("subject versions %v, want 5", ids)
				}
			}
		})
	}
}

// safeBuffer collects log output from several goroutines.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSchemaChangesTruncateAndSecrets: DDL of captured tables reaches
// _schema_changes (redacted, in order, with the columns kanal knows); account
// statements with passwords leave no trace in any log line, error or record;
// a TRUNCATE empties the Redis copy, the SQL mirror and the Elasticsearch index
// of the rows before it (rows after it stay) and is dead-lettered by the
// aggregate and by memcached (which cannot list the table's keys) with their
// reasons, the records around it applied.
func TestSchemaChangesTruncateAndSecrets(t *testing.T) {
	const secret = "S3cr3t-pw-4711"
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	rs := testenv.Redis(t)
	pg := testenv.Postgres(t)
	mc := testenv.Memcached(t)
	es := estest.NewServer(false)
	defer es.Close()
	pgdb, err := sql.Open("pgx", pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pgdb.Close()
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, "CREATE DATABASE other")
	m.Exec(t, "CREATE TABLE shop.items (id INT PRIMARY KEY, user_id INT NOT NULL, amount DECIMAL(10,2) NOT NULL)")
	m.Exec(t, "CREATE TABLE other.t (id INT PRIMARY KEY)")
	for i := 1; i <= 20; i++ {
		m.Exec(t, "INSERT INTO shop.items VALUES (?, ?, ?)", i, i%3, fmt.Sprint(i, ".50"))
	}
	for _, q := range []string{
		"CREATE USER 'app'@'%' IDENTIFIED BY '" + secret + "'",
		"ALTER USER 'app'@'%' IDENTIFIED BY '" + secret + "x'",
		"GRANT SELECT ON shop.* TO 'app'@'%' IDENTIFIED BY '" + secret + "y'",
		"SET PASSWORD FOR 'app'@'%' = PASSWORD('" + secret + "z')",
		"CREATE USER /* tricky */ `app2`@`localhost` IDENTIFIED VIA mysql_native_password USING PASSWORD('" + secret + "')",
		"ALTER TABLE other.t ADD COLUMN c INT",
	} {
		m.Exec(t, q)
	}
	if _, err := pgdb.Exec("CREATE TABLE mirror_kavro_items (id INT PRIMARY KEY, user_id INT, amount NUMERIC(10,2), note VARCHAR(10), _kanal_version BIGINT)"); err != nil {
		t.Fatal(err)
	}

	// The producer's log goes to a buffer that is searched for the password.
	var logs safeBuffer
	cfg := cdctest.ProducerConfig(m, k, "kavro")
	cfg.Kafka.TopicPrefix, cfg.Kafka.Format, cfg.Tables.Include = "kavro", schemas.FormatAvro, []string{"shop.*"}
	cfg.Kafka.Partitions = 3
	p, err := producer.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	perr := make(chan error, 1)
	go func() { perr <- p.Run(pctx) }()
	defer func() {
		pcancel()
		if err := <-perr; err != nil {
			t.Errorf("producer: %v", err)
		}
	}()

	pl := &pipeline{format: schemas.FormatAvro, prefix: "kavro", kafka: cfg.Kafka.Config}
	pl.redis = redissink.DefaultConfig()
	pl.redis.Name = "redis-trunc"
	pl.redis.Instances = map[string]redissink.InstanceConfig{"main": {Addr: rs.Addr}}
	pl.redis.Tables = []redissink.TableConfig{{Match: "shop.items"}}
	rh, err := redissink.New(pl.redis, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	mcfg := sqlmirror.DefaultConfig()
	mcfg.Name, mcfg.Dialect, mcfg.DSN = "mirror-trunc", "postgres", pg.DSN
	mcfg.Tables = []sqlmirror.TableConfig{{Source: "shop.items", Target: "mirror_kavro_items"}}
	mcfg.OffsetsTable = "mirror_offsets" // the aggregate keeps its own kanal_offsets here
	mh, err := sqlmirror.New(mcfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mh.Close()
	acfg := aggregators.DefaultConfig()
	acfg.Name = "agg-trunc"
	acfg.Target.Driver, acfg.Target.DSN = aggregators.DriverPostgres, pg.DSN
	acfg.Summaries = []aggregators.SummaryConfig{{Table: "trunc_by_user", Source: "shop.items", GroupBy: []string{"user_id"}, Measures: []string{"count", "sum(amount) AS total"}}}
	agg, err := aggregators.New(acfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	ecfg := essink.DefaultConfig()
	ecfg.Name, ecfg.URLs, ecfg.Tables = "es-trunc", []string{es.URL}, []essink.TableConfig{{Match: "shop.items"}}
	eh, err := essink.New(ecfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer eh.Close()
	mccfg := memcachedsink.DefaultConfig()
	mccfg.Name, mccfg.Servers, mccfg.Tables = "mc-trunc", []string{mc.Addr}, []memcachedsink.TableConfig{{Match: "shop.items"}}
	mch, err := memcachedsink.New(mccfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mch.Close()
	creg := consumer.NewRegistry()
	for _, err := range []error{
		creg.Register(rh, consumer.Tables("shop.items")),
		creg.Register(mh, consumer.Tables("shop.items")),
		agg.RegisterWith(creg, consumer.OnFailure(consumer.DeadLetter)),
		creg.Register(eh, consumer.Tables("shop.items")),
		creg.Register(mch, consumer.Tables("shop.items"), consumer.OnFailure(consumer.DeadLetter)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	runConsumers(t, k, "kavro", cfg.Kafka.Config, creg)

	src := m.DB()
	var keys []string
	for i := 1; i <= 40; i++ {
		keys = append(keys, fmt.Sprintf("shop.items:%d", i))
	}
	eventually(t, "redis has the rows", func() string {
		return diffRows(sourceRows(t, src, "shop.items"), redisRows(t, pl.redis, "shop.items", keys))
	})
	for _, q := range []string{
		"ALTER TABLE shop.items ADD COLUMN note VARCHAR(10) NULL DEFAULT 'n''x' COMMENT 'c'",
		"TRUNCATE TABLE shop.items",
		"INSERT INTO shop.items VALUES (21, 1, 1.00, 'after'), (22, 2, 2.00, NULL), (23, 1, 3.00, 'a')",
		"CREATE TABLE shop.audit (id INT PRIMARY KEY)",
		"RENAME TABLE shop.audit TO shop.audit_old",
		"DROP TABLE shop.audit_old",
	} {
		m.Exec(t, q)
	}
	want := sourceRows(t, src, "shop.items")
	if len(want) != 3 {
		t.Fatalf("source has %d rows", len(want))
	}
	eventually(t, "redis equals the source after the truncate", func() string {
		return diffRows(want, redisRows(t, pl.redis, "shop.items", keys))
	})
	eventually(t, "the mirror equals the source after the truncate", func() string {
		var n int
		if err := pgdb.QueryRow("SELECT count(*) FROM mirror_kavro_items WHERE id IN (21, 22, 23)").Scan(&n); err != nil {
			return err.Error()
		}
		var all int
		_ = pgdb.QueryRow("SELECT count(*) FROM mirror_kavro_items").Scan(&all)
		if n != 3 || all != 3 {
			return fmt.Sprintf("mirror holds %d rows, %d of them after the truncate", all, n)
		}
		return ""
	})

	escl := estest.Cluster{URL: es.URL}
	eventually(t, "the index equals the source after the truncate", func() string {
		got := map[string]map[string]string{}
		for _, d := range escl.Search(t, "shop.items") {
			row, err := cdctest.RenderJSON(d.Source)
			if err != nil {
				t.Fatal(err)
			}
			got["shop.items:"+d.ID] = row
		}
		return diffRows(want, got)
	})
	// memcached dead-letters the truncate (once per partition) and applies the
	// rows after it; the rows before it stay cached until rebuilt.
	eventually(t, "memcached dead-letters the truncate", func() string {
		dlq := readRecords(t, k, "kavro._dlq.kanal-mc-trunc")
		if len(dlq) != 3 {
			return fmt.Sprintf("%d dead letters, want one per partition (3)", len(dlq))
		}
		for _, d := range dlq {
			if string(d.Key) != "shop.items" || header(d, schemas.HeaderOp) != "t" ||
				!strings.Contains(header(d, schemas.HeaderDLQError), "TRUNCATE of shop.items") ||
				!strings.Contains(header(d, schemas.HeaderDLQError), "cannot list the table's keys") {
				return fmt.Sprintf("dead letter key %q op %q error %q", d.Key, header(d, schemas.HeaderOp), header(d, schemas.HeaderDLQError))
			}
		}
		return ""
	})
	mrd, err := memcachedsink.NewReader(mccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mrd.Close()
	eventually(t, "memcached holds the rows after the truncate", func() string {
		for id := 1; id <= 23; id++ {
			key := fmt.Sprintf("shop.items:%d", id)
			row, ok, err := mrd.Get(key)
			switch {
			case err != nil:
				return err.Error()
			case !ok && id <= 20:
				return key + ": gone, but memcached cannot apply the truncate"
			case !ok:
				return key + ": the row written after the truncate is not cached"
			case id > 20 && fmt.Sprint(row.Values["user_id"], "/", row.Values["amount"]) != want[key]["user_id"]+"/"+want[key]["amount"]:
				return fmt.Sprintf("%s: %v, want %v", key, row.Values, want[key])
			}
		}
		return ""
	})

	// The aggregate dead-letters the truncate (once per partition) with its reason.
	eventually(t, "the aggregate dead-letters the truncate", func() string {
		dlq := readRecords(t, k, "kavro._dlq.kanal-agg-trunc")
		if len(dlq) != 3 {
			return fmt.Sprintf("%d dead letters, want one per partition (3)", len(dlq))
		}
		for _, d := range dlq {
			if string(d.Key) != "shop.items" || header(d, schemas.HeaderOp) != "t" ||
				!strings.Contains(header(d, schemas.HeaderDLQError), "TRUNCATE of shop.items") {
				return fmt.Sprintf("dead letter key %q op %q error %q", d.Key, header(d, schemas.HeaderOp), header(d, schemas.HeaderDLQError))
			}
		}
		return ""
	})

	// _schema_changes: the captured table's statements, in order, redacted.
	var got []string
	for _, r := range readRecords(t, k, "kavro._schema_changes") {
		sc, err := schemas.DecodeSchemaChange(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s.%s>%s.%s cols=%d", sc.Kind, sc.DB, sc.Table, sc.NewDB, sc.NewTable, len(sc.Columns)))
		if string(r.Key) != sc.Key() {
			t.Errorf("schema change key %q, record of %s", r.Key, sc.Key())
		}
		if sc.SQL == "" || sc.File == "" || sc.Pos == 0 || sc.Source != "kavro" {
			t.Errorf("schema change %+v", sc)
		}
	}
	wantSC := []string{
		"create shop.items>. cols=0", // the producer starts at the earliest binlog
		"alter shop.items>. cols=0",
		"truncate shop.items>. cols=0", // no row since the ALTER: its columns are not known
		"create shop.audit>. cols=0",
		"rename shop.audit>shop.audit_old cols=0",
		"drop shop.audit_old>. cols=0",
	}
	if strings.Join(got, "\n") != strings.Join(wantSC, "\n") {
		t.Errorf("schema changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantSC, "\n"))
	}

	// No password anywhere: log lines, and every record of every topic.
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the producer log holds the password")
	}
	if !strings.Contains(logs.String(), "ADD COLUMN note") {
		t.Errorf("the captured table's DDL is not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "other.t") || strings.Contains(logs.String(), "ADD COLUMN c") {
		t.Errorf("DDL of a table that is not captured is logged")
	}
	topics, err := kadm.NewClient(k.Client(t)).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, topic := range topics.Names() {
		for _, r := range readRecords(t, k, topic) {
			n++
			if bytes.Contains(r.Value, []byte(secret)) || bytes.Contains(r.Key, []byte(secret)) {
				t.Errorf("topic %s holds the password", topic)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d records read from %d topics", n, len(topics.Names()))
	}
}

// readRecords reads every committed record of a topic, as stored.
func readRecords(t *testing.T, k *testenv.KafkaCluster, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(k.Client(t)).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
