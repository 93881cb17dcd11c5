package producer

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// publishStatus writes this process's status record every
// admin.status_interval until the returned function is called, which writes
// the key's tombstone: `kanal status` then no longer lists the process.
func (l *Leader) publishStatus(ctx context.Context) (stop func()) {
	iv := l.cfg.Admin.StatusInterval
	if iv <= 0 {
		return func() {}
	}
	topic := schemas.StatusTopic(l.cfg.Kafka.TopicPrefix)
	key := []byte(schemas.StatusKey(schemas.StatusProducer, l.cfg.Source.Name, l.instance))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		created := false
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			if !created {
				created = kafkaconn.EnsureCompactedTopic(ctx, l.cl, topic, -1) == nil
			}
			if created {
				rec := &kgo.Record{Topic: topic, Key: key, Value: l.statusRecord().Marshal()}
				pctx, pcancel := context.WithTimeout(ctx, iv)
				if err := kafkaconn.ProduceWait(pctx, l.cl, rec); err != nil && ctx.Err() == nil {
					l.log.Debug("status record not written", "topic", topic, "err", err)
				}
				pcancel()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		tctx, tcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer tcancel()
		_ = kafkaconn.ProduceWait(tctx, l.cl, &kgo.Record{Topic: topic, Key: key})
	}
}

// statusRecord describes this process now.
func (l *Leader) statusRecord() *schemas.StatusRecord {
	now := time.Now()
	pr := l.p.Progress()
	ps := &schemas.ProducerStatus{Role: l.Role(), Streaming: pr.Streaming, LagSeconds: -1, BytesBehind: -1,
		RetentionMarginFiles: -1, RetentionMarginBytes: -1}
	if ps.Role == RoleActive {
		ps.Committed = pr.Committed
		if lag, ok := pr.Lag(now); ok {
			ps.LagSeconds = float64(lag.Milliseconds()) / 1000
		}
		if !pr.PolledAt.IsZero() {
			ps.BytesBehind = pr.BytesBehind
			ps.RetentionMarginFiles, ps.RetentionMarginBytes = pr.RetentionMarginFiles, pr.RetentionMarginBytes
		}
	}
	rec := &schemas.StatusRecord{Kind: schemas.StatusProducer, Name: l.cfg.Source.Name, Instance: l.instance,
		AdminAddr: l.AdminAddr(), TsMs: now.UnixMilli(), IntervalMs: l.cfg.Admin.StatusInterval.Milliseconds(), Producer: ps}
	if l.cfg.HA.Enabled {
		rec.MemberID, _ = l.cl.GroupMetadata()
	}
	return rec
}
