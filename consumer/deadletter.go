package consumer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// maxDLQValueBytes caps dlq_max_value_bytes below Kafka's default message size
// limit (1 MiB), leaving room for the key and headers.
const maxDLQValueBytes = 900 << 10

// dlqAttemptTimeout bounds one dead-letter write: a broker that keeps failing
// the write with a retriable error would otherwise hold it invisibly.
const dlqAttemptTimeout = 15 * time.Second

// deadLetterRecord builds the dead letter of kr: its key, headers (without
// those of an earlier dead-lettering) and up to maxValue bytes of its value;
// a longer value is cut and marked with its length and SHA-256.
func deadLetterRecord(topic string, kr *kgo.Record, handler, reason string, cause error, attempts, maxValue int) *kgo.Record {
	hdrs := make([]kgo.RecordHeader, 0, len(kr.Headers)+10)
	for _, h := range kr.Headers {
		if !strings.HasPrefix(h.Key, "kanal.dlq.") {
			hdrs = append(hdrs, h)
		}
	}
	add := func(k, v string) { hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(schemas.HeaderDLQHandler, handler)
	add(schemas.HeaderDLQError, truncate(cause.Error(), 2000))
	add(schemas.HeaderDLQReason, reason)
	add(schemas.HeaderDLQTopic, kr.Topic)
	add(schemas.HeaderDLQPartition, strconv.Itoa(int(kr.Partition)))
	add(schemas.HeaderDLQOffset, strconv.FormatInt(kr.Offset, 10))
	add(schemas.HeaderDLQAttempts, strconv.Itoa(attempts))
	add(schemas.HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	value := kr.Value
	if len(value) > maxValue {
		sum := sha256.Sum256(value)
		add(schemas.HeaderDLQTruncated, strconv.Itoa(len(value)))
		add(schemas.HeaderDLQValueSHA256, hex.EncodeToString(sum[:]))
		value = value[:maxValue]
	}
	return &kgo.Record{Topic: topic, Key: kr.Key, Value: value, Headers: hdrs}
}

// tooLarge reports whether a produce failed on the record's size, which a
// smaller record fixes.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// deadLetter writes kr to the group's dead-letter topic and returns once the
// broker acknowledged it: the record's offset may be committed only after that.
//
// A write never fails on size: the value is cut (dlq_max_value_bytes, then
// smaller, down to nothing). A write failing for another reason (the topic is
// missing, writes are not authorized, the broker is down) halts the partition
// visibly — /readyz names it, the halted-partitions gauge counts it — and is
// retried with backoff, each failure logged and counted, until it succeeds or
// the worker stops (the record is then replayed by the partition's next owner).
func (w *worker) deadLetter(handler, table string, kr *kgo.Record, reason string, cause error, attempts int) error {
	topic := schemas.DLQTopic(w.g.r.cfg.Kafka.TopicPrefix, w.g.name)
	limits := []int{w.g.r.cfg.DLQMaxValueBytes, 16 << 10, 0}
	rec := deadLetterRecord(topic, kr, handler, reason, cause, attempts, limits[0])
	bo := RetryConfig{InitialInterval: 200 * time.Millisecond, MaxInterval: 5 * time.Second}.backoff()
	halted := false
	defer func() {
		if halted {
			w.g.r.clearHalted(handler, w.topic, w.partition)
		}
	}()
	for attempt := 1; ; attempt++ {
		// The first attempt is in progress like a Handle call: a stop lets it
		// finish (a cut-short write would be written again by the next owner).
		// Later ones are retries of a halted partition, which a stop abandons.
		parent := w.wait
		if attempt == 1 {
			parent = w.ctx
		}
		ctx, cancel := context.WithTimeout(parent, dlqAttemptTimeout)
		err := w.g.cl.ProduceSync(ctx, rec).FirstErr()
		cancel()
		if err == nil {
			break
		}
		if w.stopped() {
			return fmt.Errorf("%w: dead-letter write: %w", errStopped, err)
		}
		if tooLarge(err) && len(limits) > 1 && len(rec.Value) > limits[1] {
			limits = limits[1:]
			w.log.Warn("dead letter too large for the broker; cutting its value further",
				"dlq_topic", topic, "offset", kr.Offset, "value_bytes", len(rec.Value), "now", limits[0], "err", err)
			rec = deadLetterRecord(topic, kr, handler, reason, cause, attempts, limits[0])
			continue
		}
		w.g.r.m.dlqWriteErrors.WithLabelValues(w.g.name).Inc()
		wait := bo.NextBackOff()
		w.log.Warn("dead-letter write failed; the partition is halted until it succeeds",
			"dlq_topic", topic, "offset", kr.Offset, "key", string(kr.Key), "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		if !halted {
			halted = true
			w.g.r.setHalted(HaltedPartition{Handler: handler, Group: w.g.name, Topic: w.topic, Partition: w.partition,
				Offset: kr.Offset, Table: table, Key: string(kr.Key), Since: time.Now(),
				Error: truncate(fmt.Sprintf("dead-letter write to %s failed: %v", topic, err), 500)})
		}
		if sleep(w.wait, wait) != nil {
			return fmt.Errorf("%w: dead-letter write: %w", errStopped, err)
		}
	}
	if halted {
		w.log.Info("dead-letter write succeeded; the partition goes on", "dlq_topic", topic, "offset", kr.Offset)
	}
	if _, ok := headerOK(rec, schemas.HeaderDLQTruncated); ok {
		w.log.Warn("dead letter truncated: its value was too large", "dlq_topic", topic, "offset", kr.Offset,
			"value_bytes", len(kr.Value), "kept_bytes", len(rec.Value))
	}
	w.g.r.m.deadLetters.WithLabelValues(handler, table, reason).Inc()
	return nil
}

func headerOK(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
