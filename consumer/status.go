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
	cl, err := kgo.NewClient(r.clientOptions("kanal-consumer-status")...)
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
			if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
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
				_ = cl.ProduceSync(tctx, tombs...).FirstErr()
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
