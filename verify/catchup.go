package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
)

// KafkaCatchUp waits, in three steps, until a handler has applied everything the
// source had written when it is called: the source's current binlog position;
// the producer's committed position reaching it (then every change before it is
// in the table topics); the handler's group reaching, in each partition, the
// offset after the last committed record of that moment (a consumer commits the
// offset after the last record it applied, which stays below the stable end: a
// transaction's commit marker takes an offset of its own). store, when not nil, is where the handler keeps its
// offsets (a consumer.OffsetStore); else they are the group's committed
// offsets in Kafka. poll is how often it looks, limit how long it waits at most.
func KafkaCatchUp(src *producer.SourceReader, k *kafkaconn.Config, source, group string, topics []string,
	store consumer.OffsetStore, poll, limit time.Duration) CatchUp {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		at, err := src.BinlogPosition(ctx)
		if err != nil {
			return err
		}
		for {
			pos, err := producer.ReadPosition(ctx, k, source)
			if err != nil {
				return err
			}
			if producer.PositionReached(pos, at) {
				break
			}
			if err := sleep(ctx, poll); err != nil {
				return fmt.Errorf("the producer of source %s has not committed %s:%d yet (last %v): %w", source, at.File, at.Pos, pos, err)
			}
		}
		want, err := lastDataOffsets(ctx, k, topics)
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(k.ClientOptions()...)
		if err != nil {
			return err
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		parts := map[string][]int32{}
		for t, ps := range want {
			for p := range ps {
				parts[t] = append(parts[t], p)
			}
		}
		for {
			got, err := groupOffsets(ctx, adm, store, group, parts)
			if err != nil {
				return err
			}
			behind := ""
			for t, ps := range want {
				for p, end := range ps {
					if got[t][p] < end {
						behind = fmt.Sprintf("%s/%d at %d of %d", t, p, got[t][p], end)
					}
				}
			}
			if behind == "" {
				return nil
			}
			if err := sleep(ctx, poll); err != nil {
				return fmt.Errorf("group %s has not caught up (%s): %w", group, behind, err)
			}
		}
	}
}

func groupOffsets(ctx context.Context, adm *kadm.Client, store consumer.OffsetStore, group string, parts map[string][]int32) (map[string]map[int32]int64, error) {
	if store != nil {
		return store.LoadOffsets(ctx, group, parts)
	}
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch the offsets of group %s: %w", group, err)
	}
	out := map[string]map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil {
			if out[o.Topic] == nil {
				out[o.Topic] = map[int32]int64{}
			}
			out[o.Topic][o.Partition] = o.At
		}
	})
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// lastDataOffsets returns, per partition of topics, the offset after its last
// committed record below the stable end (partitions without one are left out).
// It reads the last few offsets with read_committed and control records kept,
// going further back while it finds no record.
func lastDataOffsets(ctx context.Context, k *kafkaconn.Config, topics []string) (map[string]map[int32]int64, error) {
	cl, err := kgo.NewClient(k.ClientOptions()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list the end offsets of %v: %w", topics, err)
	}
	if err := ends.Error(); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("list the end offsets of %v: %w", topics, err)
	}
	out := map[string]map[int32]int64{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if ferr != nil || o.Err != nil || o.Offset <= 0 {
			return
		}
		for back := int64(16); ; back *= 16 {
			last, err := lastRecord(ctx, k, o.Topic, o.Partition, max(0, o.Offset-back), o.Offset)
			if err != nil {
				ferr = err
				return
			}
			if last >= 0 {
				if out[o.Topic] == nil {
					out[o.Topic] = map[int32]int64{}
				}
				out[o.Topic][o.Partition] = last + 1
				return
			}
			if o.Offset-back <= 0 {
				return // no committed record at all
			}
		}
	})
	return out, ferr
}

// lastRecord returns the offset of the last committed record in [from, end) of
// a partition, or -1.
func lastRecord(ctx context.Context, k *kafkaconn.Config, topic string, part int32, from, end int64) (int64, error) {
	cl, err := kgo.NewClient(append(k.ClientOptions(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return -1, err
	}
	defer cl.Close()
	last := int64(-1)
	for next := from; next < end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return -1, fmt.Errorf("read %s/%d: %w", topic, part, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = max(next, r.Offset+1)
			if r.Offset < end && !r.Attrs.IsControl() {
				last = max(last, r.Offset)
			}
		})
	}
	return last, nil
}
