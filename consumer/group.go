package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-cdc/kanal/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// group is one consumer group: one Kafka client, the routes sharing it, and a
// worker per assigned partition.
type group struct {
	r       *Runner
	name    string
	log     *slog.Logger
	routes  []*groupRoute
	topicRE string
	// retryTopic is "<prefix>._retry.<group>": redriven dead letters, consumed
	// with the table topics.
	retryTopic string
	store      OffsetStore // set when the group's only handler keeps its offsets
	// skipUpdateBefore: no route reads the before image of updates (see
	// UpdateBeforeUser), so the workers' decoders do not build it.
	skipUpdateBefore bool
	// batchMax bounds a batch's records: the Runner's BatchMaxRecords, or
	// the handlers' own (BatchSizer); 0 until prepare.
	batchMax int
	member   membership
	sem      chan struct{}

	cl     *kgo.Client
	ctx    context.Context // ends when the group shuts down; parent of workers
	cancel context.CancelFunc

	mu      sync.Mutex
	workers map[tp]*worker

	// commitMu makes each commit, from reading the applied offsets to the broker's
	// answer, one step: otherwise a periodic commit that read older offsets could
	// land after the commit made on revoke and rewind the partition.
	commitMu sync.Mutex

	// aborted is set by abort (tests: a simulated crash); callbacks then neither
	// wait nor commit.
	aborted atomic.Bool
}

type tp struct {
	topic     string
	partition int32
}

// groupRoute is a route as the group runs it.
type groupRoute struct {
	name    string
	h       Handler // wrapped with the Runner's middleware
	re      *regexp.Regexp
	policy  Policy
	retry   RetryConfig
	handler Handler // as registered
	// afterOnly: neither the handler nor a middleware of the route reads the
	// before image of updates.
	afterOnly bool
}

func newGroup(r *Runner, name string) *group {
	return &group{r: r, name: name, log: r.log.With("group", name), workers: map[tp]*worker{},
		sem: make(chan struct{}, r.cfg.Concurrency)}
}

func (g *group) addRoute(rt Route) error {
	re, err := TopicPattern(g.r.cfg.Kafka.TopicPrefix, rt.Tables)
	if err != nil {
		return fmt.Errorf("handler %q: %w", rt.Handler.Name(), err)
	}
	gr := &groupRoute{name: rt.Handler.Name(), re: regexp.MustCompile(re), policy: rt.OnFailure, handler: rt.Handler}
	if gr.policy == "" {
		gr.policy = g.r.cfg.OnFailure
	}
	gr.retry = g.r.cfg.Retry
	if rt.Retry != nil {
		gr.retry = *rt.Retry
	}
	mws := append([]Middleware{Recover()}, rt.Middleware...)
	gr.h = Chain(rt.Handler, mws...)
	if s, ok := rt.Handler.(OffsetStore); ok {
		g.store = s
	}
	if u, ok := rt.Handler.(UpdateBeforeUser); ok && len(rt.Middleware) == 0 {
		gr.afterOnly = !u.UsesUpdateBefore()
	}
	g.routes = append(g.routes, gr)
	return nil
}

func (g *group) prepare() error {
	alts := make([]string, len(g.routes))
	g.skipUpdateBefore = true
	g.batchMax = handlersBatchMax(g.routes, g.r.cfg.QueueMaxRecords)
	if g.batchMax == 0 {
		g.batchMax = g.r.cfg.BatchMaxRecords
	}
	for i, rt := range g.routes {
		g.skipUpdateBefore = g.skipUpdateBefore && rt.afterOnly
		alts[i] = "(?:" + rt.re.String() + ")"
		g.r.m.mu.Lock()
		g.r.m.freshness[rt.name] = &freshness{caughtUp: g.caughtUp}
		g.r.m.mu.Unlock()
	}
	g.retryTopic = schemas.RetryTopic(g.r.cfg.Kafka.TopicPrefix, g.name)
	alts = append(alts, "^"+regexp.QuoteMeta(g.retryTopic)+"$")
	g.topicRE = strings.Join(alts, "|")
	return nil
}

// handlersBatchMax is the smallest bound the routes' handlers set on a batch
// (BatchSizer), at most queueMax, or 0 when some handler sets none.
func handlersBatchMax(routes []*groupRoute, queueMax int) int {
	n := 0
	for _, rt := range routes {
		bs, ok := rt.handler.(BatchSizer)
		if !ok {
			return 0
		}
		m := bs.BatchMaxRecords()
		if m <= 0 {
			return 0
		}
		if n == 0 || m < n {
			n = m
		}
	}
	return min(n, queueMax)
}

// maxBatch is the bound on a batch's records.
func (g *group) maxBatch() int {
	if g.batchMax > 0 {
		return g.batchMax
	}
	return g.r.cfg.BatchMaxRecords
}

func (g *group) startOffset() kgo.Offset {
	if g.r.cfg.Start == "latest" {
		return kgo.NewOffset().AtEnd()
	}
	return kgo.NewOffset().AtStart()
}

// run consumes until ctx ends, then shuts down gracefully.
func (g *group) run(ctx context.Context) error {
	cfg := &g.r.cfg
	g.ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer g.cancel()
	member, err := resolveMembership(cfg, g.name)
	if err != nil {
		return err
	}
	g.member = member
	defer member.release()
	// The dead-letter and retry topics exist before the group is joined, so
	// that the first metadata of the group's client has the retry topic.
	g.ensureTopics(ctx)
	opts := append(g.r.clientOptions("kanal-consumer-"+g.name),
		kgo.ConsumerGroup(g.name),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(g.topicRE),
		kgo.ConsumeResetOffset(g.startOffset()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		// Control records (transaction markers) come through so that the
		// committed offset can move past them: a caught-up group then shows lag 0.
		kgo.KeepControlRecords(),
		kgo.DisableAutoCommit(),
		// Rebalance callbacks run only between polls, after the records of the
		// last poll were queued on their partitions' workers: records polled
		// before a revoke can never be queued on a worker created after it.
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RevokeTimeout+30*time.Second),
		kgo.OnPartitionsAssigned(g.onAssigned),
		kgo.OnPartitionsRevoked(g.onRevoked),
		kgo.OnPartitionsLost(g.onLost),
	)
	if member.instanceID != "" {
		opts = append(opts, kgo.InstanceID(member.instanceID))
	}
	if g.store != nil || cfg.Start == "latest" {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(g.adjustOffsets))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	g.cl = cl
	g.log.Info("joining consumer group", "instance_id", member.instanceID, "session_timeout", cfg.SessionTimeout)

	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.commitLoop(pctx) }()
	fatal := g.pollLoop(pctx)
	pcancel()
	wg.Wait()

	if g.aborted.Load() {
		// A simulated crash: the client goes away without committing or leaving
		// (its network is cut), in the background because leaving cannot finish.
		go cl.Close()
		return nil
	}
	// Shutdown: finish in-flight batches, commit, leave.
	g.mu.Lock()
	all := make([]tp, 0, len(g.workers))
	for k := range g.workers {
		all = append(all, k)
	}
	g.mu.Unlock()
	if fatal == nil {
		g.log.Info("stopping: finishing in-flight batches (halted records and retry waits are abandoned), committing, leaving",
			"partitions", len(all), "revoke_timeout", cfg.RevokeTimeout)
	}
	cl.AllowRebalance()
	g.release(all, fatal == nil)
	cl.Close()
	if fatal != nil {
		return fatal
	}
	if member.instanceID != "" {
		g.leaveStatic()
	}
	g.log.Info("left consumer group")
	return nil
}

// leaveStatic removes this static member from the group on a graceful stop, so
// that its partitions move to the other members at once: a static member's
// client does not leave by itself, and the group would keep its partitions
// for it until session_timeout.
func (g *group) leaveStatic() {
	cl, err := kgo.NewClient(g.r.clientOptions("kanal-consumer-" + g.name)...)
	if err != nil {
		g.log.Warn("cannot leave the group as a static member; its partitions wait for session_timeout", "err", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(g.name).InstanceIDs(g.member.instanceID).Reason("kanal consumer stopping"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownMemberID) {
		g.log.Warn("leaving the group as a static member failed; its partitions wait for session_timeout",
			"instance_id", g.member.instanceID, "err", err)
	}
}

// pollLoop polls and queues records on their partitions' workers until ctx ends.
// It returns an error when the group cannot go on: another member took this
// member's instance id.
func (g *group) pollLoop(ctx context.Context) error {
	cl := g.cl
	for {
		fs := cl.PollRecords(ctx, 20*g.r.cfg.BatchMaxRecords)
		if fs.IsClientClosed() || ctx.Err() != nil || g.aborted.Load() {
			cl.AllowRebalance()
			return nil
		}
		errOnly := fs.NumRecords() == 0
		var fatal error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if errors.Is(err, kerr.FencedInstanceID) {
				// Rejoining would fence the other member in turn, over and over.
				fatal = fmt.Errorf("another member of group %s joined with this member's instance id %q: give each member its own consumers.instance_id: %w",
					g.name, g.member.instanceID, err)
				return
			}
			g.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		if fatal != nil {
			cl.AllowRebalance()
			g.log.Error("leaving the consumer group", "err", fatal)
			return fatal
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			w := g.worker(p.Topic, p.Partition)
			w.enqueue(p.Records, p.LastStableOffset)
		})
		cl.AllowRebalance()
		if errOnly && len(fs.Errors()) > 0 {
			// Errors without records come back at once; do not spin on them.
			if sleep(ctx, 500*time.Millisecond) != nil {
				return nil
			}
		}
	}
}

// worker returns the partition's worker, starting it if needed.
func (g *group) worker(topic string, partition int32) *worker {
	w, _ := g.startWorker(topic, partition)
	return w
}

// startWorker returns the partition's worker and whether it was started now.
func (g *group) startWorker(topic string, partition int32) (*worker, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := tp{topic, partition}
	w := g.workers[k]
	if w == nil {
		w = newWorker(g, topic, partition)
		g.workers[k] = w
		go w.run()
		return w, true
	}
	return w, false
}

func (g *group) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	n := 0
	// The client keeps a partition paused until it is resumed, across
	// rebalances: one revoked while its queue was full and assigned back would
	// never be fetched by its new worker, which starts unpaused.
	fresh := map[string][]int32{}
	for t, ps := range assigned {
		for _, p := range ps {
			if _, started := g.startWorker(t, p); started {
				fresh[t] = append(fresh[t], p)
			}
			n++
		}
	}
	if len(fresh) > 0 {
		cl.ResumeFetchPartitions(fresh)
	}
	g.r.m.rebalances.WithLabelValues(g.name, "assigned").Add(float64(n))
	g.log.Info("partitions assigned", "partitions", formatTPs(assigned))
}

func (g *group) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if g.aborted.Load() {
		return
	}
	tps := flatten(revoked)
	if len(tps) == 0 {
		return
	}
	g.r.m.rebalances.WithLabelValues(g.name, "revoked").Add(float64(len(tps)))
	g.log.Info("partitions revoked: finishing in-flight batches", "partitions", formatTPs(revoked))
	g.release(tps, true)
}

func (g *group) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if g.aborted.Load() {
		return
	}
	tps := flatten(lost)
	if len(tps) == 0 {
		return
	}
	g.r.m.rebalances.WithLabelValues(g.name, "lost").Add(float64(len(tps)))
	g.log.Warn("partitions lost: stopping their handlers without committing", "partitions", formatTPs(lost))
	g.release(tps, false)
}

// release stops the workers of tps. Graceful: each finishes its in-flight batch
// (bounded by RevokeTimeout, then its context is cancelled) and the applied
// offsets are committed. Otherwise (partitions lost) handlers are cancelled at
// once and nothing is committed: another member may own the partitions already.
func (g *group) release(tps []tp, graceful bool) {
	g.mu.Lock()
	var ws []*worker
	for _, k := range tps {
		if w := g.workers[k]; w != nil {
			ws = append(ws, w)
			delete(g.workers, k)
			w.released.Store(true)
		}
	}
	g.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		if graceful {
			w.stop()
		} else {
			w.kill()
		}
	}
	timeout := g.r.cfg.RevokeTimeout
	if !graceful {
		timeout = min(timeout, 5*time.Second)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-deadline.C:
			// Out of time: cancel whatever still runs and give it a moment to
			// return, so that it stops writing before another member takes over.
			for _, w := range ws {
				w.kill()
			}
			grace := time.NewTimer(5 * time.Second)
			for _, w := range ws {
				select {
				case <-w.done:
				case <-grace.C:
					g.log.Error("handler did not return after its context was cancelled; the partition's next owner may apply records concurrently",
						"topic", w.topic, "partition", w.partition)
				}
			}
			grace.Stop()
		}
	}
	for _, w := range ws {
		w.cleanup()
	}
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.commit(ctx, ws, true); err != nil {
			g.log.Warn("commit on release failed; the next owner replays from the previous commit", "err", err)
		}
	}
}

// adjustOffsets replaces the offsets Kafka has for newly assigned partitions by
// those the handler stored in its sink, and starts the retry topic at its
// beginning when the group has no offset there: a redrive published while the
// group was stopped must not be skipped by start: latest.
func (g *group) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	if g.store == nil {
		for p, o := range offsets[g.retryTopic] {
			if o.EpochOffset().Offset < 0 {
				offsets[g.retryTopic][p] = kgo.NewOffset().AtStart()
			}
		}
		return offsets, nil
	}
	parts := map[string][]int32{}
	for t, ps := range offsets {
		for p := range ps {
			parts[t] = append(parts[t], p)
		}
	}
	stored, err := g.store.LoadOffsets(ctx, g.name, parts)
	if err != nil {
		g.log.Error("load offsets from the sink", "handler", g.store.Name(), "err", err)
		return nil, fmt.Errorf("handler %s: load offsets: %w", g.store.Name(), err)
	}
	for t, ps := range offsets {
		for p := range ps {
			switch off, ok := stored[t][p]; {
			case ok:
				ps[p] = kgo.NewOffset().At(off).WithEpoch(-1)
			case t == g.retryTopic:
				ps[p] = kgo.NewOffset().AtStart()
			default:
				ps[p] = g.startOffset()
			}
		}
	}
	g.log.Info("resuming from offsets stored in the sink", "handler", g.store.Name(), "offsets", stored)
	return offsets, nil
}

func (g *group) commitLoop(ctx context.Context) {
	t := time.NewTicker(g.r.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.aborted.Load() {
			return
		}
		g.mu.Lock()
		ws := make([]*worker, 0, len(g.workers))
		for _, w := range g.workers {
			ws = append(ws, w)
		}
		g.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := g.commit(cctx, ws, false); err != nil && ctx.Err() == nil {
			g.log.Warn("offset commit failed; retrying at the next interval", "err", err)
		}
		cancel()
		for _, w := range ws {
			w.updateLag()
		}
	}
}

// commit commits the applied offsets of ws that moved since their last commit.
// Workers already released are committed only by release itself (final), never
// by the periodic commit: the partition may have a new owner by then.
func (g *group) commit(ctx context.Context, ws []*worker, final bool) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var pending []*worker
	for _, w := range ws {
		if w.released.Load() != final {
			continue
		}
		if eo, ok := w.uncommitted(); ok {
			if offsets[w.topic] == nil {
				offsets[w.topic] = map[int32]kgo.EpochOffset{}
			}
			offsets[w.topic][w.partition] = eo
			pending = append(pending, w)
		}
	}
	if len(offsets) == 0 || g.aborted.Load() {
		return nil
	}
	var cerr error
	g.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	if cerr != nil {
		g.r.m.commits.WithLabelValues(g.name, "error").Inc()
		return cerr
	}
	g.r.m.commits.WithLabelValues(g.name, "ok").Inc()
	for _, w := range pending {
		w.committed(offsets[w.topic][w.partition].Offset)
	}
	return nil
}

// caughtUp reports whether every partition of the group is applied to its end.
func (g *group) caughtUp() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.workers) == 0 {
		return false
	}
	for _, w := range g.workers {
		if !w.isCaughtUp() {
			return false
		}
	}
	return true
}

// ensureTopics creates the group's dead-letter and retry topics if they do not
// exist; a failure is only logged (the topics may be managed by an
// administrator) and shows later as a failing dead-letter write.
func (g *group) ensureTopics(ctx context.Context) {
	cl, err := kgo.NewClient(g.r.clientOptions("kanal-consumer-" + g.name)...)
	if err != nil {
		g.log.Warn("cannot create the dead-letter and retry topics", "err", err)
		return
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, topic := range []string{schemas.DLQTopic(g.r.cfg.Kafka.TopicPrefix, g.name), g.retryTopic} {
		if err := EnsureTopic(cctx, kadm.NewClient(cl), topic, g.r.cfg.DLQPartitions); err != nil {
			g.log.Warn("cannot create topic", "topic", topic, "err", err)
		}
	}
}

// EnsureTopic creates a dead-letter or retry topic with the broker's default
// settings unless it exists.
func EnsureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	return nil
}

// abort simulates a crash (tests): stop at once, commit nothing, leave nothing.
func (g *group) abort() {
	g.aborted.Store(true)
	g.mu.Lock()
	for _, w := range g.workers {
		w.kill()
	}
	g.mu.Unlock()
}

func flatten(m map[string][]int32) []tp {
	var out []tp
	for t, ps := range m {
		for _, p := range ps {
			out = append(out, tp{t, p})
		}
	}
	return out
}

func formatTPs(m map[string][]int32) string {
	var b strings.Builder
	for t, ps := range m {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s%v", t, ps)
	}
	return b.String()
}
