package producer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-cdc/kanal/schemas"
)

// Snapshots returns the producer's backfills as of its last change to them: the
// running and queued ones, then the last finished ones (nil before any). The
// same state is committed with every position, so `kanal snapshot status` shows
// it from Kafka without reaching the producer.
func (p *Producer) Snapshots() *schemas.SnapshotState {
	return p.snapshots.Load().Clone()
}

// publish makes the state visible to Snapshots.
func (sn *snapshotter) publish() {
	if sn.stateful {
		sn.s.p.snapshots.Store(sn.state.Clone())
	}
}

// snapshotLogEvery is how often a running backfill logs its progress.
const snapshotLogEvery = 10 * time.Second

// logProgress logs the running backfill's progress every snapshotLogEvery.
func (sn *snapshotter) logProgress(force bool) {
	if sn.run == nil || len(sn.state.Tables) == 0 {
		return
	}
	now := time.Now()
	if !force && now.Sub(sn.run.lastLog) < snapshotLogEvery {
		return
	}
	job := &sn.state.Tables[0]
	if job.Rows == sn.run.rows0 {
		return // nothing read in this run yet
	}
	sn.run.lastLog = now
	rate := float64(job.Rows-sn.run.rows0) / now.Sub(sn.run.started).Seconds()
	args := []any{"table", job.Table, "id", job.ID, "rows", job.Rows, "skipped", job.Skipped, "rows_per_s", int64(rate)}
	if job.Total >= 0 {
		args = append(args, "total", job.Total)
		if rem := job.Remaining(); rate > 0 && rem > 0 {
			args = append(args, "eta", (time.Duration(float64(rem)/rate) * time.Second).Round(time.Second))
		}
	}
	sn.s.log.Info("backfill progress", args...)
}

// snapshotCollector exports the producer's backfills on Producer.Metrics():
// kanal_snapshot_rows_total{table} (rows emitted by the table's current or last
// backfill) and kanal_snapshot_remaining_rows{table} (estimated rows left).
type snapshotCollector struct {
	p                   *Producer
	rowsDesc, remaining *prometheus.Desc
}

func newSnapshotCollector(p *Producer, labels prometheus.Labels) *snapshotCollector {
	return &snapshotCollector{
		p: p,
		rowsDesc: prometheus.NewDesc("kanal_snapshot_rows_total",
			"Rows emitted as snapshot reads by the table's current or last backfill.", []string{"table"}, labels),
		remaining: prometheus.NewDesc("kanal_snapshot_remaining_rows",
			"Estimated rows the table's queued or running backfill has left to read.", []string{"table"}, labels),
	}
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rowsDesc
	ch <- c.remaining
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.snapshots.Load()
	if st == nil {
		return
	}
	// The newest backfill of each table wins: active ones come after finished.
	latest := map[string]*schemas.Backfill{}
	var order []string
	for _, list := range [][]schemas.Backfill{st.Finished, st.Tables} {
		for i := range list {
			b := &list[i]
			if b.State == schemas.BackfillRefused || b.Table == "" {
				continue
			}
			if _, ok := latest[b.Table]; !ok {
				order = append(order, b.Table)
			}
			if prev := latest[b.Table]; prev == nil || prev.Active() == b.Active() || b.Active() {
				latest[b.Table] = b
			}
		}
	}
	for _, t := range order {
		b := latest[t]
		ch <- prometheus.MustNewConstMetric(c.rowsDesc, prometheus.CounterValue, float64(b.Rows), t)
		ch <- prometheus.MustNewConstMetric(c.remaining, prometheus.GaugeValue, float64(b.Remaining()), t)
	}
}
