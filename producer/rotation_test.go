package producer_test

import (
	"fmt"
	"testing"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestCommitAfterRotation: a binlog transaction followed by a rotation (FLUSH
// BINARY LOGS) and then nothing is committed without waiting for the source's
// next transaction.
func TestCommitAfterRotation(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.r (id INT PRIMARY KEY)")
	cfg := cdctest.ProducerConfig(m, k, "rot")
	p := cdctest.StartProducer(t, cfg)
	m.Exec(t, "INSERT INTO wl.r VALUES (1)")
	p.CaughtUp(t, m.DB())
	p.Stop(t)
	// Written while the producer is stopped, the transactions and the
	// rotations after them arrive in one burst when it resumes.
	for i := 2; i <= 3; i++ {
		m.Exec(t, fmt.Sprintf("INSERT INTO wl.r VALUES (%d)", i))
		m.Exec(t, "FLUSH BINARY LOGS")
	}
	p = cdctest.StartProducer(t, cfg)
	p.CaughtUp(t, m.DB())
	if n := p.P.Stats().Committed.Load(); n != 2 {
		t.Errorf("%d changes committed after the resume, want 2", n)
	}
}
