package handlers

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/kafkaconn"
)

// Runner is the consumer.Runner of a consumers section, with the handlers built
// for it.
type Runner struct {
	*consumer.Runner
	// Handlers are the section's handlers, in the order of the file.
	Handlers []consumer.Handler
}

// Close closes the handlers that hold connections (those implementing
// io.Closer or Close()). Call it after Run returned.
func (r *Runner) Close() error {
	return closeAll(r.Handlers)
}

// NewRunner builds what `kanal consume` runs: every handler of c from its
// factory in reg, each registered with its entry's tables, group, failure
// policy and retry, on a consumer.Runner connected through k (the file's kafka
// section). env.Log is the Runner's logger; each handler gets it with its name.
func NewRunner(c Config, k kafkaconn.Config, reg *Factories, env Env) (*Runner, error) {
	env = env.withDefaults()
	if len(c.Handlers) == 0 {
		return nil, fmt.Errorf("%w: consumers.handlers: no handlers configured", consumer.ErrConfig)
	}
	if err := c.Validate(k); err != nil {
		return nil, err
	}
	hs, err := reg.Build(&c, env)
	if err != nil {
		return nil, err
	}
	routes := consumer.NewRegistry()
	for i, h := range hs {
		if err := routes.Register(h, c.Handlers[i].RouteOptions()...); err != nil {
			closeAll(hs)
			return nil, fmt.Errorf("consumers.handlers[%d] (%s): %w", i, c.Handlers[i].Name, err)
		}
	}
	r, err := consumer.NewRunner(c.Runner(k), routes, env.Log)
	if err != nil {
		closeAll(hs)
		return nil, err
	}
	return &Runner{Runner: r, Handlers: hs}, nil
}

// options decodes the options of entry i for its factory.
func (r *Factories) options(i int, spec *Spec) (Factory, any, error) {
	f, err := r.lookup(i, spec)
	if err != nil {
		return nil, nil, err
	}
	if spec.Options.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(spec.Options.Content); j += 2 {
			if k := spec.Options.Content[j].Value; slices.Contains(ReservedOptions(f), k) {
				return nil, nil, fmt.Errorf("%w: consumers.handlers[%d].options.%s: not an option here: it is the entry's %s",
					consumer.ErrConfig, i, k, k)
			}
		}
	}
	opts := f.NewOptions()
	if err := spec.DecodeOptions(opts); err != nil {
		return nil, nil, fmt.Errorf("consumers.handlers[%d] (%s): %w", i, spec.Name, err)
	}
	return f, opts, nil
}

// build makes the handler of entry i.
func (r *Factories) build(i int, spec *Spec, env Env) (consumer.Handler, error) {
	f, opts, err := r.options(i, spec)
	if err != nil {
		return nil, err
	}
	env.Log = env.Log.With("handler", spec.Name)
	h, err := f.New(spec, opts, env)
	if err != nil {
		return nil, fmt.Errorf("consumers.handlers[%d] (%s): %w", i, spec.Name, err)
	}
	if h == nil {
		return nil, fmt.Errorf("%w: consumers.handlers[%d] (%s): factory %q returned no handler", consumer.ErrConfig, i, spec.Name, spec.Handler)
	}
	if h.Name() != spec.Name {
		closeAll([]consumer.Handler{h})
		return nil, fmt.Errorf("%w: consumers.handlers[%d]: handler type %q named its handler %q, not %q",
			consumer.ErrConfig, i, spec.Handler, h.Name(), spec.Name)
	}
	return h, nil
}

// Build makes every handler of c, in order. On an error the ones already made
// are closed.
func (r *Factories) Build(c *Config, env Env) ([]consumer.Handler, error) {
	env = env.withDefaults()
	var hs []consumer.Handler
	for i := range c.Handlers {
		h, err := r.build(i, &c.Handlers[i], env)
		if err != nil {
			closeAll(hs)
			return nil, err
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// Check validates every entry of c without connecting: its type is
// registered, its options decode, and its factory builds it (the handler is
// closed at once). Errors name the entry and the field.
func (r *Factories) Check(c *Config) error {
	hs, err := r.Build(c, Env{Stdout: io.Discard})
	if err != nil {
		return err
	}
	return closeAll(hs)
}

// Probes lists the servers the handlers of c talk to, for factories that say
// (see Prober).
func (r *Factories) Probes(c *Config) ([]Probe, error) {
	var ps []Probe
	for i := range c.Handlers {
		spec := &c.Handlers[i]
		f, opts, err := r.options(i, spec)
		if err != nil {
			return nil, err
		}
		if p, ok := f.(Prober); ok {
			for _, pr := range p.Probes(spec, opts) {
				pr.Server = fmt.Sprintf("handler %s: %s", spec.Name, pr.Server)
				ps = append(ps, pr)
			}
		}
	}
	return ps, nil
}

// Resetter builds the handler of c that runs in group, when it keeps its
// progress in its sink (consumer.OffsetResetter), for `kanal offsets reset`;
// nil when none does. The caller closes it (io.Closer). Handlers sharing a
// group cannot keep offsets (the consumer registry refuses), so there is at
// most one.
func (r *Factories) Resetter(c *Config, group string, env Env) (consumer.OffsetResetter, error) {
	env = env.withDefaults()
	for i := range c.Handlers {
		spec := &c.Handlers[i]
		if spec.GroupName() != group {
			continue
		}
		h, err := r.build(i, spec, env)
		if err != nil {
			return nil, err
		}
		if rs, ok := h.(consumer.OffsetResetter); ok {
			return rs, nil
		}
		closeAll([]consumer.Handler{h})
	}
	return nil, nil
}

// closeAll closes the handlers that can be closed and returns the first error.
func closeAll(hs []consumer.Handler) error {
	var errs []error
	for _, h := range hs {
		switch c := h.(type) {
		case io.Closer:
			errs = append(errs, c.Close())
		case interface{ Close() }:
			c.Close()
		}
	}
	return errors.Join(errs...)
}
