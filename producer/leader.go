package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// Roles of a process in the election.
const (
	RoleStarting = "starting" // not yet in the group
	RoleStandby  = "standby"  // in the group, waiting
	RoleActive   = "active"   // capturing the source
)

// errNotLeader stops a session that was about to fence the transactional id
// although the group coordinator no longer counts this process as the active
// member. It wraps ErrFenced, so Run stops as it does when fenced.
var errNotLeader = fmt.Errorf("%w: this process is not the active member of its group", ErrFenced)

// Leader runs a Producer as one member of a group of `kanal produce` processes
// of the same source, of which exactly one is active.
//
// The election is a Kafka consumer group, ProducerGroup(source), subscribed to
// the single-partition positions topic, with the cooperative sticky assignor:
// the member assigned partition 0 is active, the others stand by without a
// binlog connection. Sticky assignment keeps the partition where it is when
// standbys come and go. When the active member dies or is cut off, the group
// coordinator drops it after ha.session_timeout and gives the partition to a
// standby; a clean stop leaves the group at once.
//
// Safety does not rest on the election but on transactional fencing: each
// capture begins by initialising the transactional id "kanal-<source>" (which
// aborts the previous holder's open transaction and makes every later write or
// commit of it fail) and only then reads the last committed position. An old
// active member that has not noticed it lost its partition (frozen, cut off)
// can therefore never commit after the new one has begun, and what it had
// committed is exactly what the new one resumes from. The election only keeps
// the members from taking turns fencing each other: before fencing, a member
// checks with the coordinator that it still holds the partition, so a stale
// member waking up cannot fence the real one.
type Leader struct {
	p        *Producer
	cfg      *Config
	log      *slog.Logger
	instance string

	role     atomic.Value // string
	inGroup  atomic.Bool
	fenced   atomic.Uint64
	acquired atomic.Uint64
	released atomic.Uint64
	lost     atomic.Uint64

	cl        *kgo.Client  // the group member (HA) or a plain client for status records
	adminAddr atomic.Value // string

	runCtx context.Context
	fatal  chan error

	mu   sync.Mutex
	term *term
}

// term is one period as the active member.
type term struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLeader wraps p. Run it instead of p.Run. With ha.enabled false the
// Leader captures at once and only adds the admin endpoint and status
// records.
//
// A Producer has one Leader: a second NewLeader of the same Producer is an
// error wrapping ErrConfig, as is one whose metrics (kanal_producer_role, …)
// collide with collectors registered on p.Metrics() before.
func NewLeader(p *Producer) (*Leader, error) {
	if !p.led.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: source %s: this Producer already has a Leader (one Leader per Producer)", ErrConfig, p.cfg.Source.Name)
	}
	l := &Leader{p: p, cfg: &p.cfg, log: p.log, instance: p.cfg.HA.Instance, fatal: make(chan error, 1)}
	if err := p.Metrics().Register(newLeaderCollector(l)); err != nil {
		p.led.Store(false)
		return nil, fmt.Errorf("%w: source %s: the Leader's metrics: %w", ErrConfig, p.cfg.Source.Name, err)
	}
	if l.instance == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "kanal"
		}
		l.instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	l.role.Store(RoleStarting)
	if p.cfg.HA.Enabled {
		p.beforeFence = l.confirm
	}
	return l, nil
}

// Instance is the name of this process in the group and in status records.
func (l *Leader) Instance() string { return l.instance }

// Role is RoleStarting, RoleStandby or RoleActive.
func (l *Leader) Role() string { return l.role.Load().(string) }

// Run takes part in the election until ctx is cancelled, capturing the source
// whenever this process is the active member. On cancellation the active
// member commits what it has, then leaves the group so that a standby takes
// over at once; Run returns nil. A permanent capture error (see Producer.Run)
// is returned; being fenced is not one here: the process goes back to standing
// by.
func (l *Leader) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.runCtx = ctx
	if l.cfg.Admin.Listen != "" {
		srv, err := l.serve(ctx)
		if err != nil {
			return err
		}
		defer shutdownServer(srv)
	}
	if !l.cfg.HA.Enabled {
		cl, err := kgo.NewClient(append(append(l.cfg.Kafka.ClientOptions(), kgo.ClientID("kanal-produce-"+l.instance),
			kgo.WithLogger(kafkaconn.Logger(l.log))), l.statusWrites()...)...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		defer cl.Close()
		l.cl = cl
		stopStatus := l.publishStatus(ctx)
		defer stopStatus()
		l.role.Store(RoleActive)
		l.acquired.Add(1)
		return l.p.Run(ctx)
	}

	positions := schemas.PositionsTopic(l.cfg.Kafka.TopicPrefix)
	group := schemas.ProducerGroup(l.cfg.Source.Name)
	cl, err := kgo.NewClient(append(append(l.cfg.Kafka.ClientOptions(), l.statusWrites()...),
		kgo.ClientID("kanal-produce-"+l.instance),
		kgo.WithLogger(kafkaconn.Logger(l.log)),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(positions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(l.cfg.HA.SessionTimeout),
		// Not the client's 60s: a rebalance waits that long for a member that
		// died while joining, and a standby would stand by for it (see HAConfig).
		kgo.RebalanceTimeout(2*l.cfg.HA.SessionTimeout),
		kgo.HeartbeatInterval(l.cfg.HA.HeartbeatInterval),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(l.onAssigned),
		kgo.OnPartitionsRevoked(l.onRevoked),
		kgo.OnPartitionsLost(l.onLost),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	// Membership is all the election needs: the positions are read by the
	// session itself, after fencing.
	cl.PauseFetchTopics(positions)
	l.cl = cl
	if err := l.ensurePositionsTopic(ctx); err != nil {
		cl.Close()
		return err
	}
	l.role.Store(RoleStandby)
	l.log.Info("standing by in the producer group", "group", group, "instance", l.instance,
		"session_timeout", l.cfg.HA.SessionTimeout)
	stopStatus := l.publishStatus(ctx)
	go l.watchMembership(ctx)

	select {
	case <-ctx.Done():
	case err = <-l.fatal:
	}
	// Stop capturing (committing what was read) before leaving the group: only
	// then may a standby take over.
	l.stopTerm(&l.released, "stopping")
	stopStatus()
	cl.Close()
	l.inGroup.Store(false)
	return err
}

// statusWrites are the options for writing status records: not idempotent
// (a lost or doubled status record does not matter, and no producer id is
// needed), and dropped when not delivered in time.
func (l *Leader) statusWrites() []kgo.Opt {
	return []kgo.Opt{kgo.RecordDeliveryTimeout(max(2*l.cfg.Admin.StatusInterval, 2*time.Second)), kgo.DisableIdempotentWrite()}
}

func ownsPositions(assigned map[string][]int32, topic string) bool {
	for _, p := range assigned[topic] {
		if p == 0 {
			return true
		}
	}
	return false
}

func (l *Leader) positionsTopic() string { return schemas.PositionsTopic(l.cfg.Kafka.TopicPrefix) }

func (l *Leader) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	l.inGroup.Store(true)
	if ownsPositions(assigned, l.positionsTopic()) {
		l.startTerm()
	}
}

// onRevoked stops capturing before the partition goes to another member: the
// group does not hand it on until this callback has returned.
func (l *Leader) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if ownsPositions(revoked, l.positionsTopic()) {
		l.stopTerm(&l.released, "partition revoked")
	}
}

// onLost: the group dropped this member (its session expired). Another member
// may already be active; fencing stops whatever this one still tries to write.
func (l *Leader) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	l.inGroup.Store(false)
	if ownsPositions(lost, l.positionsTopic()) {
		l.stopTerm(&l.lost, "membership lost")
	}
}

// watchMembership keeps inGroup current between callbacks (a member that
// rejoins after losing its membership gets no callback when it is assigned
// nothing).
func (l *Leader) watchMembership(ctx context.Context) {
	t := time.NewTicker(l.cfg.HA.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, gen := l.cl.GroupMetadata()
		l.inGroup.Store(gen >= 0)
	}
}

func (l *Leader) startTerm() {
	l.mu.Lock()
	if l.term != nil || l.runCtx.Err() != nil {
		l.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(l.runCtx)
	t := &term{cancel: cancel, done: make(chan struct{})}
	l.term = t
	l.mu.Unlock()
	l.role.Store(RoleActive)
	l.acquired.Add(1)
	l.log.Info("elected active: taking over the source", "instance", l.instance)
	go func() {
		defer close(t.done)
		l.capture(ctx)
	}()
}

// stopTerm stops capturing and waits until the session has committed and
// closed; counter counts why.
func (l *Leader) stopTerm(counter *atomic.Uint64, why string) {
	l.mu.Lock()
	t := l.term
	l.term = nil
	l.mu.Unlock()
	if t == nil {
		return
	}
	began := time.Now()
	t.cancel()
	<-t.done
	l.role.Store(RoleStandby)
	counter.Add(1)
	l.log.Info("no longer active: "+why, "instance", l.instance, "stopped_in", time.Since(began).Round(time.Millisecond).String())
}

// capture runs the producer for one term. Fencing ends the capture but not
// the term: if the group still counts this process as active (a stale member
// fenced it), it captures again; otherwise the coordinator tells this member
// soon and the term ends.
func (l *Leader) capture(ctx context.Context) {
	quiet := false
	for {
		err := l.p.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errNotLeader):
			if !quiet {
				l.log.Warn("the group coordinator does not count this process as active; waiting for the group", "instance", l.instance)
				quiet = true
			}
		case errors.Is(err, ErrFenced):
			l.fenced.Add(1)
			quiet = false
			l.log.Warn("fenced: another process took over the source; nothing more is written by this one", "instance", l.instance, "err", err)
		default:
			if err == nil {
				err = errors.New("producer stopped without being asked to")
			}
			select {
			case l.fatal <- err:
			default:
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.HA.HeartbeatInterval * 2):
		}
	}
}

// confirm runs before a session fences the transactional id: it asks the
// group coordinator whether this member holds partition 0 of the positions
// topic in the group's current generation, waiting out a rebalance in
// progress (the coordinator shows assignments only when the group is stable).
func (l *Leader) confirm(ctx context.Context) error {
	member, gen := l.cl.GroupMetadata()
	if gen < 0 {
		return errNotLeader
	}
	adm := kadm.NewClient(l.cl)
	group := schemas.ProducerGroup(l.cfg.Source.Name)
	deadline := time.Now().Add(l.cfg.HA.SessionTimeout * 2)
	for {
		groups, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describe producer group %s: %w", group, err)
		}
		g := groups[group]
		if g.Err != nil {
			return fmt.Errorf("describe producer group %s: %w", group, g.Err)
		}
		if g.State == "Stable" {
			for _, m := range g.Members {
				if m.MemberID != member {
					continue
				}
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range a.Topics {
						if t.Topic == l.positionsTopic() {
							for _, p := range t.Partitions {
								if p == 0 {
									return nil
								}
							}
						}
					}
				}
			}
			return errNotLeader
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("producer group %s stayed %s for %v", group, g.State, l.cfg.HA.SessionTimeout*2)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensurePositionsTopic creates the positions topic (as the session would) so
// that the group has its partition to assign before anyone captured.
func (l *Leader) ensurePositionsTopic(ctx context.Context) error {
	return kafkaconn.EnsureCompactedTopic(ctx, l.cl, l.positionsTopic(), l.cfg.Kafka.ReplicationFactor)
}

// Health is what /readyz reports.
type Health struct {
	Ready     bool     `json:"ready"`
	Role      string   `json:"role"`
	Instance  string   `json:"instance"`
	Streaming bool     `json:"streaming"`
	InGroup   bool     `json:"in_group"`
	Reasons   []string `json:"reasons,omitempty"`
}

// Health is ready when the process is active and streaming the binlog, or
// standing by as a member of the group.
func (l *Leader) Health() Health {
	h := Health{Role: l.Role(), Instance: l.instance, Streaming: l.p.Progress().Streaming, InGroup: l.inGroup.Load()}
	switch h.Role {
	case RoleActive:
		h.Ready = h.Streaming
		if !h.Ready {
			h.Reasons = append(h.Reasons, "active but not streaming the binlog (connecting, or retrying after an error)")
		}
	case RoleStandby:
		h.Ready = h.InGroup || !l.cfg.HA.Enabled
		if !h.Ready {
			h.Reasons = append(h.Reasons, "standby but not a member of the producer group (joining)")
		}
	default:
		h.Reasons = append(h.Reasons, "starting")
	}
	return h
}
