package producer_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
)

// runUntilError runs a producer that must stop on its own with a server
// configuration error, and returns the error's text.
func runUntilError(t *testing.T, cfg producer.Config) string {
	t.Helper()
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, producer.ErrServerConfig) {
		t.Fatalf("Run: %v, want a server configuration error", err)
	}
	if strings.Contains(err.Error(), cfg.Source.Password) {
		t.Errorf("the error shows the password: %v", err)
	}
	return err.Error()
}

// TestServerSettingsChecked: each binlog setting kanal cannot work with stops the
// producer at start with what is set, what kanal needs and the fix.
func TestServerSettingsChecked(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	good := map[string]string{"binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
	for _, tc := range []struct{ name, value, need, fix string }{
		{"binlog_format", "STATEMENT", "kanal needs ROW", "SET GLOBAL binlog_format = 'ROW'"},
		{"binlog_format", "MIXED", "kanal needs ROW", "my.cnf [mysqld]: binlog_format = ROW"},
		{"binlog_row_image", "MINIMAL", "kanal needs FULL", "SET GLOBAL binlog_row_image = 'FULL'"},
		{"binlog_row_image", "NOBLOB", "kanal needs FULL", "my.cnf [mysqld]: binlog_row_image = FULL"},
		{"binlog_row_metadata", "MINIMAL", "kanal needs FULL", "SET GLOBAL binlog_row_metadata = 'FULL'"},
		{"binlog_row_metadata", "NO_LOG", "kanal needs FULL", "my.cnf [mysqld]: binlog_row_metadata = FULL"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			m.Exec(t, "SET GLOBAL "+tc.name+" = '"+tc.value+"'")
			defer m.Exec(t, "SET GLOBAL "+tc.name+" = '"+good[tc.name]+"'")
			msg := runUntilError(t, cdctest.ProducerConfig(m, k, "settings"))
			for _, want := range []string{tc.name + "=" + tc.value, tc.need, tc.fix} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q: %s", want, msg)
				}
			}
		})
	}
	// Restored: the same producer runs.
	r := cdctest.StartProducer(t, cdctest.ProducerConfig(m, k, "settings"))
	r.CaughtUp(t, m.DB())

	t.Run("log_bin=OFF", func(t *testing.T) {
		off := testenv.MariaDB(t, testenv.WithArgs("--skip-log-bin"))
		msg := runUntilError(t, cdctest.ProducerConfig(off, k, "nobinlog"))
		for _, want := range []string{"log_bin=0", "kanal needs ON", "log_bin = binlog"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q: %s", want, msg)
			}
		}
	})
}

// TestSourcePrivileges: a user without REPLICATION SLAVE or without REPLICATION
// CLIENT (MariaDB: BINLOG MONITOR) is refused at start with the GRANT that fixes
// it; a user with both and nothing else (no SELECT: kanal reads no table) works.
func TestSourcePrivileges(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	for _, u := range []struct{ name, grant string }{
		{"noslave", "BINLOG MONITOR"},
		{"noclient", "REPLICATION SLAVE"},
		{"minimal", "REPLICATION SLAVE, BINLOG MONITOR"},
	} {
		m.Exec(t, "CREATE USER '"+u.name+"'@'%' IDENTIFIED BY 'Pw-"+u.name+"-9'")
		m.Exec(t, "GRANT "+u.grant+" ON *.* TO '"+u.name+"'@'%'")
	}
	as := func(user string) producer.Config {
		cfg := cdctest.ProducerConfig(m, k, user)
		cfg.Source.User, cfg.Source.Password = user, "Pw-"+user+"-9"
		cfg.Kafka.TopicPrefix = user
		return cfg
	}
	msg := runUntilError(t, as("noslave"))
	for _, want := range []string{"lacks REPLICATION SLAVE", "GRANT REPLICATION SLAVE ON *.* TO 'noslave'@'%'"} {
		if !strings.Contains(msg, want) {
			t.Errorf("noslave: error lacks %q: %s", want, msg)
		}
	}
	msg = runUntilError(t, as("noclient"))
	for _, want := range []string{"lacks REPLICATION CLIENT", "GRANT BINLOG MONITOR ON *.* TO 'noclient'@'%'"} {
		if !strings.Contains(msg, want) {
			t.Errorf("noclient: error lacks %q: %s", want, msg)
		}
	}
	m.Exec(t, "CREATE DATABASE pv")
	m.Exec(t, "CREATE TABLE pv.t (id INT PRIMARY KEY, s VARCHAR(10))")
	m.Exec(t, "INSERT INTO pv.t VALUES (1, 'a'), (2, 'b')")
	cfg := as("minimal")
	cfg.Tables.Include = []string{"pv.*"}
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())
	if recs := cdctest.ReadAll(t, k.Brokers, `^minimal\.pv\.t$`, time.Minute); len(recs) != 2 {
		t.Errorf("%d records, want 2", len(recs))
	}
}

// TestSessionSettingsRefused: binlog_format and binlog_row_image are session
// variables too, so a client can log statements or partial row images after
// kanal checked the global values; the producer stops at such an event, naming
// the position, instead of losing the change or writing half a row.
func TestSessionSettingsRefused(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE ss")
	m.Exec(t, "CREATE TABLE ss.t (id INT PRIMARY KEY, a VARCHAR(10), b VARCHAR(10))")
	m.Exec(t, "INSERT INTO ss.t VALUES (1, 'a', 'b')")
	session := func(t *testing.T, set, stmt string) {
		conn, err := m.DB().Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, q := range []string{set, stmt} {
			if _, err := conn.ExecContext(context.Background(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	for i, tc := range []struct{ set, stmt, want string }{
		{"SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE ss.t SET a = 'x' WHERE id = 1", "binlog_row_image"},
		{"SET SESSION binlog_format = 'STATEMENT'", "INSERT INTO ss.t VALUES (2, 'c', 'd')", "logged as a statement"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			cfg := cdctest.ProducerConfig(m, k, "session"+string(rune('a'+i)))
			cfg.Kafka.TopicPrefix = cfg.Source.Name
			cfg.Tables.Include = []string{"ss.*"}
			cfg.Source.Start = "current"
			r := cdctest.StartProducer(t, cfg)
			waitStarted(t, r, m.DB())
			session(t, tc.set, tc.stmt)
			err := r.Wait(t, time.Minute)
			if !errors.Is(err, producer.ErrServerConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("producer stopped with %v, want a server configuration error about %s", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// waitStarted waits until r has committed a position (it is reading the binlog).
func waitStarted(t *testing.T, r *cdctest.Producer, db *sql.DB) {
	t.Helper()
	r.CaughtUp(t, db)
}
