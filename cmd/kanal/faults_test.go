package main

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestProduceWrongPasswordExits: `kanal produce` with a wrong database password
// exits 1 at once with the server's message, without the password.
func TestProduceWrongPasswordExits(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfgPath := writeConfig(t, m, k.Brokers, "wrongpw", "")
	began := time.Now()
	out, code := kanalExit(t, []string{"KANAL_TEST_DB_PASSWORD=wrong-pw-4711"}, "produce", "--config", cfgPath)
	t.Logf("exit %d after %v", code, time.Since(began).Round(time.Millisecond))
	if code != 1 || !strings.Contains(out, "access denied") || !strings.Contains(out, "Error 1045") {
		t.Fatalf("exit %d, want 1 with the server's access-denied message:\n%s", code, out)
	}
	if strings.Contains(out, "wrong-pw-4711") {
		t.Errorf("the output shows the password:\n%s", out)
	}
}

// TestTailUnreachableBrokerExits: `kanal tail` against a broker that is not
// there exits 1 within seconds naming it (it used to wait for --timeout and exit
// 0 with no output).
func TestTailUnreachableBrokerExits(t *testing.T) {
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	began := time.Now()
	out, code := kanalExit(t, nil, "tail", "--brokers", dead, "--tables", "shop.*", "--timeout", "60s")
	took := time.Since(began)
	t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, dead) || !strings.Contains(out, "unreachable") {
		t.Fatalf("exit %d, want 1 naming %s as unreachable:\n%s", code, dead, out)
	}
	if took > 30*time.Second {
		t.Errorf("took %v to notice", took)
	}
}

// TestTailSkipsCanalDDL: a topic written by Canal itself (no headers, null key)
// with a DDL message before its row messages: tail prints the row changes and
// says on stderr that it skipped the DDL, instead of a decode error.
func TestTailSkipsCanalDDL(t *testing.T) {
	k := testenv.Kafka(t)
	cl := k.Client(t)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "kanal.shop.users"); err != nil {
		t.Fatal(err)
	}
	ddl := `{"data":null,"database":"shop","es":1700000000000,"id":1,"isDdl":true,"mysqlType":null,"old":null,"pkNames":null,` +
		`"sql":"ALTER TABLE users ADD COLUMN nick VARCHAR(20)","sqlType":null,"table":"users","ts":1700000000001,"type":"ALTER"}`
	rows := `{"data":[{"id":"1","nick":"a"},{"id":"2","nick":"b"}],"database":"shop","es":1700000000000,"id":2,"isDdl":false,` +
		`"mysqlType":{"id":"int(11)","nick":"varchar(20)"},"old":null,"pkNames":["id"],"sql":"","sqlType":{"id":4,"nick":12},` +
		`"table":"users","ts":1700000000002,"type":"INSERT"}`
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: "kanal.shop.users", Value: []byte(ddl)}, &kgo.Record{Topic: "kanal.shop.users", Value: []byte(rows)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kanalBin, "tail", "--brokers", k.Brokers[0], "--tables", "shop.users", "--from-beginning", "--max", "2", "--timeout", "60s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kanal tail: %v\n%s", err, stderr.String())
	}
	var lines []string
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || !strings.Contains(lines[0], `"nick":"a"`) || !strings.Contains(lines[1], `"nick":"b"`) {
		t.Errorf("stdout:\n%s\nwant the two rows", out)
	}
	if !strings.Contains(stderr.String(), "skipped Canal ALTER message for shop.users: ALTER TABLE users") || strings.Contains(stderr.String(), "decode") {
		t.Errorf("stderr does not say the DDL was skipped:\n%s", stderr.String())
	}
}

// TestDevKafkaAutoCreatesTopics: `kanal dev-kafka` creates a topic a client
// produces to with --default-partitions partitions, as its help says.
func TestDevKafkaAutoCreatesTopics(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	c := startKanal(t, nil, "dev-kafka", "--listen", addr, "--default-partitions", "4")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.output(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("dev-kafka did not start:\n%s", c.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "auto.created", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce to a new topic: %v", err)
	}
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "auto.created")
	if err != nil {
		t.Fatal(err)
	}
	if td, ok := topics["auto.created"]; !ok || len(td.Partitions) != 4 {
		t.Fatalf("topic auto.created: %+v, want 4 partitions", topics["auto.created"])
	}
}
