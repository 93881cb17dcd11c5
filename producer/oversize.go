package producer

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// Record size limits. Kafka limits record batches, not records: a topic's
// max.message.bytes (the broker's message.max.bytes when the topic sets none)
// bounds each batch the producer sends. kanal sizes records by their key, value and
// headers, and leaves recordOverhead for what a batch adds to one record (its 61
// byte header, the record's varints).
const (
	recordOverhead = 1 << 10
	// maxRecordBytesLimit keeps a batch within franz-go's 1 GiB ceiling.
	maxRecordBytesLimit = 1<<30 - 1<<20
	// defaultBrokerWriteBytes is franz-go's default BrokerMaxWriteBytes (and the
	// brokers' default socket.request.max.bytes).
	defaultBrokerWriteBytes = 100 << 20
)

// batchLimit is the largest record batch the producer builds for topics without a
// smaller limit of their own: kafka.max_record_bytes plus the batch framing.
func (k *KafkaConfig) batchLimit() int32 { return int32(k.MaxRecordBytes + recordOverhead) }

// recordBytes is the size kanal compares with the limit: key, value and headers.
func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// topicBatchLimit is the batch limit franz-go asks for per topic
// (kgo.ProducerBatchMaxBytesFn): the topic's own max.message.bytes when it is
// known and smaller than kanal's.
func (w *writer) topicBatchLimit(topic string) int32 {
	w.limitsMu.RLock()
	defer w.limitsMu.RUnlock()
	if l, ok := w.limits[topic]; ok && l < w.cfg.batchLimit() {
		return l
	}
	return w.cfg.batchLimit()
}

// recordLimit is the largest record the topic takes.
func (w *writer) recordLimit(topic string) int {
	return int(w.topicBatchLimit(topic)) - recordOverhead
}

// learnTopicLimit records the max.message.bytes of a topic that existed before
// kanal wrote to it, and says so when it is below kafka.max_record_bytes.
func (w *writer) learnTopicLimit(ctx context.Context, topic string) error {
	rcs, err := w.adm.DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(topic, nil); err == nil {
			err = rc.Err
		}
		if err == nil {
			for _, c := range rc.Configs {
				if c.Key != "max.message.bytes" || c.Value == nil {
					continue
				}
				n, perr := strconv.Atoi(*c.Value)
				if perr != nil || n <= recordOverhead {
					break
				}
				w.limitsMu.Lock()
				w.limits[topic] = int32(min(n, maxRecordBytesLimit+recordOverhead))
				w.limitsMu.Unlock()
				if int32(n) < w.cfg.batchLimit() {
					w.log.Warn("topic takes smaller records than kafka.max_record_bytes: larger changes follow kafka.oversize_policy",
						"topic", topic, "max.message.bytes", n, "max_record_bytes", w.cfg.MaxRecordBytes, "oversize_policy", w.cfg.OversizePolicy)
				}
			}
			return nil
		}
	}
	// Without DescribeConfigs rights the limit stays kanal's; the broker still
	// refuses a batch that is too large, and that error names the topic.
	w.log.Warn("cannot read the topic's max.message.bytes; assuming kafka.max_record_bytes", "topic", topic, "err", err)
	return nil
}

// logBrokerLimits reads message.max.bytes of each broker and logs it with what
// kanal uses, so an operator sees the limits in force at start.
func (w *writer) logBrokerLimits(ctx context.Context) {
	meta, err := w.adm.BrokerMetadata(ctx)
	if err != nil {
		w.log.Warn("cannot read the brokers' message.max.bytes", "err", err)
		return
	}
	addr := map[string]string{}
	for _, b := range meta.Brokers {
		addr[strconv.Itoa(int(b.NodeID))] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	// Without broker ids DescribeConfigs returns the cluster's dynamic defaults
	// only, which leave out a broker's static message.max.bytes.
	rcs, err := w.adm.DescribeBrokerConfigs(ctx, meta.Brokers.NodeIDs()...)
	if err != nil {
		w.log.Warn("cannot read the brokers' message.max.bytes", "err", err)
		return
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			w.log.Warn("cannot read a broker's message.max.bytes", "broker", addr[rc.Name], "err", rc.Err)
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "message.max.bytes" && c.Value != nil {
				w.log.Info("kafka record size limits", "broker", addr[rc.Name], "message.max.bytes", *c.Value,
					"max_record_bytes", w.cfg.MaxRecordBytes, "topics_created_with_max.message.bytes", w.cfg.batchLimit(),
					"oversize_policy", w.cfg.OversizePolicy)
			}
		}
	}
}

// oversize handles a change whose record r is larger than its topic takes: with
// oversize_policy fail it returns an *OversizeError; with skip it turns r into an
// oversize marker (see schemas.Oversize) and writes a copy to the _oversize topic.
func (s *session) oversize(ctx context.Context, ti *tableInfo, src *schemas.Source, op schemas.Op, r *kgo.Record, size, limit int) error {
	o := schemas.Oversize{Op: op, Seq: s.seq, DB: ti.db, Table: ti.table, Key: string(r.Key),
		Pos: string(s.posText), Row: src.Row, Bytes: size, Limit: limit}
	if s.cfg.Kafka.OversizePolicy != "skip" {
		return &OversizeError{Oversize: o}
	}
	value := o.Marshal()
	headers := []kgo.RecordHeader{
		{Key: schemas.HeaderOp, Value: r.Headers[0].Value},
		{Key: schemas.HeaderPos, Value: r.Headers[1].Value},
		{Key: schemas.HeaderSeq, Value: r.Headers[2].Value},
		{Key: schemas.HeaderFormat, Value: []byte(schemas.FormatOversize)},
		{Key: schemas.HeaderOversize, Value: strconv.AppendInt(nil, int64(size), 10)},
	}
	r.Value, r.Headers = value, headers
	topic := schemas.OversizeTopic(s.cfg.Kafka.TopicPrefix)
	del := "delete"
	if err := s.w.ensureTopic(ctx, topic, 1, map[string]*string{"cleanup.policy": &del}); err != nil {
		return err
	}
	cp := &kgo.Record{Topic: topic, Key: r.Key, Value: value, Headers: headers, Timestamp: r.Timestamp}
	s.own(cp) // its key and header values are the change's, from the arena
	if err := s.w.produce(ctx, cp); err != nil {
		return err
	}
	s.p.stats.OversizeSkipped.Add(1)
	s.log.Warn("change too large for Kafka: wrote an oversize marker in its place (kafka.oversize_policy: skip)",
		"table", ti.db+"."+ti.table, "key", truncate(string(r.Key), 200), "position", o.Pos, "row", o.Row, "seq", o.Seq,
		"bytes", size, "limit", limit, "copy", topic)
	return nil
}

// OversizeError is a change too large for Kafka under oversize_policy fail.
type OversizeError struct{ Oversize schemas.Oversize }

func (e *OversizeError) Error() string {
	o := &e.Oversize
	return fmt.Sprintf("%v: %s.%s key %s at %s row %d (seq %d): its record is %d bytes, the limit is %d "+
		"(kafka.max_record_bytes, or the topic's max.message.bytes if smaller); raise the limits or set kafka.oversize_policy: skip",
		ErrOversize, o.DB, o.Table, truncate(o.Key, 200), o.Pos, o.Row, o.Seq, o.Bytes, o.Limit)
}

// Unwrap lets errors.Is(err, ErrOversize) match.
func (e *OversizeError) Unwrap() error { return ErrOversize }
