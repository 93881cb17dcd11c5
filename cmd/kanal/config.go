package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/config/reference"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemastore"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Print an example or the schema of the configuration file, or check one"}
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a complete commented kanal.yaml (every setting; docs/config.md describes each)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := os.Stdout.Write(reference.Example())
			return err
		},
	}
	schema := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the configuration file (for editors)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := reference.Schema(handlers.Builtin())
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(b)
			return err
		},
	}
	var cfgPath string
	var connect bool
	var timeout time.Duration
	check := &cobra.Command{
		Use:   "check --config kanal.yaml [--connect]",
		Short: "Validate a configuration file; with --connect also try every server it names",
		Long: `check loads the file as produce and consume do (variables, defaults, every
field), reads the TLS and password files it names and builds each handler without
connecting. It prints one line and exits 0, or exits 2 with the error naming the bad
field or file.

With --connect it then tries each server: the MySQL/MariaDB source as the configured
user (binlog settings, REPLICATION SLAVE and REPLICATION CLIENT), each Kafka broker
(metadata request, with the configured TLS and SASL), the schema registry
(kafka.schema_registry: its global compatibility level, with the configured TLS
and credentials), and each handler's targets (Redis PING, Postgres/MySQL/Phoenix
connections, Elasticsearch/OpenSearch, RabbitMQ and memcached). It prints one line
per server, ok or why not, and exits 1 if any failed. Passwords are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			reg := handlers.Builtin()
			if err := f.CheckFiles(); err != nil {
				return usageError{fmt.Errorf("%s: %w", cfgPath, err)}
			}
			if err := reg.Check(&f.Consumers); err != nil {
				return usageError{fmt.Errorf("%s: %w", cfgPath, err)}
			}
			fmt.Printf("%s: valid: %s\n", cfgPath, summary(f))
			if !connect {
				return nil
			}
			probes, err := serverProbes(f, reg)
			if err != nil {
				return usageError{err}
			}
			return runProbes(cmd.Context(), os.Stdout, probes, timeout)
		},
	}
	check.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	check.Flags().BoolVar(&connect, "connect", false, "also connect to every server the file names")
	check.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "with --connect: the time each server gets")
	cmd.AddCommand(example, check, schema)
	return cmd
}

// summary says in one line what the file configures.
func summary(f *config.File) string {
	var parts []string
	if hasSource(f) {
		parts = append(parts, fmt.Sprintf("source %s (%s)", f.Source.Name, f.Source.Addr))
	} else {
		parts = append(parts, "no source (consumers only)")
	}
	parts = append(parts, fmt.Sprintf("kafka %s", plural(len(f.Kafka.Brokers), "broker")))
	var hs []string
	for _, h := range f.Consumers.Handlers {
		hs = append(hs, h.Name+" ("+h.Handler+")")
	}
	if len(hs) == 0 {
		parts = append(parts, "no handlers")
	} else {
		parts = append(parts, plural(len(hs), "handler")+": "+strings.Join(hs, ", "))
	}
	return strings.Join(parts, "; ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// hasSource mirrors config's rule: a consumers-only file may leave out source.
func hasSource(f *config.File) bool {
	s := f.Source
	return s.Name != "" || s.Addr != "" || s.User != "" || s.Password != "" || s.PasswordFile != ""
}

// serverProbes lists every server of the file: the source, each broker, the
// schema registry, and the handlers' targets.
func serverProbes(f *config.File, reg *handlers.Factories) ([]handlers.Probe, error) {
	var ps []handlers.Probe
	if hasSource(f) {
		src := f.Source
		ps = append(ps, handlers.Probe{
			Server: fmt.Sprintf("source %s (%s as %s)", src.Name, src.Addr, src.User),
			Check: func(ctx context.Context) error {
				_, err := producer.CheckSource(ctx, src)
				return err
			},
		})
	}
	for _, b := range f.Kafka.Brokers {
		k := f.Kafka.Config
		k.Brokers = []string{b}
		ps = append(ps, handlers.Probe{
			Server: "kafka broker " + b,
			Check:  func(ctx context.Context) error { return checkBroker(ctx, &k) },
		})
	}
	if sr := f.Kafka.SchemaRegistry; sr != nil {
		ps = append(ps, handlers.Probe{
			Server: "schema registry " + sr.URL,
			Check: func(ctx context.Context) error {
				r, err := schemastore.NewRegistry(sr, nil)
				if err != nil {
					return err
				}
				return r.Check(ctx)
			},
		})
	}
	hps, err := reg.Probes(&f.Consumers)
	if err != nil {
		return nil, err
	}
	return append(ps, hps...), nil
}

// checkBroker dials the broker (a plain TCP connect says "refused" or "no
// route" plainly) and then asks it for the cluster's metadata, which needs
// TLS and SASL to work.
func checkBroker(ctx context.Context, k *kafkaconn.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", k.Brokers[0])
	if err != nil {
		return err
	}
	conn.Close()
	cl, err := kgo.NewClient(append(k.ClientOptions(), kgo.RequestRetries(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata request: %w", err)
	}
	if len(m.Brokers) == 0 {
		return errors.New("metadata lists no brokers")
	}
	return nil
}

// runProbes tries each server, at most timeout each, and prints a line per
// server. It fails when one does.
func runProbes(ctx context.Context, w io.Writer, ps []handlers.Probe, timeout time.Duration) error {
	failed := 0
	for _, p := range ps {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Check(pctx)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAIL  %s: %v\n", p.Server, err)
			continue
		}
		fmt.Fprintf(w, "ok    %s\n", p.Server)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %s failed", failed, plural(len(ps), "server"))
	}
	fmt.Fprintf(w, "all %s ok\n", plural(len(ps), "server"))
	return nil
}
