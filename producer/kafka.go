package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// compressionCodec maps kafka.compression to franz-go's codecs; nil for an unknown
// name.
func compressionCodec(name string) []kgo.CompressionCodec {
	switch name {
	case "snappy":
		return []kgo.CompressionCodec{kgo.SnappyCompression()}
	case "lz4":
		return []kgo.CompressionCodec{kgo.Lz4Compression()}
	case "zstd":
		return []kgo.CompressionCodec{kgo.ZstdCompression()}
	case "gzip":
		return []kgo.CompressionCodec{kgo.GzipCompression()}
	case "none":
		return []kgo.CompressionCodec{kgo.NoCompression()}
	}
	return nil
}

// explicitPartition marks records that name their own partition (Record.Context):
// a truncate is written once to every partition of its table's topic.
var explicitPartition = context.WithValue(context.Background(), explicitPartitionKey{}, true)

type explicitPartitionKey struct{}

// partitioner is Kafka's default key partitioning (murmur2), except for records
// marked with explicitPartition.
type partitioner struct{ kgo.Partitioner }

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return topicPartitioner{p.Partitioner.ForTopic(topic)}
}

type topicPartitioner struct{ kgo.TopicPartitioner }

func (p topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Context == explicitPartition || p.TopicPartitioner.RequiresConsistency(r)
}

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Context == explicitPartition {
		return int(r.Partition)
	}
	return p.TopicPartitioner.Partition(r, n)
}

// writer is the transactional side: it groups records into Kafka transactions, each
// ending with the position record that covers them.
type writer struct {
	cfg    *KafkaConfig
	source string
	log    *slog.Logger
	cl     *kgo.Client
	adm    *kadm.Client

	topics map[string]bool
	// limits holds the max.message.bytes of topics that existed before kanal
	// wrote to them (read by franz-go's goroutines through topicBatchLimit).
	limitsMu sync.RWMutex
	limits   map[string]int32

	// inTxn: a Kafka transaction is open (records were produced into it), or,
	// while a commit is in flight, records wait in pending for the next one.
	inTxn   bool
	records int
	bytes   int
	began   time.Time

	// flight is the commit under way on a goroutine of its own, nil when none.
	// While it is, the session keeps encoding: its records wait in pending,
	// in order, because franz-go takes no record for the next transaction
	// before EndTransaction returns. pendingBytes is their size, which with
	// their count is bounded by kafka.max_buffered_bytes and
	// max_buffered_records together with what the client buffers.
	flight       *commitFlight
	pending      []*kgo.Record
	pendingBytes int
	// waited adds up the time the session waited for commits (Stats.CommitNanos).
	waited *atomic.Int64

	errMu    sync.Mutex
	firstErr error
	promise  func(*kgo.Record, error)
}

func newWriter(cfg *KafkaConfig, source string, log *slog.Logger, watch *brokerWatch) (*writer, error) {
	w := &writer{cfg: cfg, source: source, log: log, topics: map[string]bool{}, limits: map[string]int32{}}
	opts := append(cfg.ClientOptions(),
		kgo.TransactionalID("kanal-"+source),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.RecordPartitioner(partitioner{kgo.StickyKeyPartitioner(nil)}),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		// KIP-714 telemetry: kanal has its own metrics (admin.listen), and the
		// client's push loop builds an lz4 compressor that holds 8 MiB
		// (docs/bench.md, round 6e).
		kgo.DisableClientMetrics(),
		// Batches as large as one record of kafka.max_record_bytes, or as the
		// topic's own max.message.bytes when that is smaller.
		kgo.ProducerBatchMaxBytesFn(w.topicBatchLimit),
		kgo.BrokerMaxWriteBytes(max(defaultBrokerWriteBytes, cfg.batchLimit()+1<<20)),
		kgo.ProducerLinger(0),
		kgo.RecordRetries(10),
		kgo.ProducerBatchCompression(compressionCodec(cfg.Compression)...),
		kgo.WithHooks(watch),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	w.cl = cl
	w.adm = kadm.NewClient(cl)
	w.promise = func(r *kgo.Record, err error) {
		// Last: once counted, the session may reuse r's memory (r.Topic too).
		defer genAcked(r)
		if err != nil {
			if errors.Is(err, kerr.MessageTooLarge) {
				// kanal checks every record against the topic's limit before
				// producing it, so the broker's limit is below what kanal read or
				// assumed: retrying would fail the same way, forever.
				err = fmt.Errorf("%w: the broker refused a batch as too large: topic %s takes less than kanal assumed (%d bytes); "+
					"let kanal read the topic's max.message.bytes (DescribeConfigs) or lower kafka.max_record_bytes: %w",
					ErrOversize, r.Topic, w.topicBatchLimit(r.Topic), err)
			}
			w.errMu.Lock()
			if w.firstErr == nil {
				w.firstErr = fmt.Errorf("produce to %s: %w", r.Topic, err)
			}
			w.errMu.Unlock()
		}
	}
	return w, nil
}

func (w *writer) close() {
	if f := w.flight; f != nil {
		<-f.done // its goroutine uses the client
		w.flight = nil
	}
	w.cl.Close()
}

// fence initialises the transactional producer id. The broker then aborts whatever
// transaction a previous instance with the same source name left open, and that
// instance can no longer commit: from here on this process owns the source.
func (w *writer) fence(ctx context.Context) error {
	if _, _, err := w.cl.ProducerID(ctx); err != nil {
		return kafkaFailed(&w.cfg.Config, fmt.Errorf("initialise transactional producer kanal-%s: %w", w.source, err))
	}
	return nil
}

// ensureTopic creates a topic if it does not exist yet.
func (w *writer) ensureTopic(ctx context.Context, topic string, partitions int32, configs map[string]*string) error {
	if w.topics[topic] {
		return nil
	}
	resp, err := w.adm.CreateTopic(ctx, partitions, w.cfg.ReplicationFactor, configs, topic)
	if err == nil {
		err = resp.Err
	}
	existed := errors.Is(err, kerr.TopicAlreadyExists)
	if err != nil && !existed {
		return kafkaFailed(&w.cfg.Config, fmt.Errorf("create topic %s: %w", topic, err))
	}
	if err == nil {
		w.log.Info("created topic", "topic", topic, "partitions", partitions)
	}
	if existed && configs[topicMaxMessageBytes] != nil {
		if err := w.learnTopicLimit(ctx, topic); err != nil {
			return err
		}
	}
	w.topics[topic] = true
	return nil
}

// ensureTableTopic creates a table's topic with kanal's cleanup policy and a
// max.message.bytes that takes records of kafka.max_record_bytes.
func (w *writer) ensureTableTopic(ctx context.Context, topic string) error {
	if w.topics[topic] {
		return nil
	}
	configs := map[string]*string{}
	for k, v := range w.cfg.TableTopicConfigs() {
		configs[k] = &v
	}
	return w.ensureTopic(ctx, topic, w.cfg.Partitions, configs)
}

// checkTableTopics logs every existing table topic whose cleanup policy or
// compaction lag differs from the configuration: kanal only sets them when it
// creates a topic, so an existing topic is never changed behind the operator's
// back, and never left on another setting silently either.
func (w *writer) checkTableTopics(ctx context.Context) {
	drifts, err := CheckTableTopics(ctx, w.adm, w.cfg, nil)
	if err != nil {
		w.log.Warn("cannot check the settings of existing table topics", "err", err)
		return
	}
	for _, d := range drifts {
		w.log.Warn("existing table topic differs from the configuration; `kanal topics alter` changes it",
			"topic", d.Topic, "setting", d.Key, "topic_value", d.Have, "configured", d.Want)
	}
}

// partitions returns the partition count of an existing topic.
func (w *writer) partitions(ctx context.Context, topic string) (int32, error) {
	td, err := w.adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("describe topic %s: %v", topic, t.Err)
	}
	return int32(len(t.Partitions)), nil
}

func (w *writer) ensureInternalTopics(ctx context.Context) error {
	compact := "compact"
	if err := w.ensureTopic(ctx, schemas.PositionsTopic(w.cfg.TopicPrefix), 1, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return err
	}
	if schemas.FormatUsesSchemasTopic(w.cfg.Format) {
		if err := w.ensureTopic(ctx, schemas.SchemasTopic(w.cfg.TopicPrefix), 1, map[string]*string{"cleanup.policy": &compact}); err != nil {
			return err
		}
	}
	// Schema changes are kept like the table topics' history: no compaction
	// (every statement matters), the broker's retention.
	if err := w.ensureTopic(ctx, schemas.SchemaChangesTopic(w.cfg.TopicPrefix), 1, nil); err != nil {
		return err
	}
	del, retention := "delete", strconv.Itoa(int((24 * time.Hour).Milliseconds()))
	if err := w.ensureTopic(ctx, schemas.HeartbeatsTopic(w.cfg.TopicPrefix), 1, map[string]*string{"cleanup.policy": &del, "retention.ms": &retention}); err != nil {
		return err
	}
	w.checkTableTopics(ctx)
	return nil
}

// loadPosition returns the last committed position of this source, or nil when none
// is stored. Call it after fence: the high watermark read here then lies above every
// record this source ever wrote, and reading to it with read_committed sees the last
// committed position and nothing of an aborted transaction.
func (w *writer) loadPosition(ctx context.Context) (*schemas.Position, error) {
	return ReadPosition(ctx, &w.cfg.Config, w.source)
}

// ReadPosition reads the last committed position of a source from the positions topic.
func ReadPosition(ctx context.Context, cfg *kafkaconn.Config, source string) (*schemas.Position, error) {
	topic := schemas.PositionsTopic(cfg.TopicPrefix)
	admCl, err := kgo.NewClient(cfg.ClientOptions()...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if err := ends.Error(); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if len(want) == 0 {
		return nil, nil
	}
	parts := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range want {
		parts[topic][p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(cfg.ClientOptions(),
		kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records let us see the transaction markers, so we know when we are
		// past the end even if the last data records were aborted.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var last *schemas.Position
	idle := 0
	for len(want) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		if fs.NumRecords() > 0 {
			idle = 0
		} else if idle++; idle >= 3 {
			// Nothing new for a while: if compaction removed the records just below
			// the end, we never see an offset at the end. Once every transaction
			// below the end is decided (the stable offset has reached it), the fetch
			// has returned everything there is.
			lso, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
			if err != nil {
				return nil, fmt.Errorf("list committed offsets of %s: %w", topic, err)
			}
			lso.Each(func(o kadm.ListedOffset) {
				if end, ok := want[o.Partition]; ok && o.Err == nil && o.Offset >= end {
					delete(want, o.Partition)
				}
			})
			continue
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) { // our poll timeout
				ferr = fmt.Errorf("read %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= want[r.Partition]-1 {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() || string(r.Key) != source {
				return
			}
			if r.Value == nil { // `kanal positions reset`
				last = nil
				return
			}
			p, err := schemas.DecodePosition(r.Value)
			if err != nil {
				ferr = fmt.Errorf("position record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
			last = &p
		})
		if ferr != nil {
			return nil, ferr
		}
	}
	return last, nil
}

// commitFlight is a commit (flush and EndTransaction) running on its own
// goroutine. err is set before done is closed.
type commitFlight struct {
	done  chan struct{}
	err   error
	began time.Time
	// bytes is the transaction's key and value bytes, its position record's too.
	bytes int
	// after is the session's bookkeeping, run in the session's goroutine once
	// the commit succeeded.
	after func(d time.Duration, bytes int)
	took  time.Duration
}

// produce adds one record to the current Kafka transaction, opening one if needed.
// Records are sent asynchronously; commit waits for all of them. While a commit
// is in flight the record waits in pending for the next transaction; when that
// holds as many records or bytes as the client may buffer, produce waits for the
// commit (so memory stays bounded by kafka.max_buffered_*).
func (w *writer) produce(ctx context.Context, r *kgo.Record) error {
	if w.flight != nil {
		if err := w.settle(ctx, false); err != nil {
			return err
		}
	}
	if w.flight != nil {
		if !w.inTxn {
			w.inTxn = true
			w.began = time.Now()
			w.records, w.bytes = 0, 0
		}
		w.records++
		w.bytes += len(r.Key) + len(r.Value)
		w.pending = append(w.pending, r)
		w.pendingBytes += recordSize(r)
		if len(w.pending)+int(w.cl.BufferedProduceRecords()) >= w.cfg.MaxBufferedRecords ||
			w.pendingBytes+int(w.cl.BufferedProduceBytes()) >= w.cfg.MaxBufferedBytes {
			return w.settle(ctx, true)
		}
		return nil
	}
	if !w.inTxn {
		if err := w.begin(); err != nil {
			return err
		}
		w.began = time.Now()
		w.records, w.bytes = 0, 0
	}
	w.records++
	w.bytes += len(r.Key) + len(r.Value)
	w.cl.Produce(ctx, r, w.promise)
	return nil
}

func (w *writer) begin() error {
	if err := w.cl.BeginTransaction(); err != nil {
		return kafkaFailed(&w.cfg.Config, fenced(fmt.Errorf("begin kafka transaction: %w", err)))
	}
	w.inTxn = true
	return nil
}

// recordSize is what the client counts of a record against MaxBufferedBytes.
func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// flightDone is closed when the commit in flight has ended; nil (never ready)
// when none is.
func (w *writer) flightDone() <-chan struct{} {
	if w.flight == nil {
		return nil
	}
	return w.flight.done
}

// settle observes the end of the commit in flight: it waits for it when wait is
// set, else returns at once if it has not ended. After a successful commit it
// runs the session's bookkeeping, opens the next transaction and produces the
// pending records in order. After a failed one the pending records are dropped:
// none was ever produced, so the restart from the last committed position
// writes them again, once.
func (w *writer) settle(ctx context.Context, wait bool) error {
	f := w.flight
	if f == nil {
		return nil
	}
	if wait {
		start := time.Now()
		<-f.done
		if w.waited != nil {
			w.waited.Add(int64(time.Since(start)))
		}
	} else {
		select {
		case <-f.done:
		default:
			return nil
		}
	}
	w.flight = nil
	if f.err != nil {
		w.dropPending()
		return f.err
	}
	f.after(f.took, f.bytes)
	if len(w.pending) == 0 {
		return nil
	}
	if err := w.cl.BeginTransaction(); err != nil {
		w.dropPending()
		return kafkaFailed(&w.cfg.Config, fenced(fmt.Errorf("begin kafka transaction: %w", err)))
	}
	for i, r := range w.pending {
		w.cl.Produce(ctx, r, w.promise)
		w.pending[i] = nil
	}
	w.pending, w.pendingBytes = w.pending[:0], 0
	return nil
}

func (w *writer) dropPending() {
	if len(w.pending) > 0 {
		w.inTxn = false
	}
	clear(w.pending)
	w.pending, w.pendingBytes = w.pending[:0], 0
}

// commit ends the current transaction with pos as its position record: it
// produces the position record, then flushes and ends the transaction on a
// goroutine of its own, and returns. A commit still in flight is waited for
// first: one transaction commits at a time. after runs once the commit has
// succeeded (see settle); on any error the transaction is aborted, nothing of
// it becomes visible, and the error surfaces at the next settle.
func (w *writer) commit(ctx context.Context, pos schemas.Position, after func(d time.Duration, bytes int)) error {
	if err := w.settle(ctx, true); err != nil {
		return err
	}
	pos.WrittenMs = time.Now().UnixMilli()
	if err := w.produce(ctx, &kgo.Record{
		Topic: schemas.PositionsTopic(w.cfg.TopicPrefix),
		Key:   []byte(w.source),
		Value: pos.Marshal(),
	}); err != nil {
		return err
	}
	// A commit under way finishes even when shutdown was requested: what was
	// handed to Kafka becomes visible, and the position moves with it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.TransactionTimeout)
	f := &commitFlight{done: make(chan struct{}), began: time.Now(), bytes: w.bytes, after: after}
	w.flight = f
	w.inTxn = false // the next record opens (or waits for) the next transaction
	go func() {
		defer close(f.done)
		defer cancel()
		f.err = kafkaFailed(&w.cfg.Config, w.commitTxn(cctx, pos))
		f.took = time.Since(f.began)
	}()
	return nil
}

// commitTxn flushes the open transaction and ends it; it runs on the commit's
// goroutine and touches no state of the session's.
func (w *writer) commitTxn(ctx context.Context, pos schemas.Position) error {
	if err := w.cl.Flush(ctx); err != nil {
		w.abortTxn()
		return fenced(fmt.Errorf("flush kafka transaction: %w", err))
	}
	w.errMu.Lock()
	perr := w.firstErr
	w.firstErr = nil
	w.errMu.Unlock()
	if perr != nil {
		w.abortTxn()
		return fenced(perr)
	}
	err := w.cl.EndTransaction(ctx, kgo.TryCommit)
	if err != nil {
		if errors.Is(err, kerr.InvalidTxnState) {
			// Transactions v2 (KIP-890): when a newer instance's InitProducerID
			// aborted our open transaction, our commit arrives with an epoch exactly
			// one behind and the broker answers INVALID_TXN_STATE (the "retry of a
			// finished transaction" check), not PRODUCER_FENCED. Retrying would
			// re-fence the newer instance, so this is fencing too.
			return fmt.Errorf("%w: commit kafka transaction at %s: %w", ErrFenced, pos, err)
		}
		return fenced(fmt.Errorf("commit kafka transaction at %s: %w", pos, err))
	}
	return nil
}

// fenced marks errors that mean another instance with the same transactional id
// took over: retrying would only fight it, so they are permanent.
func fenced(err error) error {
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return err
}

// abort drops the open transaction; its records never become visible to
// read_committed consumers. A commit in flight is waited for first (its
// bookkeeping runs if it succeeded), and pending records are dropped.
// Bounded so that shutdown cannot hang on a dead broker.
func (w *writer) abort() {
	if f := w.flight; f != nil {
		<-f.done
		w.flight = nil
		if f.err == nil {
			f.after(f.took, f.bytes)
		} else {
			w.log.Warn("kafka commit in flight failed", "err", f.err)
		}
		if len(w.pending) > 0 {
			// The next transaction was never begun in Kafka.
			w.dropPending()
			return
		}
	}
	if !w.inTxn {
		return
	}
	w.abortTxn()
	w.inTxn = false
}

// abortTxn aborts the transaction open in the client.
func (w *writer) abortTxn() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.cl.AbortBufferedRecords(ctx); err != nil {
		w.log.Warn("abort buffered records", "err", err)
	}
	if err := w.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		w.log.Warn("abort kafka transaction", "err", err)
	}
	w.errMu.Lock()
	w.firstErr = nil
	w.errMu.Unlock()
}
