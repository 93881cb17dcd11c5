package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// Signals: `kanal snapshot` asks a running producer for backfills by writing a
// record to <prefix>._signals (keyed by source name), so that it needs neither the
// producer's host nor write access to the source. The producer reads the topic
// from the offset stored in its position and stores the next offset with the
// state the signal changed, in the same Kafka transaction: each signal is applied
// exactly once, also across crashes.

// signalMaxAge is how far back a producer without a stored signals offset (a new
// deployment) looks for signals: a request made just before it first started is
// served, one from an earlier deployment of the same source name is not.
const signalMaxAge = 10 * time.Minute

// MaxSignalKeys bounds the keys of one keyed backfill request.
const MaxSignalKeys = 100000

func signalsTopicConfig() map[string]*string {
	del, retention := "delete", strconv.Itoa(int((7 * 24 * time.Hour).Milliseconds()))
	return map[string]*string{"cleanup.policy": &del, "retention.ms": &retention}
}

// signalMsg is a signal read, or (caughtUp) the offset a new deployment starts at.
type signalMsg struct {
	offset   int64
	sig      schemas.Signal
	err      error
	caughtUp bool
}

// signalReader reads the signals topic in a goroutine of its own.
type signalReader struct {
	cfg    *KafkaConfig
	source string
	from   int64 // -1: a new deployment (see signalMaxAge)
	log    *slog.Logger
	out    chan signalMsg
}

func newSignalReader(cfg *KafkaConfig, source string, from int64, log *slog.Logger) *signalReader {
	return &signalReader{cfg: cfg, source: source, from: from, log: log, out: make(chan signalMsg, 16)}
}

func (r *signalReader) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.consume(ctx)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("reading snapshot signals failed; retrying", "topic", schemas.SignalsTopic(r.cfg.TopicPrefix), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (r *signalReader) send(ctx context.Context, m signalMsg) bool {
	select {
	case r.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *signalReader) consume(ctx context.Context) error {
	topic := schemas.SignalsTopic(r.cfg.TopicPrefix)
	start := r.from
	if start < 0 {
		cl, err := kgo.NewClient(r.cfg.ClientOptions()...)
		if err != nil {
			return err
		}
		adm := kadm.NewClient(cl)
		ends, err := adm.ListEndOffsets(ctx, topic)
		var since kadm.ListedOffsets
		if err == nil {
			since, err = adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-signalMaxAge).UnixMilli(), topic)
		}
		cl.Close()
		if err != nil {
			return fmt.Errorf("list offsets of %s: %w", topic, err)
		}
		end, ok1 := ends.Lookup(topic, 0)
		s, ok2 := since.Lookup(topic, 0)
		if !ok1 || !ok2 || end.Err != nil || s.Err != nil {
			return fmt.Errorf("list offsets of %s: %v %v", topic, end.Err, s.Err)
		}
		start = s.Offset
		if start < 0 || start >= end.Offset {
			start = end.Offset
			if !r.send(ctx, signalMsg{offset: start, caughtUp: true}) {
				return ctx.Err()
			}
		}
		r.from = start
	}
	cl, err := kgo.NewClient(append(r.cfg.ClientOptions(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return ferr
		}
		var stopped bool
		fs.EachRecord(func(rec *kgo.Record) {
			if stopped || string(rec.Key) != r.source {
				return
			}
			m := signalMsg{offset: rec.Offset}
			m.sig, m.err = schemas.DecodeSignal(rec.Value)
			if !r.send(ctx, m) {
				stopped = true
			}
			r.from = rec.Offset + 1
		})
		if stopped {
			return nil
		}
	}
}

// signal applies a signal to the snapshot state (in the session goroutine).
func (sn *snapshotter) signal(m signalMsg) {
	if m.caughtUp {
		if sn.state.SignalsOffset < m.offset {
			sn.state.SignalsOffset = m.offset
			sn.stateful = true
		}
		return
	}
	if m.offset < sn.state.SignalsOffset {
		return // applied before (the reader restarted)
	}
	sn.state.SignalsOffset = m.offset + 1
	sn.stateful, sn.dirty = true, true
	if m.err != nil {
		sn.s.log.Warn("snapshot signal unreadable; skipped", "offset", m.offset, "err", m.err)
		return
	}
	sig := m.sig
	switch sig.Action {
	case schemas.SignalSnapshot:
		sn.request(sig)
	case schemas.SignalCancel:
		sn.cancel(sig)
	default:
		sn.s.log.Warn("snapshot signal with an unknown action; skipped", "offset", m.offset, "id", sig.ID, "action", sig.Action)
	}
	sn.publish()
}

// request queues the backfills a signal asks for; it refuses tables that are not
// captured and tables that already have a backfill queued or running.
func (sn *snapshotter) request(sig schemas.Signal) {
	now := time.Now().UnixMilli()
	refuse := func(table, why string) {
		sn.s.log.Warn("backfill refused", "table", table, "id", sig.ID, "why", why)
		sn.addFinished(schemas.Backfill{ID: sig.ID, Table: table, Where: sig.Where, State: schemas.BackfillRefused, Error: why,
			RequestedMs: sig.RequestedMs, FinishedMs: now, Total: -1})
	}
	if len(sig.Tables) == 0 {
		refuse("", "the request names no table")
		return
	}
	if len(sig.Keys) > 0 && len(sig.Tables) != 1 {
		refuse(strings.Join(sig.Tables, ","), "a request with keys must name exactly one table")
		return
	}
	if len(sig.Keys) > MaxSignalKeys {
		refuse(sig.Tables[0], fmt.Sprintf("%d keys: at most %d per request", len(sig.Keys), MaxSignalKeys))
		return
	}
	for _, t := range sig.Tables {
		if why := sn.refusal(t); why != "" {
			refuse(t, why)
			continue
		}
		sn.state.Tables = append(sn.state.Tables, schemas.Backfill{ID: sig.ID, Table: t, Where: sig.Where, Keys: sig.Keys,
			ChunkSize: sn.chunkSize(sig.ChunkSize), State: schemas.BackfillQueued, Total: -1, RequestedMs: sig.RequestedMs})
		sn.s.log.Info("backfill queued", "table", t, "id", sig.ID, "by", sig.By, "where", sig.Where, "keys", len(sig.Keys))
	}
}

// refusal says why a backfill of table cannot be queued ("" when it can).
func (sn *snapshotter) refusal(table string) string {
	db, tbl, ok := strings.Cut(table, ".")
	if !ok || db == "" || tbl == "" {
		return fmt.Sprintf("%q is not a db.table name", table)
	}
	if !sn.s.filter.match(db, tbl) {
		return fmt.Sprintf("not captured by this producer (tables.include %v, tables.exclude %v)", sn.s.filter.include, sn.s.filter.exclude)
	}
	for _, b := range sn.state.Tables {
		if b.Table == table && b.Active() {
			return fmt.Sprintf("a backfill of %s is already %s (request %s); wait for it or cancel it first", table, b.State, b.ID)
		}
	}
	return ""
}

// cancel ends the backfills of the signal's tables (every one when it names none).
func (sn *snapshotter) cancel(sig schemas.Signal) {
	want := map[string]bool{}
	for _, t := range sig.Tables {
		want[t] = true
	}
	now := time.Now().UnixMilli()
	var keep []schemas.Backfill
	for i, b := range sn.state.Tables {
		if len(want) > 0 && !want[b.Table] {
			keep = append(keep, b)
			continue
		}
		if i == 0 && sn.run != nil {
			sn.gen++
			sn.windows, sn.ready, sn.run = nil, nil, nil
			sn.prune()
		}
		b.State, b.FinishedMs, b.Keys = schemas.BackfillCancelled, now, nil
		b.Error = "cancelled by request " + sig.ID
		sn.addFinished(b)
		sn.s.log.Info("backfill cancelled", "table", b.Table, "id", b.ID, "rows", b.Rows, "by", sig.ID)
	}
	sn.state.Tables = keep
}

// SendSignal writes a signal for a running producer to the signals topic
// (creating the topic when it does not exist yet). The producer applies it when
// it reads it; its effect shows in the snapshot state of its positions
// (ReadPosition, Producer.Snapshots).
func SendSignal(ctx context.Context, cfg *kafkaconn.Config, sig schemas.Signal) error {
	if sig.Source == "" || sig.ID == "" {
		return fmt.Errorf("%w: a signal needs a source and an id", ErrConfig)
	}
	if sig.RequestedMs == 0 {
		sig.RequestedMs = time.Now().UnixMilli()
	}
	cl, err := kgo.NewClient(append(cfg.ClientOptions(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	topic := schemas.SignalsTopic(cfg.TopicPrefix)
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, signalsTopicConfig(), topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	rec := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(sig.Source), Value: sig.Marshal()}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("write the signal to %s: %w", topic, err)
	}
	return nil
}

// PendingSignals returns the signals for source that its producer has not read
// yet: those after the signals offset stored in its position (from; -1 when it
// has none: then those of the last signalMaxAge).
func PendingSignals(ctx context.Context, cfg *kafkaconn.Config, source string, from int64) ([]schemas.Signal, error) {
	topic := schemas.SignalsTopic(cfg.TopicPrefix)
	cl, err := kgo.NewClient(cfg.ClientOptions()...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || errors.Is(end.Err, kerr.UnknownTopicOrPartition) {
		return nil, nil
	}
	if end.Err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, end.Err)
	}
	if from < 0 {
		since, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-signalMaxAge).UnixMilli(), topic)
		if err != nil {
			return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
		}
		if s, ok := since.Lookup(topic, 0); ok && s.Err == nil && s.Offset >= 0 {
			from = s.Offset
		} else {
			from = end.Offset
		}
	}
	if from >= end.Offset {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(cfg.ClientOptions(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer rd.Close()
	var out []schemas.Signal
	for next := from; next < end.Offset; {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if string(r.Key) != source || r.Offset >= end.Offset {
				return
			}
			if sig, err := schemas.DecodeSignal(r.Value); err == nil {
				out = append(out, sig)
			}
		})
	}
	return out, nil
}
