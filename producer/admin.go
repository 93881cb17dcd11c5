package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kanal-cdc/kanal/internal/listen"
)

// HTTPHandler serves /metrics (the producer's registry), /healthz (the process
// is up) and /readyz (Health as JSON; 503 when not ready).
func (l *Leader) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(l.p.Metrics(), promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		h := l.Health()
		w.Header().Set("Content-Type", "application/json")
		if !h.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		b, _ := json.MarshalIndent(h, "", "  ")
		w.Write(append(b, '\n'))
	})
	return mux
}

// AdminAddr is the address the admin endpoint listens on ("" when off or not
// yet listening).
func (l *Leader) AdminAddr() string {
	s, _ := l.adminAddr.Load().(string)
	return s
}

func (l *Leader) serve(ctx context.Context) (*http.Server, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen.Addr(l.cfg.Admin.Listen))
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	l.adminAddr.Store(ln.Addr().String())
	srv := &http.Server{Handler: l.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("admin server stopped", "addr", l.AdminAddr(), "err", err)
		}
	}()
	l.log.Info("serving /metrics, /healthz and /readyz", "addr", l.AdminAddr())
	return srv, nil
}

func shutdownServer(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// leaderCollector exposes the election's state.
type leaderCollector struct {
	l                     *Leader
	role, fenced, changes *prometheus.Desc
}

func newLeaderCollector(l *Leader) *leaderCollector {
	labels := prometheus.Labels{"source": l.cfg.Source.Name}
	return &leaderCollector{
		l:      l,
		role:   prometheus.NewDesc("kanal_producer_role", "1 for the role this process has: active (capturing), standby (waiting in the producer group) or starting.", []string{"role"}, labels),
		fenced: prometheus.NewDesc("kanal_producer_fenced_total", "Times this process found itself fenced by another process of the same source.", nil, labels),
		changes: prometheus.NewDesc("kanal_producer_leadership_changes_total",
			"Times this process became active (acquired), stopped being active on a revoke or a stop (released), or lost its group membership while active (lost).", []string{"kind"}, labels),
	}
}

func (c *leaderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.role
	ch <- c.fenced
	ch <- c.changes
}

func (c *leaderCollector) Collect(ch chan<- prometheus.Metric) {
	role := c.l.Role()
	for _, r := range []string{RoleActive, RoleStandby, RoleStarting} {
		v := 0.0
		if r == role {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.role, prometheus.GaugeValue, v, r)
	}
	ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.CounterValue, float64(c.l.fenced.Load()))
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(c.l.acquired.Load()), "acquired")
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(c.l.released.Load()), "released")
	ch <- prometheus.MustNewConstMetric(c.changes, prometheus.CounterValue, float64(c.l.lost.Load()), "lost")
}
