// Command earnings is a user-written aggregator: a Go program that keeps a
// weekly earnings summary per user in Postgres, with a filter, a derived group
// and a conditional sum written as Go functions. It uses the same machinery as
// the declarative summaries of `kanal consume` (package aggregators): per-row
// contributions and consumer offsets stored in the summary's database, in one
// transaction per batch, so it is exactly-once and replay-safe.
//
//	go run ./examples/earnings --brokers 127.0.0.1:9092 \
//	    --postgres 'postgres://kanal@127.0.0.1:5432/kanal?sslmode=disable'
//
// The source is the demo's shop.earnings ledger (scripts/demo.sh).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/consumer"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	dsn := flag.String("postgres", "", "Postgres connection string of the summary database (default $EARNINGS_PG_DSN)")
	flag.Parse()
	if *dsn == "" {
		*dsn = os.Getenv("EARNINGS_PG_DSN")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(*brokers, ","), *dsn, log); err != nil {
		fmt.Fprintln(os.Stderr, "earnings:", err)
		os.Exit(1)
	}
}

// weekly is the summary: settled earnings per user and ISO week (starting
// Monday), with the total and the part of it that came from bonuses.
func weekly() aggregators.Summary {
	return aggregators.Summary{
		Table:  "user_weekly_earnings",
		Source: "shop.earnings",
		Filter: func(r aggregators.Row) (bool, error) { return r["status"] == "settled", nil },
		GroupBy: []aggregators.Group{
			{Column: "user_id", SourceColumn: "user_id"},
			{Column: "week", Type: "date", Value: weekOf("created_at")},
		},
		Sums: []aggregators.Sum{
			{Column: "total", SourceColumn: "amount"},
			{Column: "from_bonuses", SourceColumn: "amount", Value: func(r aggregators.Row) (any, error) {
				if r["kind"] == "bonus" {
					return r["amount"], nil
				}
				return nil, nil // adds nothing
			}},
		},
		CountColumn: "earnings",
	}
}

// weekOf returns the Monday of the week of a DATETIME column ("2024-06-05
// 10:00:00.000000" → "2024-06-03").
func weekOf(col string) func(aggregators.Row) (any, error) {
	return func(r aggregators.Row) (any, error) {
		v, ok := r[col].(string)
		if !ok || len(v) < 10 {
			return nil, nil
		}
		t, err := time.Parse("2006-01-02", v[:10])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", col, err)
		}
		back := (int(t.Weekday()) + 6) % 7
		return t.AddDate(0, 0, -back).Format("2006-01-02"), nil
	}
}

func run(ctx context.Context, brokers []string, dsn string, log *slog.Logger) error {
	if dsn == "" {
		return errors.New("--postgres (or $EARNINGS_PG_DSN) is required")
	}
	cfg := aggregators.DefaultConfig()
	cfg.Name = "earnings-weekly"
	cfg.Target.Driver = aggregators.DriverPostgres
	cfg.Target.DSN = dsn
	agg, err := aggregators.New(cfg, log, weekly())
	if err != nil {
		return err
	}
	defer agg.Close()
	if err := agg.Setup(ctx); err != nil {
		return err
	}
	reg := consumer.NewRegistry()
	if err := agg.RegisterWith(reg); err != nil {
		return err
	}
	ccfg := consumer.DefaultConfig()
	ccfg.Kafka.Brokers = brokers
	r, err := consumer.NewRunner(ccfg, reg, log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}
