package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Helpers for tests that talk to a `kanal produce` process's admin endpoint.

var adminAddrRE = regexp.MustCompile(`serving /metrics, /healthz and /readyz".*? addr=(\S+)`)

// adminAddr waits until c has logged where its admin endpoint listens.
func (c *child) adminAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := adminAddrRE.FindStringSubmatch(c.output()); m != nil {
			return m[1]
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("kanal exited before serving its admin endpoint (%v):\n%s", err, c.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no admin endpoint within 30s:\n%s", c.output())
	return ""
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// health is the body of /readyz.
type health struct {
	Ready     bool   `json:"ready"`
	Role      string `json:"role"`
	Instance  string `json:"instance"`
	Streaming bool   `json:"streaming"`
	InGroup   bool   `json:"in_group"`
}

// readyz returns the process's health; ok is false when it did not answer
// (stopped, frozen, not yet listening).
func readyz(addr string) (h health, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return h, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return h, false
	}
	return h, true
}

// metricSet is one scrape: "name" or "name{label=value,...}" (labels sorted,
// the source label left out) → value.
type metricSet map[string]float64

func scrape(t *testing.T, addr string) metricSet {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	out := metricSet{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			var labels []string
			for _, l := range m.Label {
				if l.GetName() != "source" {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
				out[key+"_sum"] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

func (ms metricSet) get(t *testing.T, key string) float64 {
	t.Helper()
	v, ok := ms[key]
	if !ok {
		t.Fatalf("metric %s missing; have %s", key, ms)
	}
	return v
}

func (ms metricSet) String() string {
	var b strings.Builder
	for k, v := range ms {
		fmt.Fprintf(&b, "\n  %s %v", k, v)
	}
	return b.String()
}
