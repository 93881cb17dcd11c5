package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// worker handles one assigned partition: it takes queued records in offset
// order, a batch at a time, and applies them with every route of the group that
// matches the topic.
type worker struct {
	g         *group
	topic     string
	partition int32
	routes    []*groupRoute
	log       *slog.Logger

	ctx    context.Context // handler context; cancelled by kill
	cancel context.CancelFunc
	// wait ends with stop or kill: every wait between handler calls (retry
	// backoff, a halted record, a failing dead-letter write, a concurrency
	// slot) uses it, so a stop abandons what is not in progress at once.
	wait       context.Context
	waitCancel context.CancelFunc
	// retryTopic: the partition is of the group's retry topic, whose records
	// are for the handlers their redrive header names.
	retryTopic bool

	released atomic.Bool // set when the partition is given up; see group.commit

	// pauseMu orders the client's pause and resume calls of the partition, and
	// fetchPaused is what the client was last told.
	pauseMu     sync.Mutex
	fetchPaused bool

	stopOnce sync.Once
	stopping chan struct{} // closed: finish the current batch, then return
	done     chan struct{} // closed when run returns

	mu         sync.Mutex
	queue      []*kgo.Record
	nextQueued int64 // offset after the last queued record; older ones are dropped
	paused     bool  // whether fetching should be paused (see syncPause)
	wake       chan struct{}
	next       int64 // offset after the last applied record (-1: nothing yet)
	epoch      int32
	committedO int64 // last offset committed to Kafka (-1: none by us)
	end        int64 // last stable offset seen in a fetch (-1: unknown)

	// The last delete seen (worker goroutine only): the tombstone that follows a
	// delete gets its Seq, so versioned sinks can guard tombstones too.
	lastDelKey string
	lastDelSeq uint64
	// sawOffsetVersion: a record of this partition had no producer sequence
	// (see checkVersions).
	sawOffsetVersion bool

	dec recordDecoder // worker goroutine only
}

func newWorker(g *group, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(g.ctx)
	wait, waitCancel := context.WithCancel(ctx)
	w := &worker{
		g: g, topic: topic, partition: partition,
		log: g.log.With("topic", topic, "partition", partition),
		ctx: ctx, cancel: cancel, wait: wait, waitCancel: waitCancel,
		stopping: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), dec: recordDecoder{dec: newDecoder(g.r.schemas, g.skipUpdateBefore)}, nextQueued: -1, next: -1, committedO: -1, end: -1,
	}
	if topic == g.retryTopic {
		w.retryTopic = true
		w.routes = g.routes
		return w
	}
	for _, rt := range g.routes {
		if rt.re.MatchString(topic) {
			w.routes = append(w.routes, rt)
		}
	}
	return w
}

// newDecoder returns the worker's decoder. It does not alias: a record's value is
// a slice of the whole fetched (or decompressed) batch, so a handler that keeps a
// decoded string (a cache of rows, say) would keep the batch alive with it. With
// text values copied (into small blocks shared by consecutive records) it keeps
// at most a block. Avro writer schemas are looked up with sr; skipUpdateBefore
// leaves out the before images of updates (see UpdateBeforeUser).
func newDecoder(sr schemas.SchemaResolver, skipUpdateBefore bool) *schemas.Decoder {
	d := schemas.NewDecoder()
	d.Schemas = sr
	d.SkipUpdateBefore = skipUpdateBefore
	return d
}

// enqueue adds polled records; it pauses fetching the partition when the queue is
// full (QueueMaxRecords) and the worker resumes it once half of it is drained.
func (w *worker) enqueue(recs []*kgo.Record, end int64) {
	w.mu.Lock()
	if end >= 0 {
		w.end = end
	}
	for _, r := range recs {
		if r.Offset < w.nextQueued {
			continue // already queued once (a refetch); never apply out of order
		}
		w.queue = append(w.queue, r)
		w.nextQueued = r.Offset + 1
	}
	pause := !w.paused && len(w.queue) >= w.g.r.cfg.QueueMaxRecords
	if pause {
		w.paused = true
	}
	w.mu.Unlock()
	if pause {
		w.syncPause()
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// syncPause tells the client to pause or resume fetching the partition, as
// w.paused now says. The poll loop pauses and the worker resumes, each after
// deciding under w.mu: were the calls made as decided, a worker that drained the
// queue between the poll loop's decision and its call would resume first and the
// pause would then hold for good, with nothing left queued to resume it (a
// handler taking 4,000 records of a 5,000-record queue did, in bench row 4c).
// Under pauseMu the last call made is the one w.paused says last.
func (w *worker) syncPause() {
	w.pauseMu.Lock()
	defer w.pauseMu.Unlock()
	w.mu.Lock()
	want := w.paused
	w.mu.Unlock()
	if want == w.fetchPaused {
		return
	}
	tp := map[string][]int32{w.topic: {w.partition}}
	if want {
		w.g.cl.PauseFetchPartitions(tp)
	} else {
		w.g.cl.ResumeFetchPartitions(tp)
	}
	w.fetchPaused = want
}

// take waits for queued records and returns up to the group's batch bound
// (BatchMaxRecords, or the handlers' own: BatchSizer) of them, or nil
// when the worker is stopping.
func (w *worker) take() []*kgo.Record {
	for {
		select {
		case <-w.stopping:
			return nil
		case <-w.ctx.Done():
			return nil
		default:
		}
		w.mu.Lock()
		if n := len(w.queue); n > 0 {
			n = min(n, w.g.maxBatch())
			batch := make([]*kgo.Record, n)
			copy(batch, w.queue)
			w.queue = w.queue[n:]
			resume := w.paused && len(w.queue) <= w.g.r.cfg.QueueMaxRecords/2
			if resume {
				w.paused = false
			}
			w.mu.Unlock()
			if resume {
				w.syncPause()
			}
			return batch
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.stopping:
			return nil
		case <-w.ctx.Done():
			return nil
		}
	}
}

func (w *worker) run() {
	defer close(w.done)
	for {
		batch := w.take()
		if batch == nil {
			return
		}
		if err := w.process(batch); err != nil {
			return // stopped mid-batch: what was applied is marked, the rest replays
		}
	}
}

// stop asks the worker to return after its in-flight Handle call: waits for a
// retry, a halted record or a dead-letter write end at once.
func (w *worker) stop() {
	w.stopOnce.Do(func() {
		close(w.stopping)
		w.waitCancel()
	})
}

// kill cancels the in-flight batch's context and stops the worker.
func (w *worker) kill() {
	w.stop()
	w.cancel()
}

// cleanup drops what the worker reported once it no longer owns the partition.
func (w *worker) cleanup() {
	w.cancel()
	for _, rt := range w.routes {
		w.g.r.clearHalted(rt.name, w.topic, w.partition)
	}
	w.g.r.m.lag.DeleteLabelValues(w.g.name, w.topic, strconv.Itoa(int(w.partition)))
}

// mark records that everything below off is applied.
func (w *worker) mark(off int64, epoch int32) {
	w.mu.Lock()
	if off > w.next {
		w.next = off
		w.epoch = epoch
	}
	w.mu.Unlock()
}

func (w *worker) uncommitted() (kgo.EpochOffset, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next < 0 || w.next <= w.committedO {
		return kgo.EpochOffset{}, false
	}
	return kgo.EpochOffset{Epoch: w.epoch, Offset: w.next}, true
}

func (w *worker) committed(off int64) {
	w.mu.Lock()
	if off > w.committedO {
		w.committedO = off
	}
	w.mu.Unlock()
}

func (w *worker) updateLag() {
	w.mu.Lock()
	next, end := w.next, w.end
	w.mu.Unlock()
	if next >= 0 && end >= 0 {
		w.g.r.m.lag.WithLabelValues(w.g.name, w.topic, strconv.Itoa(int(w.partition))).Set(float64(max(end-next, 0)))
	}
}

func (w *worker) isCaughtUp() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end >= 0 && w.next >= w.end && len(w.queue) == 0
}

// stopped reports whether the worker was told to stop (or killed). Processing
// then returns early at the next wait — between retries, before taking a
// concurrency slot, while halted — and nothing that did not finish is marked
// applied or dead-lettered: the partition's next owner replays it.
func (w *worker) stopped() bool { return w.wait.Err() != nil }

var errStopped = errors.New("worker stopped")

// once is the retry configuration of a single attempt.
var once = RetryConfig{MaxAttempts: 1, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}

// process applies one batch of Kafka records: records that decode are applied in
// runs, records that do not are dead-lettered in their place, control records and
// DDL messages are skipped. It returns errStopped when the worker was stopped
// before the batch was done.
func (w *worker) process(krecs []*kgo.Record) error {
	run := make([]Record, 0, len(krecs))
	routes := w.routes
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := w.applyAll(run, routes)
		run = run[:0]
		return err
	}
	for _, kr := range krecs {
		if kr.Attrs.IsControl() {
			continue
		}
		recRoutes := w.routes
		if w.retryTopic {
			// A redriven record goes only to the handlers that dead-lettered it.
			recRoutes = w.redriveRoutes(kr)
			if len(recRoutes) == 0 {
				w.g.r.m.skipped.WithLabelValues(w.g.name, "redrive-no-handler").Inc()
				w.log.Warn("redriven record names no handler of this group that takes its table: skipped",
					"offset", kr.Offset, "key", string(kr.Key), "handler", header(kr, schemas.HeaderRedriveHandler),
					"origin_topic", header(kr, schemas.HeaderRedriveTopic))
				continue
			}
			if !slices.Equal(recRoutes, routes) {
				if err := flush(); err != nil {
					return err
				}
				routes = recRoutes
			}
		}
		n := len(run)
		var err error
		run, err = w.decode(run, kr)
		if err == nil {
			if err = w.checkVersions(run[n:]); err != nil {
				run = run[:n]
			}
		}
		switch {
		case w.stopped():
			return errStopped
		case errors.Is(err, schemas.ErrDDL):
			w.g.r.m.skipped.WithLabelValues(w.g.name, "ddl").Inc()
			continue
		case err != nil:
			if err := flush(); err != nil {
				return err
			}
			names := make([]string, len(recRoutes))
			for i, rt := range recRoutes {
				names[i] = rt.name
			}
			w.log.Error("record cannot be decoded: dead-lettering it", "offset", kr.Offset, "key", string(kr.Key), "err", err)
			if err := w.deadLetter(strings.Join(names, ","), tableOfKey(string(kr.Key)), kr, "decode", err, 0); err != nil {
				return err
			}
			if len(w.routes) == 1 {
				w.mark(kr.Offset+1, kr.LeaderEpoch)
			}
			continue
		}
		for i := n; i < len(run); i++ {
			r := &run[i]
			switch {
			case r.Tombstone && r.Seq == 0 && r.Key == w.lastDelKey:
				r.Seq = w.lastDelSeq
			case !r.Tombstone && r.Op == schemas.OpDelete:
				w.lastDelKey, w.lastDelSeq = r.Key, r.Seq
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	last := krecs[len(krecs)-1]
	w.mark(last.Offset+1, last.LeaderEpoch)
	w.updateLag()
	return nil
}

// decode appends a record's records to dst; while its Avro writer schema cannot
// be looked up (a registry or Kafka that does not answer) it retries with backoff
// rather than dead-letter a record that is fine. On an error dst is returned as
// it was.
func (w *worker) decode(dst []Record, kr *kgo.Record) ([]Record, error) {
	out, err := w.dec.decode(w.ctx, dst, kr)
	if !errors.Is(err, schemas.ErrSchemaUnavailable) {
		return out, err // the usual case, without the retry loop's allocations
	}
	cfg := RetryConfig{MaxAttempts: 1 << 30, InitialInterval: 200 * time.Millisecond, MaxInterval: 10 * time.Second}
	err = retry(w.ctx, cfg, func(int) error {
		var err error
		out, err = w.dec.decode(w.ctx, dst, kr)
		if err != nil && !errors.Is(err, schemas.ErrSchemaUnavailable) {
			return Permanent(err)
		}
		return err
	}, func(attempt int, err error, wait time.Duration) {
		w.log.Warn("record's schema unavailable; retrying", "offset", kr.Offset, "attempt", attempt, "err", err)
	})
	var perm *permanentError
	if errors.As(err, &perm) {
		err = perm.err
	}
	return out, err
}

// redriveRoutes returns the routes a record of the retry topic is for: those
// named by its redrive header whose tables match the topic it was first read from.
func (w *worker) redriveRoutes(kr *kgo.Record) []*groupRoute {
	names := strings.Split(header(kr, schemas.HeaderRedriveHandler), ",")
	origin := header(kr, schemas.HeaderRedriveTopic)
	var out []*groupRoute
	for _, rt := range w.routes {
		if slices.Contains(names, rt.name) && rt.re.MatchString(origin) {
			out = append(out, rt)
		}
	}
	return out
}

// applyAll applies recs with each of routes, one route after the other.
func (w *worker) applyAll(recs []Record, routes []*groupRoute) error {
	for _, rt := range routes {
		if err := w.applyRoute(rt, recs); err != nil {
			return err
		}
	}
	return nil
}

// applyRoute applies recs with one route. A run of several Kafka records is tried
// once; when it fails it is bisected at once (retrying the whole run first only
// multiplies the time a single bad record costs) so that the records that apply
// are applied in order and only the failing ones get retries and meet the
// failure policy.
func (w *worker) applyRoute(rt *groupRoute, recs []Record) error {
	if len(units(recs)) == 1 {
		return w.applyUnit(rt, recs)
	}
	err := w.handle(rt, recs, once)
	if err == nil {
		w.applied(rt, recs)
		return nil
	}
	if w.stopped() {
		return errStopped
	}
	w.log.Warn("batch failed: bisecting it to find the failing records", "handler", rt.name,
		"first_offset", recs[0].Offset, "records", len(recs), "err", err)
	return w.isolate(rt, recs)
}

// isolate bisects a failed run of at least two Kafka records. Each half of
// several records is tried once and bisected again when it fails; a single
// Kafka record gets the full retry budget.
func (w *worker) isolate(rt *groupRoute, recs []Record) error {
	cuts := units(recs)
	mid := cuts[len(cuts)/2]
	for _, half := range [][]Record{recs[:mid], recs[mid:]} {
		if len(units(half)) == 1 {
			if err := w.applyUnit(rt, half); err != nil {
				return err
			}
			continue
		}
		err := w.handle(rt, half, once)
		if err == nil {
			w.applied(rt, half)
			continue
		}
		if w.stopped() {
			return errStopped
		}
		if err := w.isolate(rt, half); err != nil {
			return err
		}
	}
	return nil
}

// applyUnit applies the records of one Kafka record with the route's retries,
// then its failure policy.
func (w *worker) applyUnit(rt *groupRoute, recs []Record) error {
	err := w.handle(rt, recs, rt.retry)
	if err == nil {
		w.applied(rt, recs)
		return nil
	}
	if w.stopped() {
		return errStopped
	}
	return w.fail(rt, recs, err)
}

// units returns the start index of each Kafka record's records in recs (a Canal
// message with several rows is one unit: it is applied or dead-lettered whole).
func units(recs []Record) []int {
	var cuts []int
	for i := range recs {
		if i == 0 || recs[i].Offset != recs[i-1].Offset {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

// fail handles the records of one Kafka record that keep failing.
func (w *worker) fail(rt *groupRoute, recs []Record, err error) error {
	r := recs[0]
	if IsPermanent(err) || rt.policy == DeadLetter {
		reason := "permanent"
		if !IsPermanent(err) {
			reason = "retries-exhausted"
		}
		w.log.Error("record failed: dead-lettering it", "handler", rt.name, "offset", r.Offset,
			"table", r.Table, "key", r.Key, "reason", reason, "err", err)
		if err := w.deadLetter(rt.name, r.Table, r.Raw, reason, err, attemptsOf(err)); err != nil {
			return err
		}
		w.applied(rt, nil)
		if len(w.routes) == 1 {
			w.mark(r.Offset+1, r.Raw.LeaderEpoch)
		}
		return nil
	}
	// Halt: stay on this record. Retrying it now and then lets a partition that
	// failed because its sink was down resume by itself. Between retries nothing
	// is in progress, so a stop (shutdown, revoke) returns at once.
	hp := HaltedPartition{Handler: rt.name, Group: w.g.name, Topic: w.topic, Partition: w.partition,
		Offset: r.Offset, Table: r.Table, Key: r.Key, Error: truncate(err.Error(), 500), Since: time.Now()}
	w.log.Error("partition halted: a record keeps failing", "handler", rt.name, "offset", r.Offset,
		"table", r.Table, "key", r.Key, "retry_every", rt.retry.MaxInterval, "err", err)
	w.g.r.setHalted(hp)
	defer w.g.r.clearHalted(rt.name, w.topic, w.partition)
	for attempt := 1; ; attempt++ {
		if sleep(w.wait, rt.retry.MaxInterval) != nil {
			return errStopped
		}
		err = w.handle(rt, recs, once)
		switch {
		case err == nil:
			w.log.Info("halted partition resumed: the record was applied", "handler", rt.name, "offset", r.Offset, "attempts", attempt)
			w.applied(rt, recs)
			return nil
		case w.stopped():
			return errStopped
		case IsPermanent(err):
			return w.fail(rt, recs, err)
		}
		w.g.r.m.retries.WithLabelValues(rt.name).Inc()
		w.log.Warn("halted partition: the record still fails", "handler", rt.name, "offset", r.Offset,
			"table", r.Table, "key", r.Key, "attempt", attempt, "retry_in", rt.retry.MaxInterval, "err", err)
		hp.Error = truncate(err.Error(), 500)
		w.g.r.setHalted(hp)
	}
}

// handle calls the route's handler with retries; each attempt holds one of the
// group's concurrency slots, waits between attempts do not. A stop ends the
// waits, never a Handle call in progress (only kill, after revoke_timeout, does).
func (w *worker) handle(rt *groupRoute, recs []Record, cfg RetryConfig) error {
	b := Batch{Group: w.g.name, Topic: w.topic, Partition: w.partition, Records: recs}
	m := w.g.r.m
	return retry(w.wait, cfg, func(int) error {
		select {
		case w.g.sem <- struct{}{}:
		case <-w.wait.Done():
			return w.wait.Err()
		}
		defer func() { <-w.g.sem }()
		start := time.Now()
		err := rt.h.Handle(w.ctx, b)
		m.applyLatency.WithLabelValues(rt.name).Observe(time.Since(start).Seconds())
		m.batchSize.WithLabelValues(rt.name).Observe(float64(len(recs)))
		return err
	}, func(attempt int, err error, wait time.Duration) {
		m.retries.WithLabelValues(rt.name).Inc()
		w.log.Warn("handler failed; retrying", "handler", rt.name, "attempt", attempt, "wait", wait.Round(time.Millisecond),
			"first_offset", recs[0].Offset, "records", len(recs), "err", err)
	})
}

// applied accounts for records a route applied; with a single route the
// partition's progress moves with it, so a halt or stop later in the batch does
// not replay what is done.
func (w *worker) applied(rt *groupRoute, recs []Record) {
	if len(recs) == 0 {
		return
	}
	m := w.g.r.m
	var newest int64
	counts := map[string]int{}
	for i := range recs {
		counts[recs[i].Table]++
		if c := recs[i].Change; c != nil && c.Source.TsMs > newest {
			newest = c.Source.TsMs
		}
	}
	for t, n := range counts {
		m.applied.WithLabelValues(rt.name, t).Add(float64(n))
	}
	if newest > 0 {
		m.observeSource(rt.name, newest)
	}
	if len(w.routes) == 1 {
		last := recs[len(recs)-1]
		w.mark(last.Offset+1, last.Raw.LeaderEpoch)
	}
}

// checkVersions refuses a record with a producer sequence after records without
// one in the same partition: a topic that Canal wrote and then kanal (a producer
// switch on the same topics) has versions of two kinds, and the new, lower
// sequences would be ignored by version-guarded sinks. The other way round needs
// no check: derived versions lie above every sequence.
func (w *worker) checkVersions(recs []Record) error {
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Tombstone || r.Seq == 0:
		case r.Seq >= OffsetVersionBase:
			w.sawOffsetVersion = true
		case w.sawOffsetVersion:
			return fmt.Errorf("%w: %s key %s has kanal.seq %d after records without one in %s/%d",
				ErrMixedVersions, r.Table, r.Key, r.Seq, r.Topic, r.Partition)
		}
	}
	return nil
}
