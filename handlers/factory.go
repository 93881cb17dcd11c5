package handlers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
)

// Factory makes handlers of one type from entries of the consumers section.
// Typed is the usual way to write one.
type Factory interface {
	// NewOptions returns a pointer to the type's options with their defaults
	// filled in; an entry's options are decoded on top of it. Its type is also
	// what `kanal config schema` describes.
	NewOptions() any
	// New builds the handler of entry spec from its decoded options (what
	// NewOptions returned). It must not connect to anything: `kanal config
	// check` builds every handler to validate the file, and closes it (see
	// io.Closer) unused. Connect on first use instead.
	New(spec *Spec, options any, env Env) (consumer.Handler, error)
}

// Prober is implemented by factories whose handlers talk to servers, so that
// `kanal config check --connect` can try each of them.
type Prober interface {
	// Probes lists the servers of entry spec with its decoded options.
	Probes(spec *Spec, options any) []Probe
}

// Probe is one server a handler (or kanal itself) talks to.
type Probe struct {
	// Server names it for people: what it is and its address, never a password.
	Server string
	// Check connects, checks what can be checked cheaply and disconnects.
	Check func(ctx context.Context) error
}

// Env is what factories get besides the entry.
type Env struct {
	// Log is the handler's logger (already carrying its name); nil discards.
	Log *slog.Logger
	// Stdout is where the stdout handler prints; nil is os.Stdout.
	Stdout io.Writer
}

func (e Env) withDefaults() Env {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	return e
}

// Typed is a Factory of handlers whose options are an O (a struct with yaml
// tags; decoding rejects unknown keys).
type Typed[O any] struct {
	// Defaults returns the options' defaults; nil means O's zero value.
	Defaults func() O
	// Build makes the handler (required). spec.Name is the handler's name. It
	// must not connect (see Factory.New).
	Build func(spec *Spec, opts *O, env Env) (consumer.Handler, error)
	// Probe, when set, lists the servers the handler talks to (see Prober).
	Probe func(spec *Spec, opts *O) []Probe
	// Reserved are keys of O's yaml that an entry sets outside its options
	// (the built-in sinks' "name" is the entry's name): they are refused in
	// options and left out of the options' schema.
	Reserved []string
}

// ReservedOptions returns Reserved.
func (t Typed[O]) ReservedOptions() []string { return t.Reserved }

// ReservedOptions returns the keys f refuses in an entry's options, for
// factories that say (Typed does: its Reserved).
func ReservedOptions(f Factory) []string {
	if r, ok := f.(interface{ ReservedOptions() []string }); ok {
		return r.ReservedOptions()
	}
	return nil
}

// NewOptions returns a *O holding the defaults.
func (t Typed[O]) NewOptions() any {
	o := new(O)
	if t.Defaults != nil {
		*o = t.Defaults()
	}
	return o
}

// New calls Build with the decoded options.
func (t Typed[O]) New(spec *Spec, options any, env Env) (consumer.Handler, error) {
	o, ok := options.(*O)
	if !ok {
		return nil, fmt.Errorf("%w: handler %s: options are a %T, want %T", consumer.ErrConfig, spec.Name, options, o)
	}
	if t.Build == nil {
		return nil, fmt.Errorf("%w: handler type of %s has no Build function", consumer.ErrConfig, spec.Name)
	}
	return t.Build(spec, o, env)
}

// Probes calls Probe, if set.
func (t Typed[O]) Probes(spec *Spec, options any) []Probe {
	o, ok := options.(*O)
	if !ok || t.Probe == nil {
		return nil
	}
	return t.Probe(spec, o)
}

// Factories is a registry of handler types by name. Build one with
// NewFactories or Builtin and Add to it; it is not safe for concurrent Add.
type Factories struct {
	byName map[string]Factory
}

// NewFactories returns an empty registry.
func NewFactories() *Factories { return &Factories{byName: map[string]Factory{}} }

var typeNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Add registers f under name, the value of `handler:` in the file. Names are
// lower-case letters, digits, '_' and '-'; a name can be added once.
func (r *Factories) Add(name string, f Factory) error {
	switch {
	case !typeNameRE.MatchString(name):
		return fmt.Errorf("%w: handler type %q must be lower-case letters, digits, '_' or '-'", consumer.ErrConfig, name)
	case f == nil || reflect.ValueOf(f).Kind() == reflect.Pointer && reflect.ValueOf(f).IsNil():
		return fmt.Errorf("%w: handler type %q: nil factory", consumer.ErrConfig, name)
	case r.byName[name] != nil:
		return fmt.Errorf("%w: handler type %q is already registered", consumer.ErrConfig, name)
	}
	r.byName[name] = f
	return nil
}

// Get returns the factory registered under name.
func (r *Factories) Get(name string) (Factory, bool) {
	f, ok := r.byName[name]
	return f, ok
}

// Names returns the registered names, sorted.
func (r *Factories) Names() []string {
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookup returns the factory of entry i, or an error naming the field.
func (r *Factories) lookup(i int, spec *Spec) (Factory, error) {
	f, ok := r.byName[spec.Handler]
	if !ok {
		return nil, fmt.Errorf("%w: consumers.handlers[%d].handler: unknown handler %q (known: %s)",
			consumer.ErrConfig, i, spec.Handler, strings.Join(r.Names(), ", "))
	}
	return f, nil
}
