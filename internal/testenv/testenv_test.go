package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// requireGone fails unless pid no longer exists; the child is reaped by the
// time Kill/Stop/cleanup return, so there is nothing to wait for.
func requireGone(t *testing.T, what string, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("%s: no pid recorded", what)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("%s: pid %d still exists after stop (kill -0: %v)", what, pid, err)
	}
}

func TestMariaDB(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("server", func(t *testing.T) {
		m := MariaDB(t, WithServerID(7))
		pid = m.Pid()

		var one int
		if err := m.DB().QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
		for name, want := range map[string]string{
			"binlog_row_metadata": "FULL",
			"binlog_format":       "ROW",
			"binlog_row_image":    "FULL",
			"log_bin":             "ON",
			"server_id":           "7",
		} {
			var got string
			if err := m.DB().QueryRow("SHOW VARIABLES LIKE ?", name).Scan(new(string), &got); err != nil {
				t.Fatalf("SHOW VARIABLES LIKE %s: %v", name, err)
			}
			if got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}

		// The kanal account is what CDC code uses: it must be able to read
		// binlog coordinates and write through the DSN's options.
		db, err := sql.Open("mysql", m.DSN(""))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10))"); err != nil {
			t.Fatalf("multi-statement as %s: %v", m.User, err)
		}
		if _, err := db.Exec("INSERT INTO shop.t VALUES (?, ?)", 1, "a"); err != nil {
			t.Fatal(err)
		}
		var file string
		var pos int64
		var doDB, ignoreDB sql.NullString
		if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
			t.Fatalf("SHOW MASTER STATUS as %s: %v", m.User, err)
		}
		if file == "" || pos <= 4 {
			t.Errorf("binlog position %s:%d, want a written binlog", file, pos)
		}

		// A crash and restart keeps committed rows and the port.
		m.Kill()
		requireGone(t, "MariaDB after Kill", pid)
		m.Restart(t)
		if m.Pid() == pid {
			t.Fatalf("Restart kept pid %d", pid)
		}
		pid = m.Pid()
		var v string
		if err := db.QueryRow("SELECT v FROM shop.t WHERE id = 1").Scan(&v); err != nil || v != "a" {
			t.Fatalf("row after restart = %q, %v", v, err)
		}
		m.Exec(t, "INSERT INTO shop.t VALUES (2, 'b')")
	})
	if pid == 0 {
		return // skipped or failed before the server started
	}
	requireGone(t, "MariaDB after cleanup", pid)
}

func TestRedis(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("server", func(t *testing.T) {
		r := Redis(t)
		pid = r.Pid()
		rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
		defer rdb.Close()
		ctx := t.Context()
		if got, err := rdb.Ping(ctx).Result(); err != nil || got != "PONG" {
			t.Fatalf("PING = %q, %v", got, err)
		}
		if err := rdb.HSet(ctx, "user:1", "name", "ann").Err(); err != nil {
			t.Fatal(err)
		}
		r.Kill()
		requireGone(t, "Redis after Kill", pid)
	})
	if pid == 0 {
		return // skipped or failed before the server started
	}
	requireGone(t, "Redis after cleanup", pid)
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("server", func(t *testing.T) {
		pg := Postgres(t)
		pid = pg.Pid()
		ctx := t.Context()
		conn, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		// Left open on purpose: cleanup must not wait for clients.
		var db string
		var n int
		if err := conn.QueryRow(ctx, "SELECT current_database(), $1::int + 1", 41).Scan(&db, &n); err != nil {
			t.Fatal(err)
		}
		if db != PostgresDatabase || n != 42 {
			t.Fatalf("got %s, %d", db, n)
		}
	})
	if pid == 0 {
		return // skipped or failed before the server started
	}
	requireGone(t, "Postgres after cleanup", pid)
}

func TestKafka(t *testing.T) {
	t.Parallel()
	var broker string
	t.Run("cluster", func(t *testing.T) {
		k := Kafka(t)
		if len(k.Brokers) != 1 {
			t.Fatalf("brokers = %v, want one", k.Brokers)
		}
		broker = k.Brokers[0]
		kafkaRoundTrip(t, k)
	})
	if broker == "" {
		return
	}
	if c, err := net.DialTimeout("tcp", broker, time.Second); err == nil {
		c.Close()
		t.Fatalf("broker %s still accepts connections after cleanup", broker)
	}
}

func kafkaRoundTrip(t *testing.T, k *KafkaCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const topic = "kanal.shop.users"
	adm := kadm.NewClient(k.Client(t))
	if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic); err != nil {
		t.Fatal(err)
	}

	// Transactional, as the producer writes; read back read_committed.
	prod := k.Client(t, kgo.TransactionalID("testenv"), kgo.DefaultProduceTopic(topic))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Key: []byte("shop.users:" + strconv.Itoa(i)), Value: []byte(`{"op":"c"}`)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	cons := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(seen), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = true })
	}
}

// fatalTB records the first Fatal instead of failing the real test, so a
// start failure can be inspected.
type fatalTB struct {
	*testing.T
	msg string
}

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...); runtime.Goexit() }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMariaDBStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	skipShort(t, "MariaDB")
	ftb := &fatalTB{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		MariaDB(ftb, WithArgs("--kanal-no-such-option"))
	}()
	<-done
	t.Logf("start failure message:\n%s", ftb.msg)
	for _, want := range []string{"mariadbd exited before it was ready", "last 30 lines of", "kanal-no-such-option"} {
		if !strings.Contains(ftb.msg, want) {
			t.Errorf("start failure message lacks %q:\n%s", want, ftb.msg)
		}
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d not free: %v", port, err)
	}
	l.Close()
}

func TestRequireBinary(t *testing.T) {
	if p := RequireBinary(t, "sh"); p == "" {
		t.Fatal("sh not found")
	}
	if _, ok := lookBinary("kanal-no-such-binary"); ok {
		t.Fatal("found a binary that does not exist")
	}
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("server", func(t *testing.T) {
		m := Memcached(t)
		pid = m.Pid()
		conn, err := net.DialTimeout("tcp", m.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("set k 0 0 1\r\nv\r\nget k\r\n")); err != nil {
			t.Fatal(err)
		}
		want := "STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != want {
			t.Fatalf("set/get: got %q, %v", got, err)
		}
		m.Kill()
		requireGone(t, "memcached after Kill", pid)
	})
	if pid == 0 {
		return
	}
	requireGone(t, "memcached after cleanup", pid)
}

func TestRabbitMQ(t *testing.T) {
	t.Parallel()
	var pid int
	t.Run("server", func(t *testing.T) {
		r := RabbitMQ(t)
		pid = r.Pid()
		publish := func(body string) {
			t.Helper()
			conn, err := amqp.Dial(r.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ch.QueueDeclare("q", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			if err := ch.PublishWithContext(t.Context(), "", "q", false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)}); err != nil {
				t.Fatal(err)
			}
		}
		publish("before")
		// A durable queue's persistent messages survive a restart on the same port.
		r.Stop()
		requireGone(t, "RabbitMQ after Stop", pid)
		r.Restart()
		pid = r.Pid()
		publish("after")
		conn, err := amqp.Dial(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			d, ok, err := ch.Get("q", true)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, string(d.Body))
		}
		if strings.Join(got, ",") != "before,after" {
			t.Fatalf("queue after a restart holds %q, want before,after", got)
		}
		// The private epmd: another node on the machine cannot see ours.
		if !strings.HasPrefix(r.Node, "kanal_") {
			t.Errorf("node name %q", r.Node)
		}
	})
	if pid == 0 {
		return
	}
	requireGone(t, "RabbitMQ after cleanup", pid)
}
