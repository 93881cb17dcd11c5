package consumer_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanal-cdc/kanal/consumer"
)

func TestTopicPattern(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		match    []string
		nomatch  []string
	}{
		{[]string{"shop.*"}, []string{"kanal.shop.users", "kanal.shop.a_b"}, []string{"kanal.shop2.users", "kanal.shop.users.x", "other.shop.users"}},
		{[]string{"*.*"}, []string{"kanal.a.b"}, []string{"kanal._positions", "kanal._dlq.kanal-x", "kanal._heartbeats"}},
		{[]string{"shop.order_*", "crm.users"}, []string{"kanal.shop.order_1", "kanal.crm.users"}, []string{"kanal.shop.orders", "kanal.crm.users2"}},
		{[]string{"s?op.[a-c]x"}, []string{"kanal.shop.bx"}, []string{"kanal.shop.dx", "kanal._hop.ax"}},
		{[]string{"my-db.t$1"}, []string{"kanal.my-db.t_1"}, []string{"kanal.my-db.t$1"}},
	} {
		re, err := consumer.TopicPattern("kanal", tc.patterns)
		if err != nil {
			t.Fatalf("%v: %v", tc.patterns, err)
		}
		rx := regexp.MustCompile(re)
		for _, m := range tc.match {
			if !rx.MatchString(m) {
				t.Errorf("%v (%s) does not match %s", tc.patterns, re, m)
			}
		}
		for _, m := range tc.nomatch {
			if rx.MatchString(m) {
				t.Errorf("%v (%s) matches %s", tc.patterns, re, m)
			}
		}
	}
	for _, bad := range []string{"shop", "shop.", ".t", "a.b.c", "a.[b"} {
		if _, err := consumer.TopicPattern("kanal", []string{bad}); !errors.Is(err, consumer.ErrConfig) {
			t.Errorf("pattern %q accepted (%v)", bad, err)
		}
	}
}

type nopHandler string

func (n nopHandler) Name() string                                 { return string(n) }
func (n nopHandler) Handle(context.Context, consumer.Batch) error { return nil }

type storeHandler struct{ nopHandler }

func (storeHandler) LoadOffsets(context.Context, string, map[string][]int32) (map[string]map[int32]int64, error) {
	return nil, nil
}

func TestRegistryRejectsMistakes(t *testing.T) {
	reg := consumer.NewRegistry()
	if err := reg.Register(nopHandler("a"), consumer.Tables("db.*")); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		h    consumer.Handler
		opts []consumer.RouteOption
		want string
	}{
		"duplicate":       {nopHandler("a"), []consumer.RouteOption{consumer.Tables("db.*")}, "twice"},
		"no tables":       {nopHandler("b"), nil, "no table patterns"},
		"bad name":        {nopHandler("b c"), []consumer.RouteOption{consumer.Tables("db.*")}, "name"},
		"bad pattern":     {nopHandler("b"), []consumer.RouteOption{consumer.Tables("db")}, "db.table"},
		"bad group":       {nopHandler("b"), []consumer.RouteOption{consumer.Tables("db.*"), consumer.Group("a b")}, "group"},
		"bad policy":      {nopHandler("b"), []consumer.RouteOption{consumer.Tables("db.*"), consumer.OnFailure("ignore")}, "on_failure"},
		"bad retry":       {nopHandler("b"), []consumer.RouteOption{consumer.Tables("db.*"), consumer.WithRetry(consumer.RetryConfig{})}, "max_attempts"},
		"store in shared": {storeHandler{"s"}, []consumer.RouteOption{consumer.Tables("db.*"), consumer.Group("kanal-a")}, "group of its own"},
	} {
		err := reg.Register(tc.h, tc.opts...)
		if !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
	if n := len(reg.Routes()); n != 1 {
		t.Errorf("%d routes after rejected registrations", n)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	for field, mutate := range map[string]func(*consumer.Config){
		"kafka.brokers":     func(c *consumer.Config) { c.Kafka.Brokers = nil },
		"start":             func(c *consumer.Config) { c.Start = "yesterday" },
		"concurrency":       func(c *consumer.Config) { c.Concurrency = 0 },
		"queue_max_records": func(c *consumer.Config) { c.QueueMaxRecords = 1 },
		"fetch_max_wait":    func(c *consumer.Config) { c.FetchMaxWait = 5 * time.Millisecond }, // franz-go's minimum is 10ms
		"on_failure":        func(c *consumer.Config) { c.OnFailure = "drop" },
		"retry.max_interval": func(c *consumer.Config) {
			c.Retry.MaxInterval = time.Nanosecond
		},
		"metrics_addr": func(c *consumer.Config) { c.MetricsAddr = "9464" },
	} {
		cfg := consumer.DefaultConfig()
		cfg.Kafka.Brokers = []string{"127.0.0.1:9092"}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("defaults: %v", err)
		}
		mutate(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func TestPermanentAndRetry(t *testing.T) {
	if consumer.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	base := errors.New("bad row")
	p := consumer.Permanent(base)
	if !consumer.IsPermanent(p) || !errors.Is(p, base) || consumer.IsPermanent(base) {
		t.Error("Permanent marker not detected or not unwrapping")
	}
	if !consumer.IsPermanent(errors.Join(errors.New("x"), p)) {
		t.Error("wrapped permanent error not detected")
	}
	calls := 0
	h := consumer.Chain(consumer.HandlerFunc{HandlerName: "r", Fn: func(context.Context, consumer.Batch) error {
		calls++
		if calls < 3 {
			return errors.New("flaky")
		}
		return nil
	}}, consumer.Retry(consumer.RetryConfig{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, nil))
	if err := h.Handle(context.Background(), consumer.Batch{}); err != nil || calls != 3 {
		t.Errorf("retry: err %v after %d calls, want success on the 3rd", err, calls)
	}
	calls = 0
	h = consumer.Chain(consumer.HandlerFunc{HandlerName: "r", Fn: func(context.Context, consumer.Batch) error {
		calls++
		return consumer.Permanent(base)
	}}, consumer.Retry(consumer.RetryConfig{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, nil))
	if err := h.Handle(context.Background(), consumer.Batch{}); !consumer.IsPermanent(err) || calls != 1 {
		t.Errorf("permanent error retried: %d calls, %v", calls, err)
	}
	h = consumer.Chain(consumer.HandlerFunc{HandlerName: "r", Fn: func(context.Context, consumer.Batch) error { return base }},
		consumer.Retry(consumer.RetryConfig{MaxAttempts: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, nil))
	var ex *consumer.ExhaustedError
	if err := h.Handle(context.Background(), consumer.Batch{}); !errors.As(err, &ex) || ex.Attempts != 2 || !errors.Is(err, base) {
		t.Errorf("exhausted: %v", err)
	}
	h = consumer.Chain(consumer.HandlerFunc{HandlerName: "p", Fn: func(context.Context, consumer.Batch) error { panic("boom") }}, consumer.Recover())
	var pe *consumer.PanicError
	if err := h.Handle(context.Background(), consumer.Batch{}); !errors.As(err, &pe) || h.Name() != "p" {
		t.Errorf("recover: %v", err)
	}
}

func TestParseResetTo(t *testing.T) {
	for in, ok := range map[string]bool{"earliest": true, "latest": true, "2026-01-02T03:04:05Z": true, "42": true, "-1": false, "yesterday": false} {
		to, err := consumer.ParseResetTo(in)
		if (err == nil) != ok {
			t.Errorf("%q: %v", in, err)
		}
		if ok && to.String() != in {
			t.Errorf("%q round-trips as %q", in, to.String())
		}
	}
}

// TestTwoRunnersOneMetricsRegistry: a second Runner on a Prometheus registry
// that already holds a Runner's metrics is refused with ErrConfig instead of
// panicking; a Runner refused for a clash with its last collector leaves none
// of its others behind; a registry of its own works.
func TestTwoRunnersOneMetricsRegistry(t *testing.T) {
	cfg := consumer.DefaultConfig()
	cfg.Kafka.Brokers = []string{"127.0.0.1:9092"} // NewRunner connects to nothing
	routes := func(name string) *consumer.Registry {
		reg := consumer.NewRegistry()
		if err := reg.Register(nopHandler(name), consumer.Tables("db.*")); err != nil {
			t.Fatal(err)
		}
		return reg
	}
	prom := prometheus.NewRegistry()
	if _, err := consumer.NewRunner(cfg, routes("a"), nil, consumer.WithPrometheusRegistry(prom)); err != nil {
		t.Fatal(err)
	}
	_, err := consumer.NewRunner(cfg, routes("b"), nil, consumer.WithPrometheusRegistry(prom))
	if !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("second Runner on one registry: %v, want ErrConfig about its metrics", err)
	}
	if _, err := consumer.NewRunner(cfg, routes("b"), nil); err != nil {
		t.Errorf("second Runner with a registry of its own: %v", err)
	}

	// The freshness gauge is registered last: a clash there must unregister
	// the counters and histograms registered before it.
	prom = prometheus.NewRegistry()
	// The same name, help and labels (a registry keeps those of a name for
	// good, even after Unregister), so only the collector itself clashes.
	squatter := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kanal_consumer_freshness_seconds",
		Help: "Now minus the source time of the newest applied change (or of the newest heartbeat while caught up)."}, []string{"handler"})
	prom.MustRegister(squatter)
	if _, err := consumer.NewRunner(cfg, routes("c"), nil, consumer.WithPrometheusRegistry(prom)); !errors.Is(err, consumer.ErrConfig) {
		t.Fatalf("Runner on a registry holding kanal_consumer_freshness_seconds: %v, want ErrConfig", err)
	}
	prom.Unregister(squatter)
	if _, err := consumer.NewRunner(cfg, routes("c"), nil, consumer.WithPrometheusRegistry(prom)); err != nil {
		t.Errorf("the refused Runner left collectors on the registry: %v", err)
	}
}
