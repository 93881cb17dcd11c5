package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// kanalExit runs kanal and returns its combined output and exit code.
func kanalExit(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(kanalBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func writeFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kanal.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigExampleAndSchema: the binary prints the committed example and
// schema, and its example passes `kanal config check`.
func TestConfigExampleAndSchema(t *testing.T) {
	for args, file := range map[string]string{"example": "../../examples/kanal.yaml", "schema": "../../docs/kanal.schema.json"} {
		out, code := kanalExit(t, nil, "config", args)
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || out != string(want) {
			t.Errorf("kanal config %s (exit %d) differs from %s", args, code, file)
		}
	}
	env := []string{"KANAL_DB_PASSWORD=hunter2", "KANAL_SUMMARY_DSN=postgres://u:hunter2@127.0.0.1:1/db", "KANAL_MIRROR_DSN=postgres://u:hunter2@127.0.0.1:1/db", "KANAL_ES_PASSWORD=hunter2", "KANAL_RABBITMQ_PASSWORD=hunter2"}
	out, code := kanalExit(t, env, "config", "check", "--config", "../../examples/kanal.yaml")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 1 || !strings.Contains(out, "valid: source shop (db.internal:3306); kafka 2 brokers; 7 handlers: audit (stdout), redis-users (redis)") {
		t.Errorf("check of the example: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("check printed a password:\n%s", out)
	}
}

// TestConfigCheckErrors: mistakes exit 2 naming the field, handler options
// included, without connecting anywhere (nothing listens on the addresses).
func TestConfigCheckErrors(t *testing.T) {
	head := "source:\n  name: x\n  addr: 127.0.0.1:1\n  user: u\n  password: hunter2\nkafka:\n  brokers: [127.0.0.1:1]\n"
	for _, tc := range []struct{ doc, want string }{
		{head + "  partitions: 0\n", "kafka.partitions"},
		{strings.Replace(head, "name: x", "name: x\n  start: yesterday", 1), "source.start"},
		{head + "consumers:\n  handlers:\n    - {handler: stdout, name: a, tables: [d.t], options: {colour: red}}\n", "colour"},
		{head + "consumers:\n  handlers:\n    - {handler: nosuch, name: a, tables: [d.t]}\n", `consumers.handlers[0].handler: unknown handler "nosuch"`},
		{head + "consumers:\n  handlers:\n    - {handler: redis, name: a, tables: [d.t], options: {tables: [{match: d.t}]}}\n", "instances"},
		{head + "consumers:\n  handlers:\n    - {handler: redis, name: a, tables: [d.t], options: {name: b}}\n", "consumers.handlers[0].options.name"},
		{head + "consumers:\n  handlers:\n    - {handler: aggregate, name: a, tables: [d.t], options: {target: {driver: postgres, dsn: 'postgres://u:hunter2@h/d'}, summaries: [{table: s, source: d.t, measures: [avg(x)]}]}}\n", "measures[0]"},
		{head + "consumers:\n  handlers:\n    - {handler: sqlmirror, name: a, tables: [d.t], options: {dialect: oracle, dsn: x}}\n", "dialect"},
	} {
		out, code := kanalExit(t, nil, "config", "check", "--config", writeFile(t, tc.doc))
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("exit %d, output %s; want exit 2 naming %s", code, out, tc.want)
		}
		if strings.Contains(out, "hunter2") {
			t.Errorf("check printed a password:\n%s", out)
		}
	}
}

// TestConfigCheckConnect tries real servers: every one reachable gives exit 0;
// then a source user without replication privileges, a broker nobody listens
// on, a Redis instance that is down, a Postgres database that does not exist
// and a MariaDB mirror target with a wrong password each get a FAIL line with
// the reason, and exit 1. No password is printed.
func TestConfigCheckConnect(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	r := testenv.Redis(t)
	pg := testenv.Postgres(t)
	m.Exec(t, "CREATE USER 'weak'@'%' IDENTIFIED BY 'weak-Secret-1'")
	m.Exec(t, "GRANT SELECT ON *.* TO 'weak'@'%'")
	m.Exec(t, "CREATE USER 'noslave'@'%' IDENTIFIED BY 'noslave-Secret-2'")
	m.Exec(t, "GRANT SELECT, BINLOG MONITOR ON *.* TO 'noslave'@'%'")
	m.Exec(t, "CREATE DATABASE mirror")

	doc := func(user, pw, brokers, redisAddr, pgDSN, mirrorDSN string) string {
		return fmt.Sprintf(`source:
  name: check
  addr: %s
  user: %s
  password: ${SRC_PW}
kafka:
  brokers: [%s]
consumers:
  handlers:
    - handler: redis
      name: cache
      tables: [shop.users]
      options:
        instances: {main: {addr: "%s", password: ${REDIS_PW:-}}}
        tables: [{match: shop.users}]
    - handler: aggregate
      name: sums
      tables: [shop.orders]
      options:
        target: {driver: postgres, dsn: "%s"}
        summaries: [{table: per_user, source: shop.orders, group_by: [user_id]}]
    - handler: sqlmirror
      name: copy
      tables: [shop.*]
      options: {dialect: mysql, dsn: "%s"}
`, m.Addr(), user, brokers, redisAddr, pgDSN, mirrorDSN)
	}
	good := writeFile(t, doc(m.User, m.Password, strings.Join(k.Brokers, ", "), r.Addr, pg.DSN, m.DSN("mirror")))
	out, code := kanalExit(t, []string{"SRC_PW=" + m.Password}, "config", "check", "--config", good, "--connect", "--timeout", "20s")
	if code != 0 || strings.Count(out, "\nok    ") != 4+len(k.Brokers) || !strings.Contains(out, "all ") {
		t.Fatalf("all servers up: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"ok    source check (" + m.Addr() + " as kanal)", "ok    kafka broker " + k.Brokers[0],
		"ok    handler cache: redis instance main (" + r.Addr, "ok    handler sums: postgres target (" + pg.Addr, "ok    handler copy: mysql target (" + m.Addr() + " database mirror)"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}

	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	badMirror := strings.Replace(m.DSN("mirror"), m.Password, "Wrong-Pw-42", 1)
	bad := writeFile(t, doc("weak", "weak-Secret-1", k.Brokers[0]+", "+dead, dead, strings.Replace(pg.DSN, "/kanal", "/nosuchdb", 1), badMirror))
	out, code = kanalExit(t, []string{"SRC_PW=weak-Secret-1", "REDIS_PW=Redis-Secret-7"}, "config", "check", "--config", bad, "--connect", "--timeout", "5s")
	t.Logf("kanal config check --connect with broken servers:\n%s", out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"FAIL  source check (" + m.Addr() + " as weak): ",
		"ok    kafka broker " + k.Brokers[0],
		"FAIL  kafka broker " + dead + ": ",
		"FAIL  handler cache: redis instance main (" + dead,
		"FAIL  handler sums: postgres target (" + pg.Addr + " database nosuchdb): ",
		"FAIL  handler copy: mysql target (" + m.Addr() + " database mirror): ",
		"5 of 6 servers failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "REPLICATION") || !strings.Contains(out, "refused") || !strings.Contains(out, "nosuchdb") || !strings.Contains(out, "Access denied") {
		t.Errorf("the reasons should say why (privilege, refused, no database, access denied):\n%s", out)
	}
	// A user that may list binlogs but not dump them.
	src := writeFile(t, fmt.Sprintf("source:\n  name: check\n  addr: %s\n  user: noslave\n  password: noslave-Secret-2\nkafka:\n  brokers: [%s]\n", m.Addr(), k.Brokers[0]))
	out2, code := kanalExit(t, nil, "config", "check", "--config", src, "--connect")
	if code != 1 || !strings.Contains(out2, "FAIL  source check") || !strings.Contains(out2, "lacks REPLICATION SLAVE") || !strings.Contains(out2, "1 of 2 servers failed") {
		t.Errorf("source user without REPLICATION SLAVE: exit %d:\n%s", code, out2)
	}
	out += out2
	for _, pw := range []string{"weak-Secret-1", "Redis-Secret-7", "Wrong-Pw-42", "noslave-Secret-2", m.Password} {
		if strings.Contains(out, pw) {
			t.Errorf("check printed a password (%s):\n%s", pw, out)
		}
	}
}

// TestConfigCheckConnectSinks: the elasticsearch, rabbitmq and memcached
// handler types in a consumers-only file. With the in-test cluster, a private
// RabbitMQ and memcached up, every probe says ok and the exit is 0; with the
// cluster and memcached on ports nobody listens on and a wrong RabbitMQ
// password, each gets a FAIL line saying why, and the exit is 1. No password
// is printed.
func TestConfigCheckConnectSinks(t *testing.T) {
	k := testenv.Kafka(t)
	es := estest.NewServer(false)
	t.Cleanup(es.Close)
	mq := testenv.RabbitMQ(t)
	mc := testenv.Memcached(t)
	doc := func(esURL, mqURL, mcAddr string) string {
		return fmt.Sprintf(`kafka:
  brokers: [%s]
consumers:
  handlers:
    - handler: elasticsearch
      name: search
      tables: [shop.*]
      options: {urls: [%q], tables: [{match: shop.*}]}
    - handler: rabbitmq
      name: fanout
      tables: [shop.*]
      options: {url: "%s", tables: [{match: shop.*}]}
    - handler: memcached
      name: cache
      tables: [shop.*]
      options: {servers: [%q], tables: [{match: shop.*}]}
`, k.Brokers[0], esURL, mqURL, mcAddr)
	}
	mqAddr := strings.TrimSuffix(strings.TrimPrefix(mq.URL, "amqp://guest:guest@"), "/")
	good := writeFile(t, doc(es.URL, "amqp://guest:${MQ_PW}@"+mqAddr+"/", mc.Addr))
	out, code := kanalExit(t, []string{"MQ_PW=guest"}, "config", "check", "--config", good, "--connect", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "all 4 servers ok") {
		t.Fatalf("all servers up: exit %d:\n%s", code, out)
	}
	for _, want := range []string{"ok    handler search: elasticsearch " + es.URL, "ok    handler fanout: rabbitmq amqp://guest:xxxxx@" + mqAddr + "/",
		"ok    handler cache: memcached " + mc.Addr} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}

	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bad := writeFile(t, doc("http://"+dead, "amqp://guest:${MQ_PW}@"+mqAddr+"/", dead))
	out, code = kanalExit(t, []string{"MQ_PW=Rabbit-Secret-5"}, "config", "check", "--config", bad, "--connect", "--timeout", "10s")
	t.Logf("kanal config check --connect with broken targets:\n%s", out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"FAIL  handler search: elasticsearch http://" + dead + ": ",
		"FAIL  handler fanout: rabbitmq amqp://guest:xxxxx@" + mqAddr + "/: ",
		"FAIL  handler cache: memcached " + dead + ": ",
		"3 of 4 servers failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Count(out, "refused") < 2 || !strings.Contains(out, "username or password not allowed") {
		t.Errorf("the reasons should say why (connection refused twice, login refused):\n%s", out)
	}
	if strings.Contains(out, "Rabbit-Secret-5") {
		t.Errorf("check printed the RabbitMQ password:\n%s", out)
	}
}
