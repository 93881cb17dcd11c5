package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/listen"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

// Runner runs the registered handlers: one consumer group client per group.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	groups  []*group
	kopts   []kgo.Opt
	promReg *prometheus.Registry
	m       *metrics
	// schemas resolves the writer schemas of Avro records for every worker's
	// decoder; closeSchemas releases what it holds (nil for a caller's resolver).
	schemas      schemas.SchemaResolver
	closeSchemas func()

	running atomic.Bool
	// heartbeatMs is the producer clock of the newest heartbeat read (0 = none).
	heartbeatMs atomic.Int64

	healthMu sync.Mutex
	halted   map[haltKey]HaltedPartition
	stopped  bool
}

type haltKey struct {
	handler, topic string
	partition      int32
}

// HaltedPartition describes a partition stopped at a failing record.
type HaltedPartition struct {
	Handler   string    `json:"handler"`
	Group     string    `json:"group"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Table     string    `json:"table"`
	Key       string    `json:"key"`
	Error     string    `json:"error"`
	Since     time.Time `json:"since"`
}

// String describes the halt for logs and /readyz.
func (h HaltedPartition) String() string {
	return fmt.Sprintf("handler %s halted on %s/%d@%d (table %s, key %s) since %s: %s",
		h.Handler, h.Topic, h.Partition, h.Offset, h.Table, h.Key, h.Since.Format(time.RFC3339), h.Error)
}

// Health is the Runner's state as /readyz reports it.
type Health struct {
	// Ready is false while a partition is halted, or when Run has ended.
	Ready bool `json:"ready"`
	// Reasons say why the Runner is not ready.
	Reasons []string          `json:"reasons,omitempty"`
	Halted  []HaltedPartition `json:"halted,omitempty"`
}

// Option configures a Runner beyond its Config.
type Option func(*Runner)

// WithKafkaOptions adds franz-go client options to every client the Runner
// creates (after its own, so they can override them).
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(r *Runner) { r.kopts = append(r.kopts, opts...) }
}

// WithSchemaResolver makes the Runner look up the writer schemas of Avro records
// with sr instead of kanal's own (the "<prefix>._schemas" topic and the
// configured kafka.schema_registry).
func WithSchemaResolver(sr schemas.SchemaResolver) Option {
	return func(r *Runner) { r.schemas = sr }
}

// WithPrometheusRegistry registers the Runner's metrics on reg instead of a
// registry of its own, so a program can serve them with its own. A registry
// holds the metrics of one Runner: NewRunner fails (ErrConfig) when reg already
// has collectors of the same names, such as another Runner's. To serve several
// Runners on one endpoint, give each its own registry and gather them together
// (prometheus.Gatherers{r1.Metrics(), r2.Metrics()}).
func WithPrometheusRegistry(reg *prometheus.Registry) Option {
	return func(r *Runner) { r.promReg = reg }
}

// NewRunner checks cfg and the registry and prepares the groups. It connects to
// nothing; Run does.
func NewRunner(cfg Config, reg *Registry, log *slog.Logger, opts ...Option) (_ *Runner, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reg == nil || len(reg.routes) == 0 {
		return nil, fmt.Errorf("%w: no handlers registered", ErrConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Kafka.WarnPlaintext(log)
	r := &Runner{cfg: cfg, log: log, halted: map[haltKey]HaltedPartition{}}
	for _, o := range opts {
		o(r)
	}
	if r.promReg == nil {
		r.promReg = prometheus.NewRegistry()
	}
	if r.schemas == nil {
		res, rerr := schemastore.NewResolver(cfg.Kafka, log, r.kopts...)
		if rerr != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, rerr)
		}
		r.schemas, r.closeSchemas = res, res.Close
		defer func() {
			if err != nil { // a Runner that is not made holds no client
				res.Close()
			}
		}()
	}
	r.m = newMetrics()
	byGroup := map[string]*group{}
	for _, rt := range reg.routes {
		g := byGroup[rt.Group]
		if g == nil {
			g = newGroup(r, rt.Group)
			byGroup[rt.Group] = g
			r.groups = append(r.groups, g)
		}
		if err := g.addRoute(*rt); err != nil {
			return nil, err
		}
	}
	for _, g := range r.groups {
		if err := g.prepare(); err != nil {
			return nil, err
		}
	}
	// Last, so that a Runner that is not made leaves nothing on a caller's
	// registry.
	err = r.m.register(r.promReg, &freshnessCollector{
		m: r.m,
		heartbeat: func() (int64, bool) {
			v := r.heartbeatMs.Load()
			return v, v > 0
		},
		desc: prometheus.NewDesc("kanal_consumer_freshness_seconds",
			"Now minus the source time of the newest applied change (or of the newest heartbeat while caught up).",
			[]string{"handler"}, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: metrics: %w (a Prometheus registry holds one Runner's metrics; give each Runner its own)", ErrConfig, err)
	}
	return r, nil
}

// Metrics returns the registry holding the Runner's metrics.
func (r *Runner) Metrics() *prometheus.Registry { return r.promReg }

// Run consumes until ctx is cancelled, then finishes in-flight batches (bounded
// by RevokeTimeout), commits and leaves the groups. It returns nil after a
// cancellation and an error when a group cannot run at all. A Runner runs once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("consumer: Runner.Run called twice")
	}
	defer func() {
		r.healthMu.Lock()
		r.stopped = true
		r.healthMu.Unlock()
		if r.closeSchemas != nil {
			r.closeSchemas()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	if r.cfg.MetricsAddr != "" {
		srv, err := r.serve(ctx)
		if err != nil {
			return err
		}
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if r.cfg.Heartbeats {
		wg.Add(1)
		go func() { defer wg.Done(); r.readHeartbeats(ctx) }()
	}
	if r.cfg.StatusInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.publishStatus(ctx) }()
	}
	errs := make(chan error, len(r.groups))
	for _, g := range r.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.run(ctx); err != nil {
				errs <- fmt.Errorf("group %s: %w", g.name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

// Health reports whether every partition is moving.
func (r *Runner) Health() Health {
	r.healthMu.Lock()
	defer r.healthMu.Unlock()
	h := Health{Ready: true}
	if r.stopped {
		h.Ready = false
		h.Reasons = append(h.Reasons, "runner stopped")
	}
	for _, hp := range r.halted {
		h.Halted = append(h.Halted, hp)
	}
	sort.Slice(h.Halted, func(i, j int) bool {
		a, b := h.Halted[i], h.Halted[j]
		return a.Handler < b.Handler || a.Handler == b.Handler && (a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition)
	})
	for _, hp := range h.Halted {
		h.Ready = false
		h.Reasons = append(h.Reasons, hp.String())
	}
	return h
}

// setHalted reports a halted partition, or updates the report (its error).
func (r *Runner) setHalted(hp HaltedPartition) {
	r.healthMu.Lock()
	k := haltKey{hp.Handler, hp.Topic, hp.Partition}
	_, known := r.halted[k]
	r.halted[k] = hp
	r.healthMu.Unlock()
	if !known {
		r.m.halted.WithLabelValues(hp.Handler).Inc()
	}
}

func (r *Runner) clearHalted(handler, topic string, partition int32) {
	r.healthMu.Lock()
	k := haltKey{handler, topic, partition}
	_, ok := r.halted[k]
	delete(r.halted, k)
	r.healthMu.Unlock()
	if ok {
		r.m.halted.WithLabelValues(handler).Dec()
	}
}

// HTTPHandler serves /metrics, /healthz (the process is up) and /readyz (no
// partition halted; JSON body with the reasons otherwise).
func (r *Runner) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.promReg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := r.Health()
		w.Header().Set("Content-Type", "application/json")
		if !h.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		b, _ := json.MarshalIndent(h, "", "  ")
		w.Write(append(b, '\n'))
	})
	return mux
}

// serve starts the metrics server. An address still in use — typically by the
// previous instance of this consumer, still finishing its last batches after a
// stop — is retried for up to revoke_timeout (plus a little) before giving up.
func (r *Runner) serve(ctx context.Context) (*http.Server, error) {
	var ln net.Listener
	deadline := time.Now().Add(r.cfg.RevokeTimeout + 5*time.Second)
	for attempt := 1; ; attempt++ {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", listen.Addr(r.cfg.MetricsAddr))
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, fmt.Errorf("metrics_addr: %w", err)
		}
		if attempt == 1 {
			r.log.Warn("metrics_addr is in use; retrying (a previous instance may still be stopping)",
				"addr", r.cfg.MetricsAddr, "until", deadline.Format(time.RFC3339))
		}
		if sleep(ctx, 250*time.Millisecond) != nil {
			return nil, fmt.Errorf("metrics_addr: %w", err)
		}
	}
	srv := &http.Server{Handler: r.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("metrics server stopped", "addr", r.cfg.MetricsAddr, "err", err)
		}
	}()
	r.log.Info("serving metrics", "addr", ln.Addr().String())
	return srv, nil
}

// readHeartbeats follows the producer's heartbeat topic from its newest record, so
// the freshness metric can tell a quiet source from a stuck pipeline.
func (r *Runner) readHeartbeats(ctx context.Context) {
	topic := schemas.HeartbeatsTopic(r.cfg.Kafka.TopicPrefix)
	opts := append(r.clientOptions("kanal-consumer-heartbeats"),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd().Relative(-1)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		r.log.Warn("heartbeat reader not started", "topic", topic, "err", err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var hb schemas.Heartbeat
			if rec.Value == nil || json.Unmarshal(rec.Value, &hb) != nil {
				return
			}
			for {
				old := r.heartbeatMs.Load()
				if hb.TsMs <= old || r.heartbeatMs.CompareAndSwap(old, hb.TsMs) {
					break
				}
			}
		})
		if len(fs.Errors()) > 0 && fs.NumRecords() == 0 {
			// Unknown topic (no producer yet) and the like: poll again later.
			if sleep(ctx, time.Second) != nil {
				return
			}
		}
	}
}

// clientOptions are the options every client of this Runner starts from.
func (r *Runner) clientOptions(clientID string) []kgo.Opt {
	opts := append(r.cfg.Kafka.ClientOptions(),
		kgo.ClientID(clientID),
		kgo.MetadataMinAge(min(time.Second, r.cfg.MetadataMaxAge)),
		kgo.MetadataMaxAge(r.cfg.MetadataMaxAge),
		kgo.WithLogger(kafkaconn.Logger(r.log)),
	)
	return append(opts, r.kopts...)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
