package consumer

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Runner's Prometheus collectors, registered on the Runner's own
// registry (never the global default one) or the one of WithPrometheusRegistry.
type metrics struct {
	applied        *prometheus.CounterVec   // handler, table
	applyLatency   *prometheus.HistogramVec // handler
	batchSize      *prometheus.HistogramVec // handler
	lag            *prometheus.GaugeVec     // group, topic, partition
	retries        *prometheus.CounterVec   // handler
	deadLetters    *prometheus.CounterVec   // handler, table, reason
	dlqWriteErrors *prometheus.CounterVec   // group
	halted         *prometheus.GaugeVec     // handler
	commits        *prometheus.CounterVec   // group, result
	rebalances     *prometheus.CounterVec   // group, kind
	skipped        *prometheus.CounterVec   // group, reason

	mu        sync.Mutex
	freshness map[string]*freshness // by handler
}

// freshness tracks the newest source time a handler has applied, and the newest
// heartbeat, so that an idle but caught-up pipeline reads as fresh.
type freshness struct {
	lastSourceMs int64
	caughtUp     func() bool
}

func newMetrics() *metrics {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_records_applied_total", Help: "Changes applied by a handler, per table.",
		}, []string{"handler", "table"}),
		applyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kanal_consumer_apply_seconds", Help: "Time one Handle call took.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"handler"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kanal_consumer_batch_records", Help: "Records per Handle call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, []string{"handler"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanal_consumer_lag_records", Help: "Records between the last applied offset and the partition's end.",
		}, []string{"group", "topic", "partition"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_retries_total", Help: "Handle calls retried after a transient error, halted partitions' retries included.",
		}, []string{"handler"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_dead_letters_total", Help: "Records written to the dead-letter topic.",
		}, []string{"handler", "table", "reason"}),
		dlqWriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_dead_letter_write_errors_total", Help: "Failed writes to the dead-letter topic (each halts its partition until a retry succeeds).",
		}, []string{"group"}),
		halted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kanal_consumer_halted_partitions", Help: "Partitions stopped at a failing record (policy halt, or a failing dead-letter write).",
		}, []string{"handler"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_commits_total", Help: "Offset commits to Kafka, by result.",
		}, []string{"group", "result"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_partitions_changed_total", Help: "Partitions assigned, revoked or lost.",
		}, []string{"group", "kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanal_consumer_records_skipped_total", Help: "Records no handler needs (DDL messages; redriven records for a handler the group no longer has).",
		}, []string{"group", "reason"}),
		freshness: map[string]*freshness{},
	}
	return m
}

// register registers the collectors and fresh (the freshness gauge) on reg,
// all or none: on an error (a registry that already holds metrics of these
// names, such as another Runner's) what was registered is unregistered again,
// so that the registry is as it was.
func (m *metrics) register(reg prometheus.Registerer, fresh prometheus.Collector) error {
	cs := []prometheus.Collector{m.applied, m.applyLatency, m.batchSize, m.lag, m.retries, m.deadLetters, m.dlqWriteErrors,
		m.halted, m.commits, m.rebalances, m.skipped, fresh}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// heartbeatGauge exposes the newest heartbeat and the freshness per handler.
type freshnessCollector struct {
	m         *metrics
	heartbeat func() (tsMs int64, ok bool)
	desc      *prometheus.Desc
}

func (c *freshnessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reports now − the source time of the newest applied change, or, when
// the handler has applied everything up to the end of its partitions, now − the
// producer time of the newest heartbeat (the source was checked then and had
// nothing newer).
func (c *freshnessCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now().UnixMilli()
	hb, hbOK := c.heartbeat()
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for name, f := range c.m.freshness {
		ts := f.lastSourceMs
		if hbOK && hb > ts && f.caughtUp() {
			ts = hb
		}
		if ts == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(now-ts)/1000, name)
	}
}

func (m *metrics) observeSource(handler string, tsMs int64) {
	m.mu.Lock()
	if f := m.freshness[handler]; f != nil && tsMs > f.lastSourceMs {
		f.lastSourceMs = tsMs
	}
	m.mu.Unlock()
}
