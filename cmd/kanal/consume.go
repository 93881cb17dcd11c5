package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

func consumeCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "consume --config kanal.yaml",
		Short: "Run the built-in handlers named in the config's consumers section",
		Long: `consume runs each handler listed under consumers.handlers in its own consumer
group (kanal-<name> unless group is set): it reads the matching table topics with
read_committed, applies batches per partition in offset order and commits offsets
only after they are applied. Stop it with SIGINT/SIGTERM: in-flight batches finish,
offsets are committed and the groups are left.

Built-in handlers: stdout (prints each change as a JSON line), redis (docs/redis.md),
aggregate (summary tables, docs/aggregators.md), sqlmirror (row copies, docs/sqlmirror.md).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := newLogger(f.Log.Level, f.Log.Format)
			r, err := buildRunner(f, log, os.Stdout)
			if err != nil {
				return usageError{err}
			}
			log.Info("kanal consume starting", "handlers", len(f.Consumers.Handlers), "metrics_addr", f.Consumers.MetricsAddr)
			return r.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML configuration file")
	return cmd
}

// handlerFactory builds a built-in handler from its configuration entry.
type handlerFactory func(spec *config.HandlerConfig, log *slog.Logger, stdout io.Writer) (consumer.Handler, error)

// builtinHandlers lists the handler types `kanal consume` can run. New sinks are
// added here, explicitly.
func builtinHandlers() map[string]handlerFactory {
	return map[string]handlerFactory{
		"stdout": newStdoutHandler,
		// sqlmirror: options are a sinks/sqlmirror Config (docs/sqlmirror.md);
		// the handler's name is the entry's name.
		"sqlmirror": func(spec *config.HandlerConfig, log *slog.Logger, _ io.Writer) (consumer.Handler, error) {
			cfg := sqlmirror.DefaultConfig()
			if err := spec.DecodeOptions(&cfg); err != nil {
				return nil, err
			}
			cfg.Name = spec.Name
			return sqlmirror.New(cfg, log)
		},
		// redis: options are a sinks/redis Config (docs/redis.md); the handler's
		// name is the entry's name.
		"redis": func(spec *config.HandlerConfig, log *slog.Logger, _ io.Writer) (consumer.Handler, error) {
			cfg := redissink.DefaultConfig()
			if err := spec.DecodeOptions(&cfg); err != nil {
				return nil, err
			}
			cfg.Name = spec.Name
			return redissink.New(cfg, log)
		},
		// aggregate: options are an aggregators Config without name
		// (docs/aggregators.md); the handler's name is the entry's name. Its
		// tables must cover the summaries' sources.
		"aggregate": func(spec *config.HandlerConfig, log *slog.Logger, _ io.Writer) (consumer.Handler, error) {
			cfg := aggregators.DefaultConfig()
			if err := spec.DecodeOptions(&cfg); err != nil {
				return nil, err
			}
			cfg.Name = spec.Name
			return aggregators.New(cfg, log)
		},
	}
}

// buildHandlers builds every configured handler.
func buildHandlers(f *config.File, log *slog.Logger, stdout io.Writer) ([]consumer.Handler, error) {
	factories := builtinHandlers()
	var hs []consumer.Handler
	for i := range f.Consumers.Handlers {
		spec := &f.Consumers.Handlers[i]
		mk, ok := factories[spec.Handler]
		if !ok {
			return nil, fmt.Errorf("%w: consumers.handlers[%d].handler: unknown handler %q", consumer.ErrConfig, i, spec.Handler)
		}
		h, err := mk(spec, log.With("handler", spec.Name), stdout)
		if err != nil {
			return nil, fmt.Errorf("consumers.handlers[%d] (%s): %w", i, spec.Name, err)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func buildRunner(f *config.File, log *slog.Logger, stdout io.Writer) (*consumer.Runner, error) {
	if len(f.Consumers.Handlers) == 0 {
		return nil, errors.New("consumers.handlers: no handlers configured")
	}
	hs, err := buildHandlers(f, log, stdout)
	if err != nil {
		return nil, err
	}
	reg := consumer.NewRegistry()
	for i, h := range hs {
		if err := reg.Register(h, f.Consumers.Handlers[i].RouteOptions()...); err != nil {
			return nil, err
		}
	}
	return consumer.NewRunner(f.Consumers.Runner(f.Kafka), reg, log)
}

// stdoutHandler prints each change as a kanal JSON envelope on one line.
type stdoutHandler struct {
	name       string
	tombstones bool
	mu         sync.Mutex
	out        *bufio.Writer
}

type stdoutOptions struct {
	// Tombstones prints {"tombstone":"<key>"} lines for tombstones too.
	Tombstones bool `yaml:"tombstones"`
}

func newStdoutHandler(spec *config.HandlerConfig, _ *slog.Logger, stdout io.Writer) (consumer.Handler, error) {
	var o stdoutOptions
	if err := spec.DecodeOptions(&o); err != nil {
		return nil, err
	}
	return &stdoutHandler{name: spec.Name, tombstones: o.Tombstones, out: bufio.NewWriter(stdout)}, nil
}

func (h *stdoutHandler) Name() string { return h.name }

// Handle writes the batch and flushes it before returning, so that a committed
// offset always means the line was written.
func (h *stdoutHandler) Handle(_ context.Context, b consumer.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range b.Records {
		if r.Tombstone {
			if h.tombstones {
				fmt.Fprintf(h.out, "{\"tombstone\":%q}\n", r.Key)
			}
			continue
		}
		line, err := r.Change.MarshalJSON()
		if err != nil {
			return consumer.Permanent(err)
		}
		h.out.Write(line)
		h.out.WriteByte('\n')
	}
	return h.out.Flush()
}
