package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/internal/listen"
	"github.com/kanal-cdc/kanal/status"
)

func statusCmd() *cobra.Command {
	var conn connFlags
	var serve string
	var asJSON bool
	var refresh time.Duration
	cmd := &cobra.Command{
		Use:   "status [--config kanal.yaml | --brokers host:port] [--json | --serve 127.0.0.1:9466]",
		Short: "Show sources (active producer, position, lag, retention margin) and consumer groups (lag, freshness, halts, dead letters)",
		Long: `status reads, from Kafka alone, the state of one kanal installation (one topic
prefix): for each source the active producer and its standbys, the committed
position, the lag, the bytes behind and the binlog retention margin; for each
consumer group its members and, per table, the records not yet applied and how
far behind the source its copy is, halted partitions and dead letters.
--json prints the same as JSON; --serve serves it as a web page that refreshes
itself, with a per-table chart.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, _, err := conn.resolve(cmd)
			if err != nil {
				return err
			}
			if asJSON && serve != "" {
				return usageError{errors.New("--json and --serve exclude each other")}
			}
			c, err := status.NewCollector(*k)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if serve != "" {
				if refresh < 200*time.Millisecond {
					return usageError{errors.New("--refresh must be >= 200ms")}
				}
				return serveStatus(ctx, serve, status.Handler(c, refresh, nil))
			}
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			rep, err := c.Collect(cctx)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return status.WriteText(os.Stdout, rep)
		},
	}
	conn.add(cmd, "")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&serve, "serve", "", "serve the status page on this host:port until stopped (\":8080\" binds 127.0.0.1)")
	cmd.Flags().DurationVar(&refresh, "refresh", 2*time.Second, "how often the page refreshes (with --serve)")
	return cmd
}

func serveStatus(ctx context.Context, addr string, h http.Handler) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen.Addr(addr)) // ":8080" stays on 127.0.0.1
	if err != nil {
		return usageError{fmt.Errorf("--serve: %w", err)}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "kanal status: serving http://%s/\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
