package producer_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
)

// waitExit waits up to d for the producer to return on its own.
func waitExit(t *testing.T, r *running, d time.Duration, what string) (error, time.Duration) {
	t.Helper()
	began := time.Now()
	select {
	case <-r.done:
	case <-time.After(d):
		t.Fatalf("%s: the producer still retries after %v; it must stop", what, d)
	}
	return r.err, time.Since(began)
}

// TestAccessDeniedIsPermanent: a wrong password, a user without REPLICATION
// SLAVE and wrong Kafka SASL credentials stop the producer at once with the
// server's message, instead of retrying forever.
func TestAccessDeniedIsPermanent(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	sasl := saslRefusingBroker(t)
	m.Exec(t, "CREATE USER 'noslave'@'%' IDENTIFIED BY 'noslave-pw'")
	m.Exec(t, "GRANT SELECT, BINLOG MONITOR ON *.* TO 'noslave'@'%'")

	wrongPW := cdctest.ProducerConfig(m, k, "access-pw")
	wrongPW.Source.Password = "not-the-password-123"
	noSlave := cdctest.ProducerConfig(m, k, "access-grant")
	noSlave.Source.User, noSlave.Source.Password = "noslave", "noslave-pw"
	wrongSASL := cdctest.ProducerConfig(m, k, "access-sasl")
	wrongSASL.Kafka.Brokers = []string{sasl}
	wrongSASL.Kafka.SASL = &kafkaconn.SASLConfig{Mechanism: "PLAIN", User: "kanal", Password: "wrong-secret-456"}
	for _, tc := range []struct {
		name    string
		cfg     producer.Config
		secret  string
		want    error
		message []string // the server's words
	}{
		{"wrong password", wrongPW, wrongPW.Source.Password, producer.ErrAccess, []string{"1045", "Access denied for user 'kanal'"}},
		// The grants are checked before the binlog is read (the refusal of the
		// replica registration, MariaDB's error 1045, is ErrAccess too).
		{"no REPLICATION SLAVE", noSlave, "noslave-pw", producer.ErrServerConfig, []string{"noslave", "REPLICATION SLAVE", "GRANT"}},
		{"wrong SASL password", wrongSASL, "wrong-secret-456", producer.ErrAccess, []string{"kafka " + sasl, "SASL_AUTHENTICATION_FAILED", "Invalid username or password"}},
	} {
		r := runProducer(t, tc.cfg, cdctest.Logger(t))
		err, took := waitExit(t, r, 30*time.Second, tc.name)
		t.Logf("%s: stopped after %v: %v", tc.name, took.Round(time.Millisecond), err)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			continue
		}
		for _, s := range tc.message {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, s)
			}
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: error shows the password: %v", tc.name, err)
		}
	}
}

// TestUnreachableRetriesThenGivesUp: an unreachable source or broker is retried
// with backoff, every log line naming what is unreachable and for how long; with
// source.max_retry_duration the producer then stops with an error saying so.
func TestUnreachableRetriesThenGivesUp(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	deadPort := testenv.FreePort(t)
	dead := "127.0.0.1:" + strconv.Itoa(deadPort)
	noSource := cdctest.ProducerConfig(m, k, "gone-source")
	noSource.Source.Addr = dead
	noBroker := cdctest.ProducerConfig(m, k, "gone-broker")
	noBroker.Kafka.Brokers = []string{dead}
	for _, tc := range []struct {
		name   string
		cfg    producer.Config
		server string
	}{
		{"source", noSource, "source " + dead},
		{"broker", noBroker, "kafka " + dead},
	} {
		tc.cfg.Source.MaxRetryDuration = 3 * time.Second
		log, logs := newLogCapture(t)
		r := runProducer(t, tc.cfg, log)
		err, took := waitExit(t, r, 60*time.Second, tc.name)
		t.Logf("%s unreachable: gave up after %v: %v", tc.name, took.Round(time.Millisecond), err)
		if !errors.Is(err, producer.ErrGaveUp) || !strings.Contains(err.Error(), tc.server) || !strings.Contains(err.Error(), "max_retry_duration") {
			t.Errorf("%s: got %v, want ErrGaveUp naming %s and max_retry_duration", tc.name, err, tc.server)
		}
		if took < 3*time.Second {
			t.Errorf("%s: gave up after %v, before max_retry_duration", tc.name, took)
		}
		lines := logs.lines("level=WARN", "retrying")
		if len(lines) < 2 {
			t.Fatalf("%s: %d retry lines, want several:\n%s", tc.name, len(lines), logs)
		}
		for _, l := range lines {
			if !strings.Contains(l, tc.server+" unreachable for ") || !strings.Contains(l, "down_for=") {
				t.Errorf("%s: retry line does not say what is unreachable and for how long: %s", tc.name, l)
			}
		}
	}
}

// TestSASLAgainstPlainBroker: SASL configured against a listener without SASL
// says what failed within seconds (the connection is closed at once), naming the
// broker and the SASL setting.
func TestSASLAgainstPlainBroker(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "sasl-plain")
	cfg.Kafka.SASL = &kafkaconn.SASLConfig{Mechanism: "SCRAM-SHA-256", User: "kanal", Password: "pw-789"}
	log, logs := newLogCapture(t)
	runProducer(t, cfg, log)
	began := time.Now()
	for len(logs.lines("level=WARN", "kafka "+k.Brokers[0], "kafka.sasl (SCRAM-SHA-256) is set")) == 0 {
		if time.Since(began) > 15*time.Second {
			t.Fatalf("no warning naming the broker and the SASL setting within 15s:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("said what failed after %v: %s", time.Since(began).Round(time.Millisecond), logs.lines("level=WARN")[0])
	if strings.Contains(logs.String(), "pw-789") {
		t.Error("a log line shows the SASL password")
	}
}

// TestBrokerOutageIsLogged: while the broker is down under a running producer,
// the producer says so (a warning per backoff step, naming the broker and how
// long it has been down) instead of waiting silently in the client's retries;
// when the broker is back it resumes and says so.
func TestBrokerOutageIsLogged(t *testing.T) {
	m := testenv.MariaDB(t)
	dataDir := t.TempDir()
	port := testenv.FreePort(t)
	k := testenv.Kafka(t, kfake.DataDir(dataDir), kfake.Ports(port))
	cfg := cdctest.ProducerConfig(m, k, "outage")
	cfg.Tables.Include = []string{"outage.*"}
	cfg.Kafka.TransactionTimeout = 10 * time.Second
	m.Exec(t, "CREATE DATABASE outage")
	m.Exec(t, "CREATE TABLE outage.t (id INT PRIMARY KEY)")
	log, logs := newLogCapture(t)
	r := runProducer(t, cfg, log)
	m.Exec(t, "INSERT INTO outage.t VALUES (1)")
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, cfg.Source.Name, r.alive)

	k.Cluster.Close()
	down := time.Now()
	m.Exec(t, "INSERT INTO outage.t VALUES (2)")
	broker := "kafka broker 127.0.0.1:" + strconv.Itoa(port) + " unreachable for "
	for len(logs.lines("level=WARN", broker)) < 3 {
		if time.Since(down) > 60*time.Second {
			t.Fatalf("fewer than 3 warnings about the broker in 60s of outage:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	warned := logs.lines("level=WARN", broker)
	t.Logf("broker down: first warning after %v, %d warnings in %v", firstTime(t, warned[0]).Sub(down).Round(time.Millisecond),
		len(warned), time.Since(down).Round(time.Millisecond))
	k = testenv.Kafka(t, kfake.DataDir(dataDir), kfake.Ports(port))
	back := time.Now()
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, cfg.Source.Name, r.alive)
	t.Logf("broker back: caught up %v later", time.Since(back).Round(time.Millisecond))
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.outage\.t$`, time.Minute)
	cdctest.CheckExactlyOnce(t, recs)
	if len(recs) != 2 {
		t.Errorf("%d records, want 2", len(recs))
	}
}

// firstTime parses the time= of a text log line.
func firstTime(t *testing.T, line string) time.Time {
	t.Helper()
	_, rest, _ := strings.Cut(line, "time=")
	ts, _, _ := strings.Cut(rest, " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("log line without a time: %s", line)
	}
	return at
}

// TestIncludeMatchingNoTableWarns: a tables.include pattern that matches no
// table on the source is named in a warning at start.
func TestIncludeMatchingNoTableWarns(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, "CREATE TABLE shop.users (id INT PRIMARY KEY)")
	cfg := cdctest.ProducerConfig(m, k, "include")
	cfg.Tables.Include = []string{"shop.*", "shop.user", "Shop.users"}
	log, logs := newLogCapture(t)
	r := runProducer(t, cfg, log)
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, cfg.Source.Name, r.alive)
	for _, p := range []string{`"shop.user"`, `"Shop.users"`} {
		if l := logs.lines("level=WARN", "tables.include pattern "+strings.ReplaceAll(p, `"`, `\"`)); len(l) != 1 {
			t.Errorf("want one warning naming %s, got %q", p, l)
		}
	}
	if l := logs.lines("level=WARN", `tables.include pattern \"shop.*\"`); len(l) != 0 {
		t.Errorf("warning for a pattern that matches: %q", l)
	}
}
