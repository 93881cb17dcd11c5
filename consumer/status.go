package consumer

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// instanceName names this process in status records: host name and process id.
func instanceName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "kanal"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// publishStatus writes one status record per group of the Runner (its
// handlers and halted partitions) to "<prefix>._status" every StatusInterval
// until ctx ends, then the records' tombstones: `kanal status` reads them.
func (r *Runner) publishStatus(ctx context.Context) {
	topic := schemas.StatusTopic(r.cfg.Kafka.TopicPrefix)
	// Records not delivered in time are dropped (see kafkaconn.ProduceWait).
	cl, err := kgo.NewClient(append(r.clientOptions("kanal-consumer-status"),
		kgo.RecordDeliveryTimeout(max(2*r.cfg.StatusInterval, 2*time.Second)), kgo.DisableIdempotentWrite())...)
	if err != nil {
		r.log.Warn("status records not published", "err", err)
		return
	}
	defer cl.Close()
	instance := instanceName()
	key := func(g *group) []byte { return []byte(schemas.StatusKey(schemas.StatusConsumer, g.name, instance)) }
	t := time.NewTicker(r.cfg.StatusInterval)
	defer t.Stop()
	created := false
	for {
		if !created {
			created = kafkaconn.EnsureCompactedTopic(ctx, cl, topic, -1) == nil
		}
		if created {
			recs := make([]*kgo.Record, 0, len(r.groups))
			for _, g := range r.groups {
				recs = append(recs, &kgo.Record{Topic: topic, Key: key(g), Value: r.statusRecord(g, instance).Marshal()})
			}
			pctx, cancel := context.WithTimeout(ctx, r.cfg.StatusInterval)
			if err := kafkaconn.ProduceWait(pctx, cl, recs...); err != nil && ctx.Err() == nil {
				r.log.Debug("status records not written", "topic", topic, "err", err)
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			if created {
				tctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var tombs []*kgo.Record
				for _, g := range r.groups {
					tombs = append(tombs, &kgo.Record{Topic: topic, Key: key(g)})
				}
				_ = kafkaconn.ProduceWait(tctx, cl, tombs...)
				cancel()
			}
			return
		case <-t.C:
		}
	}
}

func (r *Runner) statusRecord(g *group, instance string) *schemas.StatusRecord {
	cs := &schemas.ConsumerStatus{}
	for _, rt := range g.routes {
		cs.Handlers = append(cs.Handlers, rt.name)
	}
	for _, h := range r.Health().Halted {
		if h.Group != g.name {
			continue
		}
		cs.Halted = append(cs.Halted, schemas.StatusHalted{Handler: h.Handler, Topic: h.Topic, Partition: h.Partition,
			Offset: h.Offset, Table: h.Table, Key: h.Key, Error: h.Error, SinceMs: h.Since.UnixMilli()})
	}
	rec := &schemas.StatusRecord{Kind: schemas.StatusConsumer, Name: g.name, Instance: instance,
		TsMs: time.Now().UnixMilli(), IntervalMs: r.cfg.StatusInterval.Milliseconds(), Consumer: cs}
	if r.cfg.MetricsAddr != "" {
		rec.AdminAddr = r.cfg.MetricsAddr
	}
	return rec
}
