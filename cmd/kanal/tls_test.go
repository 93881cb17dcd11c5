package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// The secrets of TestTLSEverywhere: each must never appear in anything kanal
// prints. The database password comes from the environment, the others from
// password files.
const (
	tlsKafkaPassword    = "kafka-pw-7Qx2v9"
	tlsRedisPassword    = "redis-pw-Lm4k8s"
	tlsRegistryPassword = "registry-pw-Hc3w5n"
)

// tlsSASLUsers are kfake's users of TestTLSEverywhere, one per mechanism, all
// with tlsKafkaPassword.
var tlsSASLUsers = map[string]string{"SCRAM-SHA-512": "kanal", "SCRAM-SHA-256": "kanal-256", "PLAIN": "kanal-plain"}

// tlsRig is every server of TestTLSEverywhere, each requiring TLS: MariaDB
// (the source, and the MySQL target in database mirror), Kafka (TLS with
// client certificates and SASL: SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN), the
// schema registry of the avro-confluent format (https, basic auth), two Redis
// instances (TLS with client certificates, an ACL user) and Postgres (hostssl
// only, a password).
type tlsRig struct {
	certs  *testenv.TLSCerts
	m      *testenv.MariaDBServer
	k      *testenv.KafkaCluster
	reg    *testenv.RegistryServer
	r      [2]*testenv.RedisServer
	pg     *testenv.PostgresServer
	files  map[string]string // password files by server
	env    []string
	kafka  *kgo.Client  // a correctly configured client of the broker
	admin  *kadm.Client // the same, as an admin client
	pgConn *pgx.Conn    // the harness's own connections to the targets
}

// tlsMode says, per server, how kanal's config connects: "ok" (the CA, the
// client certificate where the server wants one), "plain" (no TLS) or
// "wrong-ca" (a CA that signed nothing here). Its key "sasl" names the
// mechanism to Kafka (SCRAM-SHA-512 when missing).
type tlsMode map[string]string

func startTLSRig(t *testing.T) *tlsRig {
	certs := testenv.NewTLSCerts(t)
	rig := &tlsRig{certs: certs, files: map[string]string{}}
	rig.m = testenv.MariaDB(t, testenv.WithTLS(certs))
	var users []kfake.Opt
	for mech, user := range tlsSASLUsers {
		users = append(users, kfake.Superuser(mech, user, tlsKafkaPassword))
	}
	rig.k = testenv.Kafka(t, append(users, kfake.TLS(certs.ServerConfig(true)), kfake.EnableSASL())...)
	rig.reg = testenv.SchemaRegistry(t, testenv.WithRegistryTLS(certs), testenv.WithRegistryUser("kanal", tlsRegistryPassword))
	for i := range rig.r {
		rig.r[i] = testenv.Redis(t, testenv.WithRedisTLS(certs, true), testenv.WithRedisUser("kanal", tlsRedisPassword))
	}
	rig.pg = testenv.Postgres(t, testenv.WithSSL(certs))
	dir := t.TempDir()
	for name, pw := range map[string]string{"kafka": tlsKafkaPassword, "redis": tlsRedisPassword,
		"postgres": testenv.PostgresPassword, "mysql": testenv.MariaDBPassword, "registry": tlsRegistryPassword} {
		rig.files[name] = filepath.Join(dir, name+"-password")
		if err := os.WriteFile(rig.files[name], []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rig.env = []string{"KANAL_TEST_DB_PASSWORD=" + testenv.MariaDBPassword}

	cl, err := kgo.NewClient(kgo.SeedBrokers(rig.k.Brokers...), kgo.DialTLSConfig(certs.ClientConfig()),
		kgo.SASL(scram.Auth{User: "kanal", Pass: tlsKafkaPassword}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	rig.kafka, rig.admin = cl, kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rig.pgConn, err = pgx.Connect(ctx, rig.pg.DSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.pgConn.Close(context.Background()) })

	for _, q := range []string{
		"CREATE DATABASE shop",
		"CREATE TABLE shop.users (id BIGINT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100))",
		"CREATE TABLE shop.earnings (id BIGINT PRIMARY KEY AUTO_INCREMENT, user_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL)",
		"CREATE DATABASE mirror",
		"CREATE TABLE mirror.users (id BIGINT PRIMARY KEY, name VARCHAR(50), email VARCHAR(100), _kanal_version BIGINT NOT NULL DEFAULT 0)",
	} {
		rig.m.Exec(t, q)
	}
	return rig
}

// workload writes users and earnings in a few transactions, updates and
// deletes some: what must reach every target.
func (rig *tlsRig) workload(t *testing.T, from, to int) {
	t.Helper()
	for u := from; u <= to; u++ {
		rig.m.Exec(t, "INSERT INTO shop.users VALUES (?, ?, ?)", u, fmt.Sprintf("user %d", u), fmt.Sprintf("u%d@example.com", u))
		rig.m.Exec(t, "INSERT INTO shop.earnings (user_id, amount) VALUES (?, 10.25), (?, 0.50), (?, 3.00)", u, u, u)
	}
	rig.m.Exec(t, "UPDATE shop.users SET name = CONCAT(name, ' (renamed)') WHERE id % 3 = 0 AND id BETWEEN ? AND ?", from, to)
	rig.m.Exec(t, "DELETE FROM shop.earnings WHERE user_id % 4 = 0 AND amount = 0.50 AND user_id BETWEEN ? AND ?", from, to)
	rig.m.Exec(t, "DELETE FROM shop.users WHERE id = ?", to)
}

// tlsValue is the YAML of one server's tls setting in mode.
func (rig *tlsRig) tlsValue(mode string, clientCert bool) string {
	c := rig.certs
	switch mode {
	case "plain":
		return "false"
	case "wrong-ca":
		if clientCert {
			return fmt.Sprintf("{ca: %s, cert: %s, key: %s}", c.WrongCA, c.ClientCert, c.ClientKey)
		}
		return fmt.Sprintf("{ca: %s}", c.WrongCA)
	}
	if clientCert {
		return fmt.Sprintf("{ca: %s, cert: %s, key: %s}", c.CA, c.ClientCert, c.ClientKey)
	}
	return fmt.Sprintf("{ca: %s}", c.CA)
}

// config writes a kanal.yaml whose connections are as mode says (missing
// servers: "ok").
func (rig *tlsRig) config(t *testing.T, mode tlsMode) string {
	t.Helper()
	get := func(s string) string {
		if m := mode[s]; m != "" {
			return m
		}
		return "ok"
	}
	mech := mode["sasl"]
	if mech == "" {
		mech = "SCRAM-SHA-512"
	}
	registryURL := rig.reg.URL
	if get("registry") == "plain" {
		registryURL = "http://" + strings.TrimPrefix(registryURL, "https://")
	}
	pgDSN := fmt.Sprintf("postgres://postgres@%s/kanal?connect_timeout=5", rig.pg.Addr)
	if get("postgres") == "plain" {
		pgDSN += "&sslmode=disable" // pgx would otherwise try TLS first (sslmode=prefer)
	}
	cfg := fmt.Sprintf(`source:
  name: tlsdemo
  addr: %s
  user: kanal
  password: ${KANAL_TEST_DB_PASSWORD}
  server_id: 1001
  start: earliest
  heartbeat_interval: 200ms
  connect_timeout: 5s
  tls: %s
kafka:
  brokers: [%s]
  partitions: 2
  cleanup_policy: delete
  flush_records: 50
  sasl:
    mechanism: %s
    user: %s
    password_file: %s
  tls: %s
  format: avro-confluent
  schema_registry:
    url: %s
    user: kanal
    password_file: %s
    tls: %s
    timeout: 5s
tables:
  include: ["shop.*"]
consumers:
  commit_interval: 200ms
  session_timeout: 6s
  revoke_timeout: 2s        # a halted partition (wrong CA) holds the stop this long
  metadata_max_age: 300ms
  retry: {max_attempts: 3, initial_interval: 50ms, max_interval: 200ms, max_elapsed: 0s}
  handlers:
    - handler: redis
      name: users-cache
      tables: ["shop.users"]
      options:
        instances:
          a: {addr: %s, username: kanal, password_file: %s, tls: %s, dial_timeout: 3s}
          b: {addr: %s, username: kanal, password_file: %s, tls: %s, dial_timeout: 3s}
        key_prefix: "kc:"
        tables:
          - match: shop.users
            instances: [a, b]
    - handler: aggregate
      name: earnings
      tables: ["shop.earnings"]
      options:
        target:
          driver: postgres
          dsn: %s
          password_file: %s
          tls: %s
          connect_timeout: 5s
        summaries:
          - table: user_earnings
            source: shop.earnings
            group_by: [user_id]
            measures: ["count AS n", "sum(amount) AS total"]
    - handler: sqlmirror
      name: mirror
      tables: ["shop.users"]
      options:
        dialect: mysql
        dsn: kanal@tcp(%s)/mirror?timeout=5s
        password_file: %s
        tls: %s
        tables:
          - source: shop.users
            target: users
`, rig.m.Addr(), rig.tlsValue(get("source"), false),
		strings.Join(rig.k.Brokers, ","), mech, tlsSASLUsers[mech], rig.files["kafka"], rig.tlsValue(get("kafka"), true),
		registryURL, rig.files["registry"], rig.tlsValue(get("registry"), false),
		rig.r[0].Addr, rig.files["redis"], rig.tlsValue(get("redis"), true),
		rig.r[1].Addr, rig.files["redis"], rig.tlsValue(get("redis"), true),
		pgDSN, rig.files["postgres"], rig.tlsValue(get("postgres"), false),
		rig.m.Addr(), rig.files["mysql"], rig.tlsValue(get("mysql"), false))
	return writeFile(t, cfg)
}

// TestTLSEverywhere runs kanal against servers that all require TLS (and
// authentication): with the right CA a change flows from MariaDB through
// Kafka (TLS + SASL, the transactional producer and the consumer groups) into
// Redis (a ring of two instances), Postgres and a MariaDB copy. Without TLS
// each server refuses and kanal says TLS is what it wants; with a wrong CA
// each connection fails naming the server and the certificate problem, and
// nothing is written. No password kanal was given appears in any output.
func TestTLSEverywhere(t *testing.T) {
	rig := startTLSRig(t)
	var outputs []string // everything kanal printed, checked for secrets at the end
	rig.workload(t, 1, 30)

	// `kanal config check --connect`: one line per server.
	checks := []struct {
		mode tlsMode
		want map[string][]string // server line prefix → what its FAIL line says
	}{
		{tlsMode{"source": "plain", "kafka": "plain", "registry": "plain", "redis": "plain", "postgres": "plain", "mysql": "plain"}, map[string][]string{
			"source tlsdemo":                        {"offers TLS", "set source.tls"},
			"kafka broker":                          {"requires TLS"},
			"schema registry http://":               {"GET /config answered 400", "HTTPS"},
			"handler users-cache: redis instance a": {"redis instance a (" + rig.r[0].Addr + ")", "TLS", "set instances.a.tls"},
			"handler users-cache: redis instance b": {"TLS", "set instances.b.tls"},
			"handler earnings: postgres target":     {"accepts only TLS connections", "set target.tls", "no encryption"},
			"handler mirror: mysql target":          {"offers TLS", "set tls"},
		}},
		{tlsMode{"source": "wrong-ca", "kafka": "wrong-ca", "registry": "wrong-ca", "redis": "wrong-ca", "postgres": "wrong-ca", "mysql": "wrong-ca"}, map[string][]string{
			"source tlsdemo":                        {"source " + rig.m.Addr(), "not trusted", "source.tls.ca", "x509: certificate signed by unknown authority"},
			"kafka broker":                          {"kafka broker " + rig.k.Brokers[0], "not trusted", "kafka.tls.ca", "x509: certificate signed by unknown authority"},
			"schema registry " + rig.reg.URL:        {"GET /config", "not trusted", "kafka.schema_registry.tls.ca", "x509: certificate signed by unknown authority"},
			"handler users-cache: redis instance a": {"redis instance a (" + rig.r[0].Addr + ")", "not trusted", "instances.a.tls.ca", "x509: certificate signed by unknown authority"},
			"handler users-cache: redis instance b": {"redis instance b (" + rig.r[1].Addr + ")", "not trusted", "x509: certificate signed by unknown authority"},
			"handler earnings: postgres target":     {"postgres target " + rig.pg.Addr, "not trusted", "target.tls.ca", "x509: certificate signed by unknown authority"},
			"handler mirror: mysql target":          {"mysql target " + rig.m.Addr(), "not trusted", "tls.ca", "x509: certificate signed by unknown authority"},
		}},
	}
	for _, c := range checks {
		out, code := kanalExit(t, rig.env, "config", "check", "--connect", "--timeout", "8s", "--config", rig.config(t, c.mode))
		outputs = append(outputs, out)
		if code != 1 {
			t.Errorf("config check --connect with %v: exit %d, want 1:\n%s", c.mode, code, out)
		}
		lines := strings.Split(out, "\n")
		for prefix, says := range c.want {
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "FAIL  "+prefix) })
			if i < 0 {
				t.Errorf("%v: no FAIL line for %s:\n%s", c.mode, prefix, out)
				continue
			}
			for _, s := range says {
				if !strings.Contains(lines[i], s) {
					t.Errorf("%v: the line of %s does not say %q:\n%s", c.mode, prefix, s, lines[i])
				}
			}
		}
	}
	good := rig.config(t, nil)
	out, code := kanalExit(t, rig.env, "config", "check", "--connect", "--config", good)
	outputs = append(outputs, out)
	if code != 0 || !strings.Contains(out, "all 7 servers ok") || !strings.Contains(out, "ok    schema registry "+rig.reg.URL) {
		t.Fatalf("config check --connect with the right CA: exit %d:\n%s", code, out)
	}

	// The producer refuses a source or brokers it cannot trust, or a source
	// that wants TLS, at once (exit 1), before writing anything to Kafka.
	for _, c := range []struct {
		mode tlsMode
		says []string
	}{
		{tlsMode{"source": "wrong-ca"}, []string{"source " + rig.m.Addr(), "not trusted", "x509: certificate signed by unknown authority"}},
		{tlsMode{"source": "plain"}, []string{"source " + rig.m.Addr(), "offers TLS", "set source.tls"}},
		{tlsMode{"kafka": "wrong-ca"}, []string{"kafka broker " + rig.k.Brokers[0], "not trusted", "x509: certificate signed by unknown authority"}},
	} {
		out, code := kanalExit(t, rig.env, "produce", "--config", rig.config(t, c.mode))
		outputs = append(outputs, out)
		if code != 1 {
			t.Errorf("produce with %v: exit %d, want 1:\n%s", c.mode, code, out)
		}
		for _, s := range c.says {
			if !strings.Contains(out, s) {
				t.Errorf("produce with %v does not say %q:\n%s", c.mode, s, out)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The producer group's members may create kanal's internal topics and
	// publish status records before they reach the source; no change and no
	// position may be there.
	topics, err := rig.admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "kanal.shop.") {
			t.Errorf("after the refused produce runs, Kafka holds the table topic %s", name)
		}
	}
	if topics.Has("kanal._positions") {
		ends, err := rig.admin.ListEndOffsets(ctx, "kanal._positions")
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset != 0 {
				t.Errorf("after the refused produce runs, kanal._positions[%d] ends at %d", o.Partition, o.Offset)
			}
		})
	}

	// The producer logs in with SASL PLAIN (the consumers with SCRAM-SHA-512,
	// tail and the other Kafka commands with SCRAM-SHA-256).
	prod := startKanal(t, rig.env, "produce", "--config", rig.config(t, tlsMode{"sasl": "PLAIN"}))

	// Consumers with a wrong CA for every target: each handler fails with the
	// certificate problem, and no target gets anything.
	bad := startKanal(t, rig.env, "consume", "--config", rig.config(t, tlsMode{"redis": "wrong-ca", "postgres": "wrong-ca", "mysql": "wrong-ca"}))
	waitFor(t, 60*time.Second, "each handler to report its target's certificate", func() bool {
		lines := strings.Split(bad.output(), "\n")
		for _, h := range []string{"users-cache", "earnings", "mirror"} {
			if !slices.ContainsFunc(lines, func(l string) bool {
				return strings.Contains(l, "handler="+h) && strings.Contains(l, "not trusted") &&
					strings.Contains(l, "x509: certificate signed by unknown authority")
			}) {
				return false
			}
		}
		return true
	}, bad)
	stopKanal(t, bad)
	outputs = append(outputs, bad.output())
	if n := rig.redisKeys(t); n != 0 {
		t.Errorf("with a wrong CA, Redis got %d keys", n)
	}
	var summary, offsets *string
	if err := rig.pgConn.QueryRow(ctx, "SELECT to_regclass('user_earnings')::text, to_regclass('kanal_offsets')::text").Scan(&summary, &offsets); err != nil {
		t.Fatal(err)
	}
	if summary != nil || offsets != nil {
		t.Errorf("with a wrong CA, Postgres got tables %v %v", summary, offsets)
	}
	if n := rig.count(t, "SELECT COUNT(*) FROM mirror.users"); n != 0 {
		t.Errorf("with a wrong CA, the MySQL target got %d rows", n)
	}

	// The right CA: every change arrives everywhere.
	cons := startKanal(t, rig.env, "consume", "--config", good)
	rig.workload(t, 31, 40)
	waitFor(t, 90*time.Second, "the targets to equal the source", func() bool { return rig.converged(t, ctx) == "" }, cons, prod)
	for _, c := range []*child{cons, prod} {
		stopKanal(t, c)
		outputs = append(outputs, c.output())
	}

	outputs = append(outputs, rig.kafkaCommands(t, ctx)...)

	// Every command's --help (the whole tree, so that a new command is
	// covered), with the secrets in the environment.
	var walk func(c *cobra.Command, path []string)
	var helped []string
	walk = func(c *cobra.Command, path []string) {
		out, code := kanalExit(t, rig.env, append(slices.Clone(path), "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("kanal %s --help: exit %d:\n%s", strings.Join(path, " "), code, out)
		}
		outputs = append(outputs, out)
		helped = append(helped, strings.Join(path, " "))
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(rootCmd(), nil)
	for _, must := range []string{"tail", "status", "dlq show", "dlq redrive", "offsets skip", "topics alter", "positions reset", "config check"} {
		if !slices.Contains(helped, must) {
			t.Errorf("the --help walk missed %q (it saw %q)", must, helped)
		}
	}
	for _, out := range outputs {
		for _, secret := range []string{testenv.MariaDBPassword, tlsKafkaPassword, tlsRedisPassword, testenv.PostgresPassword, tlsRegistryPassword} {
			if strings.Contains(out, secret) {
				t.Errorf("kanal printed a password:\n%s", out)
			}
		}
	}
}

// kafkaCommands runs the commands that need only Kafka (tail, tail --dlq, dlq
// show, offsets show, status) with --config against the TLS + SASL broker and
// the https registry with basic auth, logging in with SCRAM-SHA-256: each
// connects as the file says and shows what is there. It returns their outputs.
func (rig *tlsRig) kafkaCommands(t *testing.T, ctx context.Context) []string {
	t.Helper()
	cfg := rig.config(t, tlsMode{"sasl": "SCRAM-SHA-256"})
	var outputs []string
	run := func(args ...string) string {
		t.Helper()
		out, code := kanalExit(t, rig.env, args...)
		outputs = append(outputs, out)
		if code != 0 {
			t.Fatalf("kanal %s: exit %d:\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}

	// Every change of shop.users, avro-confluent records whose schemas only
	// the registry has: folded by key, they are the source's rows.
	users := rig.rows(t, "SELECT id, name, email FROM shop.users ORDER BY id")
	const usersChanges = 40 + 13 + 2 // inserts, updates of every third, deletes (workload)
	out := run("tail", "--config", cfg, "--tables", "shop.users", "--from-beginning", "--max", fmt.Sprint(usersChanges), "--timeout", "60s")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	rows := map[string]string{}
	for _, l := range lines {
		cs, err := schemas.Decode(schemas.FormatJSON, []byte(l))
		if err != nil || len(cs) != 1 {
			t.Fatalf("tail printed %q: %v", l, err)
		}
		c := cs[0]
		if c.Op == schemas.OpDelete {
			delete(rows, c.Key())
			continue
		}
		rows[c.Key()] = fmt.Sprintf("%v|%v|%v", c.After["id"], c.After["name"], c.After["email"])
	}
	got := slices.Collect(maps.Values(rows))
	slices.SortFunc(got, func(a, b string) int { return cmpIDs(a, b) })
	if len(lines) != usersChanges || !slices.Equal(got, users) {
		t.Errorf("tail printed %d changes, want %d; folded by key %d rows, the source has %d:\n%s", len(lines), usersChanges, len(got), len(users), out)
	}

	// A dead letter of the users-cache group: a copy of a shop.users record
	// with the headers the Runner adds. tail --dlq decodes its avro-confluent
	// value with the registry too.
	group := consumer.DefaultGroup("users-cache")
	rd, err := kgo.NewClient(append(rig.kafka.Opts(), kgo.ConsumeTopics("kanal.shop.users"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		t.Fatal(err)
	}
	var orig *kgo.Record
	for orig == nil {
		fs := rd.PollRecords(ctx, 1)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read kanal.shop.users: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if orig == nil && r.Value != nil {
				orig = r
			}
		})
	}
	rd.Close()
	dl := &kgo.Record{Topic: schemas.DLQTopic("kanal", group), Key: orig.Key, Value: orig.Value,
		Headers: append(slices.Clone(orig.Headers),
			kgo.RecordHeader{Key: schemas.HeaderDLQHandler, Value: []byte("users-cache")},
			kgo.RecordHeader{Key: schemas.HeaderDLQReason, Value: []byte("permanent")},
			kgo.RecordHeader{Key: schemas.HeaderDLQError, Value: []byte("made by the test")},
			kgo.RecordHeader{Key: schemas.HeaderDLQTopic, Value: []byte(orig.Topic)},
			kgo.RecordHeader{Key: schemas.HeaderDLQPartition, Value: []byte(fmt.Sprint(orig.Partition))},
			kgo.RecordHeader{Key: schemas.HeaderDLQOffset, Value: []byte(fmt.Sprint(orig.Offset))},
			kgo.RecordHeader{Key: schemas.HeaderDLQAttempts, Value: []byte("1")},
			kgo.RecordHeader{Key: schemas.HeaderDLQTime, Value: []byte(time.Now().UTC().Format(time.RFC3339))})}
	// The group's Runner made the topic; should it not have, this does.
	if _, err := rig.admin.CreateTopic(ctx, 1, 1, nil, dl.Topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create %s: %v", dl.Topic, err)
	}
	if err := rig.kafka.ProduceSync(ctx, dl).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out = run("tail", "--config", cfg, "--dlq", group, "--from-beginning", "--max", "1", "--timeout", "60s")
	var line struct {
		DLQ        map[string]string `json:"dlq"`
		Key        string            `json:"key"`
		Change     json.RawMessage   `json:"change"`
		ValueError string            `json:"value_error"`
	}
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatalf("tail --dlq printed %q: %v", out, err)
	}
	change, err := schemas.Decode(schemas.FormatJSON, line.Change)
	if line.DLQ["reason"] != "permanent" || line.Key != string(orig.Key) || line.ValueError != "" ||
		err != nil || len(change) != 1 || change[0].Key() != string(orig.Key) {
		t.Errorf("tail --dlq printed %q (%v), want the dead letter of %s with its change decoded", out, err, orig.Key)
	}
	if out := run("dlq", "show", "--config", cfg, "--group", group); !strings.Contains(out, "1 dead letters") || !strings.Contains(out, string(orig.Key)) {
		t.Errorf("dlq show:\n%s", out)
	}
	if out := run("offsets", "show", "--config", cfg, "--group", group); !strings.Contains(out, "kanal.shop.users") {
		t.Errorf("offsets show:\n%s", out)
	}
	if out := run("status", "--config", cfg); !strings.Contains(out, "tlsdemo") || !strings.Contains(out, group) {
		t.Errorf("status:\n%s", out)
	}
	return outputs
}

// cmpIDs orders "id|…" rows by their numeric id.
func cmpIDs(a, b string) int {
	ia, _ := strconv.Atoi(a[:strings.IndexByte(a, '|')])
	ib, _ := strconv.Atoi(b[:strings.IndexByte(b, '|')])
	return ia - ib
}

// converged returns "" when Redis, Postgres and the MySQL copy hold what the
// source does, or what differs.
func (rig *tlsRig) converged(t *testing.T, ctx context.Context) string {
	users := rig.rows(t, "SELECT id, name, email FROM shop.users ORDER BY id")
	if got := rig.rows(t, "SELECT id, name, email FROM mirror.users ORDER BY id"); !slices.Equal(got, users) {
		return fmt.Sprintf("mirror.users has %d rows, shop.users %d", len(got), len(users))
	}
	if n := rig.redisKeys(t); n != len(users) {
		return fmt.Sprintf("Redis has %d users, the source %d", n, len(users))
	}
	for i := range rig.r {
		c := redis.NewClient(rig.r[i].Options())
		keys, err := c.Keys(ctx, "kc:shop.users:*").Result()
		for _, k := range keys {
			name, _ := c.HGet(ctx, k, "name").Result()
			id := strings.TrimPrefix(k, "kc:shop.users:")
			if !slices.ContainsFunc(users, func(u string) bool { return strings.HasPrefix(u, id+"|"+name+"|") }) {
				c.Close()
				return fmt.Sprintf("Redis %s has name %q", k, name)
			}
		}
		c.Close()
		if err != nil {
			return err.Error()
		}
	}
	want := rig.rows(t, "SELECT user_id, COUNT(*), SUM(amount) FROM shop.earnings GROUP BY user_id ORDER BY user_id")
	rows, err := rig.pgConn.Query(ctx, "SELECT user_id::text || '|' || n::text || '|' || total::text FROM user_earnings WHERE n > 0 ORDER BY user_id")
	if err != nil {
		return err.Error()
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	if !slices.Equal(got, want) {
		return fmt.Sprintf("user_earnings has %d groups, the source %d", len(got), len(want))
	}
	return ""
}

// rows returns the rows of a MariaDB query, each as its columns joined by '|'.
func (rig *tlsRig) rows(t *testing.T, q string) []string {
	t.Helper()
	rs, err := rig.m.DB().Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cols, _ := rs.Columns()
	var out []string
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, v.String)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

func (rig *tlsRig) count(t *testing.T, q string) int {
	t.Helper()
	var n int
	if err := rig.m.DB().QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// redisKeys counts the user rows on both instances of the ring.
func (rig *tlsRig) redisKeys(t *testing.T) int {
	t.Helper()
	n := 0
	for i := range rig.r {
		c := redis.NewClient(rig.r[i].Options())
		keys, err := c.Keys(context.Background(), "kc:shop.users:*").Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		n += len(keys)
	}
	return n
}

// waitFor polls cond until it holds, failing after limit with the outputs of
// the given children.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool, show ...*child) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, c := range show {
				b.WriteString("--- " + strings.Join(c.cmd.Args, " ") + "\n" + c.output())
			}
			t.Fatalf("waited %v for %s:\n%s", limit, what, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopKanal stops c with SIGTERM and fails unless it exits cleanly.
func stopKanal(t *testing.T, c *child) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Fatalf("%v exited with %v:\n%s", c.cmd.Args, err, c.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not stop within 30s of SIGTERM:\n%s", c.cmd.Args, c.output())
	}
}

// TestDevKafkaTLSAndSASL: `kanal dev-kafka` with its TLS and SASL flags is a
// broker kanal's kafka.tls and kafka.sasl settings connect to, and that
// refuses a client without them.
func TestDevKafkaTLSAndSASL(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dk := startKanal(t, []string{"KANAL_DEV_KAFKA_PASSWORD=" + tlsKafkaPassword}, "dev-kafka", "--listen", addr,
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-client-ca", certs.CA,
		"--sasl-user", "dev", "--sasl-mechanism", "SCRAM-SHA-256")
	waitFor(t, 30*time.Second, "dev-kafka to listen", func() bool { return strings.Contains(dk.output(), "dev-kafka listening on") }, dk)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(tlsKafkaPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(tls, sasl string) string {
		return writeFile(t, fmt.Sprintf(`kafka:
  brokers: [%s]
  tls: %s
%s
consumers:
  handlers:
    - {handler: stdout, name: audit, tables: ["shop.*"]}
`, addr, tls, sasl))
	}
	good := fmt.Sprintf("{ca: %s, cert: %s, key: %s}", certs.CA, certs.ClientCert, certs.ClientKey)
	sasl := fmt.Sprintf("  sasl: {mechanism: SCRAM-SHA-256, user: dev, password_file: %s}", pwFile)
	for _, c := range []struct {
		tls, sasl string
		code      int
		says      string
	}{
		{good, sasl, 0, "ok    kafka broker " + addr},
		{"false", sasl, 1, "requires TLS"},
		{good, "", 1, "SASL is required"},
	} {
		out, code := kanalExit(t, nil, "config", "check", "--connect", "--timeout", "5s", "--config", cfg(c.tls, c.sasl))
		if code != c.code || !strings.Contains(out, c.says) || strings.Contains(out, tlsKafkaPassword) {
			t.Errorf("tls %s sasl %q: exit %d, want %d saying %q:\n%s", c.tls, c.sasl, code, c.code, c.says, out)
		}
	}
}
