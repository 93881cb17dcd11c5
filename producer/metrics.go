package producer

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-cdc/kanal/schemas"
)

// metrics are the producer's Prometheus collectors, on the producer's own
// registry (never the global default one). Counters read Stats when scraped;
// gauges read Progress. Other parts of the producer register theirs on
// Producer.Metrics() the same way. Every series carries the label source.
type metrics struct {
	reg           *prometheus.Registry
	commitSeconds prometheus.Histogram
}

func newMetrics(p *Producer) (*metrics, error) {
	labels := prometheus.Labels{"source": p.cfg.Source.Name}
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kanal_producer_commit_seconds", Help: "Time one Kafka transaction took to commit (flush and end), during which no binlog event is handled.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v()) })
	}
	s := &p.stats
	for _, c := range []prometheus.Collector{m.commitSeconds,
		counter("kanal_producer_changes_total", "Row changes committed to Kafka by this process.", s.Committed.Load),
		counter("kanal_producer_bytes_total", "Bytes of record keys and values committed to Kafka by this process (position and heartbeat records included).", s.CommittedBytes.Load),
		counter("kanal_producer_kafka_transactions_total", "Kafka transactions committed.", s.Commits.Load),
		counter("kanal_producer_binlog_transactions_total", "Binlog transactions read (of every table, captured or not).", s.Transactions.Load),
		counter("kanal_producer_binlog_bytes_read_total", "Bytes of binlog events read.", p.live.binlogB.Load),
		counter("kanal_producer_heartbeats_total", "Heartbeat records written while the source was idle.", s.Heartbeats.Load),
		counter("kanal_producer_reconnects_total", "Reconnects after a transient error, each resuming from the last committed position.", s.Restarts.Load),
		counter("kanal_producer_invalid_text_total", "Text values whose bytes were not valid in their column's character set: the invalid sequences became U+FFFD and the record names the column in its kanal.invalid_text header.", s.InvalidText.Load),
		counter("kanal_producer_oversize_skipped_total", "Changes too large for Kafka that were replaced by an oversize marker (kafka.oversize_policy: skip).", s.OversizeSkipped.Load),
		&progressCollector{p: p, labels: labels},
		newSnapshotCollector(p, labels),
	} {
		// The registry is new and the names are distinct: an error here is a
		// bug of this file, returned rather than panicking.
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("producer metrics: %w", err)
		}
	}
	return m, nil
}

// committed records a successful Kafka commit of pos that took d and carried
// the given bytes.
func (p *Producer) committed(pos schemas.Position, d time.Duration, bytes int) {
	p.live.committedAt(pos)
	p.stats.CommittedBytes.Add(uint64(bytes))
	p.metrics.commitSeconds.Observe(d.Seconds())
}

// progressCollector exposes Progress as gauges.
type progressCollector struct {
	p      *Producer
	labels prometheus.Labels
}

func (c *progressCollector) desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, nil, c.labels)
}

var progressDescs = []struct{ name, help string }{
	{"kanal_producer_streaming", "1 while a binlog connection is open and read."},
	{"kanal_producer_committed_file_number", "Number of the binlog file (its numeric extension) of the last committed position."},
	{"kanal_producer_committed_position_bytes", "Offset in its binlog file of the last committed position."},
	{"kanal_producer_committed_seq", "Change sequence number (kanal.seq) of the last committed change."},
	{"kanal_producer_source_lag_seconds", "Now minus the source time up to which the binlog has been read (the last event's timestamp, or the last time the producer knew it had read everything)."},
	{"kanal_producer_binlog_bytes_behind", "Binlog the server had written beyond the read position at the last poll (admin.poll_interval)."},
	{"kanal_binlog_files", "Binlog files on the server at the last poll."},
	{"kanal_binlog_retention_margin_files", "Binlog files on the server older than the one holding the committed position (-1: that file is gone)."},
	{"kanal_binlog_retention_margin_bytes", "Size of the binlog files older than the one holding the committed position (-1: that file is gone)."},
}

func (c *progressCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range progressDescs {
		ch <- c.desc(d.name, d.help)
	}
}

func (c *progressCollector) Collect(ch chan<- prometheus.Metric) {
	pr := c.p.Progress()
	now := time.Now()
	emit := func(i int, v float64) {
		ch <- prometheus.MustNewConstMetric(c.desc(progressDescs[i].name, progressDescs[i].help), prometheus.GaugeValue, v)
	}
	streaming := 0.0
	if pr.Streaming {
		streaming = 1
	}
	emit(0, streaming)
	if pr.Committed != nil {
		if n, ok := binlogFileNumber(pr.Committed.File); ok {
			emit(1, float64(n))
		}
		emit(2, float64(pr.Committed.Pos))
		emit(3, float64(pr.Committed.Seq))
	}
	if lag, ok := pr.Lag(now); ok {
		emit(4, lag.Seconds())
	}
	if pr.PolledAt.IsZero() {
		return
	}
	if pr.BytesBehind >= 0 {
		emit(5, float64(pr.BytesBehind))
	}
	emit(6, float64(pr.Binlogs))
	emit(7, float64(pr.RetentionMarginFiles))
	emit(8, float64(pr.RetentionMarginBytes))
}

// binlogFileNumber returns the numeric extension of a binlog file name
// ("mysql-bin.000042" → 42).
func binlogFileNumber(file string) (uint64, bool) {
	i := strings.LastIndexByte(file, '.')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(file[i+1:], 10, 64)
	return n, err == nil
}
