package consumer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// DeadLetterRecord is one record of a group's dead-letter topic, its headers parsed.
type DeadLetterRecord struct {
	// Partition and Offset are the dead letter's place in the dead-letter topic.
	Partition int32
	Offset    int64
	Key       string
	// Handler is the handler (or, for a record that could not be decoded, the
	// comma-separated handlers) that gave up on the record.
	Handler  string
	Reason   string
	Error    string
	Attempts int
	Time     time.Time
	// Topic, OriginPartition and OriginOffset say where the record was read
	// first: its table topic, also when it failed again after a redrive.
	Topic           string
	OriginPartition int32
	OriginOffset    int64
	// Seq is the change's row version (kanal.seq), 0 when unknown.
	Seq uint64
	// TruncatedFrom is the original value's length when the dead letter holds
	// only its first bytes, 0 otherwise; SHA256 is then the original's hash.
	TruncatedFrom int
	SHA256        string
	// Redriven is set when the group's retry topic already holds a redrive of
	// this dead letter.
	Redriven bool
	Record   *kgo.Record
}

// dlqRef is how a redrive names its dead letter: "<partition>@<offset>".
func (d *DeadLetterRecord) dlqRef() string { return fmt.Sprintf("%d@%d", d.Partition, d.Offset) }

func parseDeadLetter(r *kgo.Record) DeadLetterRecord {
	d := DeadLetterRecord{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Record: r,
		Handler: header(r, schemas.HeaderDLQHandler), Reason: header(r, schemas.HeaderDLQReason),
		Error: header(r, schemas.HeaderDLQError), Topic: header(r, schemas.HeaderDLQTopic),
		SHA256: header(r, schemas.HeaderDLQValueSHA256), OriginPartition: -1, OriginOffset: -1}
	d.Attempts, _ = strconv.Atoi(header(r, schemas.HeaderDLQAttempts))
	d.Time, _ = time.Parse(time.RFC3339Nano, header(r, schemas.HeaderDLQTime))
	if d.Time.IsZero() {
		d.Time = r.Timestamp
	}
	d.Seq, _ = strconv.ParseUint(header(r, schemas.HeaderSeq), 10, 64)
	d.TruncatedFrom, _ = strconv.Atoi(header(r, schemas.HeaderDLQTruncated))
	part, off := header(r, schemas.HeaderDLQPartition), header(r, schemas.HeaderDLQOffset)
	if t := header(r, schemas.HeaderRedriveTopic); t != "" {
		// It failed again after a redrive: its origin is the first table topic.
		d.Topic = t
		part, off = header(r, schemas.HeaderRedrivePartition), header(r, schemas.HeaderRedriveOffset)
	}
	if p, err := strconv.ParseInt(part, 10, 32); err == nil {
		d.OriginPartition = int32(p)
	}
	if o, err := strconv.ParseInt(off, 10, 64); err == nil {
		d.OriginOffset = o
	}
	return d
}

// DeadLetterFilter selects dead letters: those dead-lettered at or after Since
// (zero: any time) with key Key ("" = any).
type DeadLetterFilter struct {
	Since time.Time
	Key   string
}

func (f DeadLetterFilter) match(d *DeadLetterRecord) bool {
	return (f.Since.IsZero() || !d.Time.Before(f.Since)) && (f.Key == "" || d.Key == f.Key)
}

// ReadDeadLetters reads a group's dead-letter topic from its start to its
// current end and returns the dead letters matching f, oldest first per
// partition, with Redriven set from the group's retry topic.
func ReadDeadLetters(ctx context.Context, k *kafkaconn.Config, group string, f DeadLetterFilter) ([]DeadLetterRecord, error) {
	recs, err := readToEnd(ctx, k, schemas.DLQTopic(k.TopicPrefix, group))
	if err != nil {
		return nil, err
	}
	done, err := redriven(ctx, k, group)
	if err != nil {
		return nil, err
	}
	var out []DeadLetterRecord
	for _, r := range recs {
		d := parseDeadLetter(r)
		if f.match(&d) {
			d.Redriven = done[d.dlqRef()]
			out = append(out, d)
		}
	}
	return out, nil
}

// redriven returns the dead letters (dlqRef) the group's retry topic holds a
// committed redrive of.
func redriven(ctx context.Context, k *kafkaconn.Config, group string) (map[string]bool, error) {
	recs, err := readToEnd(ctx, k, schemas.RetryTopic(k.TopicPrefix, group))
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, r := range recs {
		if ref := header(r, schemas.HeaderRedriveDLQ); ref != "" {
			done[ref] = true
		}
	}
	return done, nil
}

// readToEnd reads every committed record of topic (read_committed) up to the
// end it has now. A topic that does not exist reads as empty.
func readToEnd(ctx context.Context, k *kafkaconn.Config, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(k.ClientOptions()...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	from := map[string]map[int32]kgo.Offset{topic: {}}
	left := map[int32]int64{}
	var lerr error
	ends.Each(func(e kadm.ListedOffset) {
		switch {
		case errors.Is(e.Err, kerr.UnknownTopicOrPartition):
		case e.Err != nil:
			lerr = fmt.Errorf("%s/%d: %w", e.Topic, e.Partition, e.Err)
		default:
			s, _ := starts.Lookup(e.Topic, e.Partition)
			if e.Offset > s.Offset {
				from[topic][e.Partition] = kgo.NewOffset().At(s.Offset)
				left[e.Partition] = e.Offset
			}
		}
	})
	if lerr != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, lerr)
	}
	if len(left) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append(k.ClientOptions(), kgo.ConsumePartitions(from),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("read %s/%d: %w", t, p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok {
				return
			}
			if !r.Attrs.IsControl() && r.Offset < end {
				out = append(out, r)
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Partition < out[j].Partition || out[i].Partition == out[j].Partition && out[i].Offset < out[j].Offset
	})
	return out, nil
}

// RedriveResult says what Redrive did with each selected dead letter.
type RedriveResult struct {
	// Redriven were published to the retry topic now; Skipped were not, with
	// the reason (already redriven, original no longer retained, …).
	Redriven []DeadLetterRecord
	Skipped  []SkippedDeadLetter
	// RetryTopic is where they were published.
	RetryTopic string
}

// SkippedDeadLetter is a selected dead letter Redrive did not publish.
type SkippedDeadLetter struct {
	DeadLetterRecord
	Why string
}

// Redrive re-publishes the group's dead letters matching f to its retry topic
// "<prefix>._retry.<group>", which the group consumes next to its table topics:
// each goes to the handlers that dead-lettered it, with its original key, value
// and headers (so its original Seq: a version-guarded sink that applied a newer
// change of the row meanwhile ignores it) and kanal.redrive.* headers naming
// where it came from.
//
// Redrive is idempotent: it publishes in one Kafka transaction, under a
// transactional id of the group's own (a concurrent redrive of the same group
// is fenced), and skips dead letters the retry topic already holds a redrive
// of. A truncated dead letter is redriven with its original record, read back
// from its table topic and checked against its SHA-256; when the original is no
// longer there (compacted away because a newer change of the row followed, or
// expired) it is skipped.
func Redrive(ctx context.Context, k *kafkaconn.Config, group string, f DeadLetterFilter, dryRun bool) (RedriveResult, error) {
	res := RedriveResult{RetryTopic: schemas.RetryTopic(k.TopicPrefix, group)}
	tx, err := kgo.NewClient(append(k.ClientOptions(),
		kgo.TransactionalID("kanal-redrive-"+group),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.DefaultProduceTopic(res.RetryTopic),
	)...)
	if err != nil {
		return res, fmt.Errorf("kafka client: %w", err)
	}
	defer tx.Close()
	if !dryRun {
		// Fence an earlier redrive of this group before reading what it did.
		if _, _, err := tx.ProducerID(ctx); err != nil {
			return res, fmt.Errorf("initialise transactional producer kanal-redrive-%s: %w", group, err)
		}
	}
	dls, err := ReadDeadLetters(ctx, k, group, f)
	if err != nil {
		return res, err
	}
	var recs []*kgo.Record
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, d := range dls {
		if d.Redriven {
			res.Skipped = append(res.Skipped, SkippedDeadLetter{d, "already redriven"})
			continue
		}
		if d.Topic == "" || d.OriginPartition < 0 || d.OriginOffset < 0 || d.Handler == "" {
			res.Skipped = append(res.Skipped, SkippedDeadLetter{d, "no kanal.dlq headers naming its origin and handler"})
			continue
		}
		value := d.Record.Value
		if d.TruncatedFrom > 0 {
			orig, why := readOriginal(ctx, k, &d)
			if why != "" {
				res.Skipped = append(res.Skipped, SkippedDeadLetter{d, why})
				continue
			}
			value = orig
		}
		rec := &kgo.Record{Topic: res.RetryTopic, Key: d.Record.Key, Value: value}
		for _, h := range d.Record.Headers {
			if !strings.HasPrefix(h.Key, "kanal.dlq.") && !strings.HasPrefix(h.Key, "kanal.redrive.") {
				rec.Headers = append(rec.Headers, h)
			}
		}
		add := func(key, v string) { rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: key, Value: []byte(v)}) }
		add(schemas.HeaderRedriveHandler, d.Handler)
		add(schemas.HeaderRedriveTopic, d.Topic)
		add(schemas.HeaderRedrivePartition, strconv.Itoa(int(d.OriginPartition)))
		add(schemas.HeaderRedriveOffset, strconv.FormatInt(d.OriginOffset, 10))
		add(schemas.HeaderRedriveDLQ, d.dlqRef())
		add(schemas.HeaderRedriveTime, now)
		recs = append(recs, rec)
		res.Redriven = append(res.Redriven, d)
	}
	if dryRun || len(recs) == 0 {
		return res, nil
	}
	// The group creates its retry topic when it starts; it may not have yet.
	if err := EnsureTopic(ctx, kadm.NewClient(tx), res.RetryTopic, 1); err != nil {
		return res, fmt.Errorf("create %s: %w", res.RetryTopic, err)
	}
	if err := tx.BeginTransaction(); err != nil {
		return res, err
	}
	perr := tx.ProduceSync(ctx, recs...).FirstErr()
	commit := kgo.TryCommit
	if perr != nil {
		commit = kgo.TryAbort
	}
	if err := tx.EndTransaction(ctx, commit); err != nil && perr == nil {
		perr = fmt.Errorf("commit the redrive: %w", err)
	}
	if perr != nil {
		res.Redriven = nil
		return res, fmt.Errorf("publish to %s: %w", res.RetryTopic, perr)
	}
	return res, nil
}

// readOriginal reads a truncated dead letter's original record from its table
// topic; why says why it cannot be used.
func readOriginal(ctx context.Context, k *kafkaconn.Config, d *DeadLetterRecord) (value []byte, why string) {
	cl, err := kgo.NewClient(append(k.ClientOptions(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		d.Topic: {d.OriginPartition: kgo.NewOffset().At(d.OriginOffset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(64<<20))...)
	if err != nil {
		return nil, err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil && ctx.Err() == nil {
			return nil, fmt.Sprintf("original %s/%d@%d unreadable: %v", d.Topic, d.OriginPartition, d.OriginOffset, ferr)
		}
		for _, r := range fs.Records() {
			if r.Offset != d.OriginOffset || !bytes.Equal(r.Key, d.Record.Key) {
				return nil, fmt.Sprintf("original %s/%d@%d is no longer retained (compacted: a newer change of the row followed, or expired)",
					d.Topic, d.OriginPartition, d.OriginOffset)
			}
			sum := sha256.Sum256(r.Value)
			if hex.EncodeToString(sum[:]) != d.SHA256 {
				return nil, fmt.Sprintf("original %s/%d@%d does not match the dead letter's SHA-256", d.Topic, d.OriginPartition, d.OriginOffset)
			}
			return r.Value, ""
		}
	}
	return nil, fmt.Sprintf("original %s/%d@%d not read within 15s", d.Topic, d.OriginPartition, d.OriginOffset)
}
