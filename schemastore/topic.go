package schemastore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// TopicSchemas reads the schemas topic of the avro and json-compact formats
// (Avro schemas and descriptors alike, by fingerprint). A lookup of an
// unknown fingerprint reads the topic (read_committed) up to its current stable
// end: the producer writes a schema in the same Kafka transaction as the first
// record that uses it, so once that record is visible, so is its schema. Safe
// for concurrent use; Close releases the Kafka client.
type TopicSchemas struct {
	cfg  kafkaconn.Config
	log  *slog.Logger
	opts []kgo.Opt

	mu      sync.Mutex
	schemas map[uint64]string
	cl      *kgo.Client
	next    map[int32]int64 // per partition, the offset after the last one read
}

// NewTopicSchemas returns a reader of SchemasTopic(cfg.TopicPrefix); opts are
// added to its Kafka client's options.
func NewTopicSchemas(cfg kafkaconn.Config, log *slog.Logger, opts ...kgo.Opt) *TopicSchemas {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TopicSchemas{cfg: cfg, log: log, opts: opts, schemas: map[uint64]string{}, next: map[int32]int64{}}
}

// Close releases the Kafka client.
func (t *TopicSchemas) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cl != nil {
		t.cl.Close()
		t.cl = nil
	}
}

// SchemaByFingerprint returns the schema published under fp
// (schemas.SchemaResolver, format avro).
func (t *TopicSchemas) SchemaByFingerprint(ctx context.Context, fp uint64) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.schemas[fp]; ok {
		return s, nil
	}
	topic := schemas.SchemasTopic(t.cfg.TopicPrefix)
	if err := t.catchUp(ctx, topic); err != nil {
		return "", fmt.Errorf("%w: read %s: %w", schemas.ErrSchemaUnavailable, topic, err)
	}
	if s, ok := t.schemas[fp]; ok {
		return s, nil
	}
	return "", fmt.Errorf("%w: %s holds no schema with fingerprint %s", schemas.ErrSchemaNotFound, topic, schemas.FingerprintKey(fp))
}

// catchUp reads the topic up to its stable end.
func (t *TopicSchemas) catchUp(ctx context.Context, topic string) error {
	if t.cl == nil {
		cl, err := kgo.NewClient(append(append(t.cfg.ClientOptions(),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Transaction markers show where aborted data ends.
			kgo.KeepControlRecords(),
			kgo.WithLogger(kafkaconn.Logger(t.log)),
		), t.opts...)...)
		if err != nil {
			return err
		}
		t.cl = cl
	}
	ends, err := kadm.NewClient(t.cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	want := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
		case o.Err != nil:
			lerr = o.Err
		case o.Offset > t.next[o.Partition]:
			want[o.Partition] = o.Offset
		}
	})
	if lerr != nil {
		return fmt.Errorf("list end offsets: %w", lerr)
	}
	if len(want) == 0 {
		return nil
	}
	assign := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range want {
		assign[topic][p] = kgo.NewOffset().At(t.next[p])
	}
	t.cl.AddConsumePartitions(assign)
	defer t.cl.RemoveConsumePartitions(map[string][]int32{topic: keys(want)})
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for len(want) > 0 {
		fs := t.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("partition %d: %w", p, err) })
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 > t.next[r.Partition] {
				t.next[r.Partition] = r.Offset + 1
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() || r.Value == nil {
				return
			}
			b, err := hex.DecodeString(string(r.Key))
			if err != nil || len(b) != 8 {
				t.log.Warn("schemas topic: record with a key that is no fingerprint", "partition", r.Partition, "offset", r.Offset)
				return
			}
			t.schemas[binary.LittleEndian.Uint64(b)] = string(r.Value)
		})
	}
	return nil
}

func keys(m map[int32]int64) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Resolver finds writer schemas in the schemas topic (avro) and the registry
// (avro-confluent); it implements schemas.SchemaResolver.
type Resolver struct {
	Topic *TopicSchemas
	// Registry is nil when no kafka.schema_registry is configured.
	Registry *Registry
}

// NewResolver returns the resolver for cfg: the schemas topic under its topic
// prefix, and its schema registry when one is configured.
func NewResolver(cfg kafkaconn.Config, log *slog.Logger, opts ...kgo.Opt) (*Resolver, error) {
	r := &Resolver{Topic: NewTopicSchemas(cfg, log, opts...)}
	if cfg.SchemaRegistry != nil {
		reg, err := NewRegistry(cfg.SchemaRegistry, log)
		if err != nil {
			return nil, err
		}
		r.Registry = reg
	}
	return r, nil
}

// SchemaByFingerprint looks fp up in the schemas topic.
func (r *Resolver) SchemaByFingerprint(ctx context.Context, fp uint64) (string, error) {
	return r.Topic.SchemaByFingerprint(ctx, fp)
}

// SchemaByID looks id up in the registry. Without a configured registry the
// record cannot be decoded yet: the error wraps schemas.ErrSchemaUnavailable,
// so consumers wait for the configuration to be fixed rather than
// dead-lettering every record.
func (r *Resolver) SchemaByID(ctx context.Context, id int) (string, error) {
	if r.Registry == nil {
		return "", fmt.Errorf("%w: record with schema id %d (avro-confluent), but kafka.schema_registry is not configured", schemas.ErrSchemaUnavailable, id)
	}
	return r.Registry.SchemaByID(ctx, id)
}

// Close releases the Kafka client.
func (r *Resolver) Close() { r.Topic.Close() }
