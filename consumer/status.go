package consumer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

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
	// Records not delivered in time are dropped (see produceWait).
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
			created = ensureStatusTopic(ctx, cl, topic) == nil
		}
		if created {
			recs := make([]*kgo.Record, 0, len(r.groups))
			for _, g := range r.groups {
				recs = append(recs, &kgo.Record{Topic: topic, Key: key(g), Value: r.statusRecord(g, instance).Marshal()})
			}
			pctx, cancel := context.WithTimeout(ctx, r.cfg.StatusInterval)
			if err := produceWait(pctx, cl, recs...); err != nil && ctx.Err() == nil {
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
				_ = produceWait(tctx, cl, tombs...)
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

// ensureStatusTopic creates the compacted status topic if it is missing.
func ensureStatusTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	compact := "compact"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	return nil
}

// produceWait produces recs and waits for them until ctx ends. Unlike
// ProduceSync it gives up then: franz-go keeps retrying records it cannot
// deliver (an unreachable broker), and a stop must not wait for that.
func produceWait(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	done := make(chan error, len(recs))
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	}
	var first error
	for range recs {
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}
