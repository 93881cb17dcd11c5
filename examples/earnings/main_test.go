package main

import (
	"testing"

	"github.com/kanal-cdc/kanal/aggregators"
)

func TestWeeklySummaryIsValid(t *testing.T) {
	cfg := aggregators.DefaultConfig()
	cfg.Name = "earnings-weekly"
	cfg.Target.Driver = aggregators.DriverPostgres
	cfg.Target.DSN = "postgres://kanal@127.0.0.1:1/kanal"
	a, err := aggregators.New(cfg, nil, weekly())
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	for in, want := range map[string]any{"2024-06-05 10:00:00.000000": "2024-06-03", "2024-06-03 00:00:00": "2024-06-03", "2024-06-09": "2024-06-03"} {
		got, err := weekOf("at")(aggregators.Row{"at": in})
		if err != nil || got != want {
			t.Errorf("weekOf(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
