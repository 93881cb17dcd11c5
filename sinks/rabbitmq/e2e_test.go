package rabbitmqsink_test

import (
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// endToEnd: a random workload flows MariaDB → producer → Kafka → Runner →
// RabbitMQ → a queue bound to the exchange. The consumer is killed mid-load (no
// commit, group not left) and a new one in the same group resumes from the
// committed offsets, publishing again what the dead one had published. Then:
// every change in Kafka was received at least once; after the documented dedupe
// (per key, drop a message whose kanal.seq is not above the last applied) each
// change is applied exactly once, in per-key order (no change of a key arrives
// after a newer one without having been applied); and the rows the queue's
// consumer builds equal the source tables, TRUNCATEs included (one message per
// partition, each applied as documented: the table's rows older than it go).
//
// The kill is in-process (handler stopped, network cut); cmd/kanal's
// TestConsume*Killed SIGKILLs a real `kanal consume` running the handler.
func endToEnd(t *testing.T, srv *testenv.RabbitMQServer) {
	p := cdctest.NewPipeline(t, "rabbitmq-e2e", 5)
	cfg := config(srv.URL, "wl.*")
	q := bindQueue(t, srv.URL, cfg.Exchange, "wl.*")
	const group = "kanal-rabbitmq"
	first := newHandler(t, cfg)
	r1 := p.StartRunner(first, group, cfg.TablePatterns()...)
	p.Steps(60)
	p.W.Bulk(t, 2000)
	p.W.Truncate(t, "items")
	p.Steps(20)
	r1.WaitBatches(t, 4)
	r1.Kill(t)
	killedAt := first.Stats()
	p.Steps(30)
	p.W.Truncate(t, "pairs")
	p.Steps(30)
	second := newHandler(t, cfg)
	p.StartRunner(second, group, cfg.TablePatterns()...)
	p.Steps(40)
	p.WaitApplied(group)

	recs := cdctest.ReadAll(t, p.K.Brokers, `^kanal\.wl\.`, 30*time.Second)
	changes := cdctest.CheckExactlyOnce(t, recs) // Kafka itself: seqs 1..N
	ch := amqptest.Channel(t, srv.URL)
	m := amqptest.NewModel()
	// Every message is in the queue once the handler returned: confirms come
	// after routing.
	m.Add(t, amqptest.Drain(t, ch, q))
	m.CheckExactlyOnce(t, recs)
	m.CheckWorkloadTables(t, p.M.DB())
	if len(m.Truncates) != 2 {
		t.Errorf("truncate messages of %d truncates received, want 2", len(m.Truncates))
	}
	if m.Received <= changes {
		t.Logf("note: no duplicates this run (%d messages for %d changes)", m.Received, changes)
	}
	t.Logf("%d changes, %d messages received; killed after %+v; the restarted consumer: %+v", changes, m.Received, killedAt, second.Stats())
}
