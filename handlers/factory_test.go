package handlers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/kafkaconn"
)

// section decodes a consumers section the way config does.
func section(t *testing.T, doc string) *Config {
	t.Helper()
	c := Default()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return &c
}

type probeOpts struct {
	Addr string `yaml:"addr"`
	Fail bool   `yaml:"fail"`
}

type fake struct {
	name   string
	closed *int
}

func (f *fake) Name() string                                 { return f.name }
func (f *fake) Handle(context.Context, consumer.Batch) error { return nil }
func (f *fake) Close() error                                 { *f.closed++; return nil }

func TestFactoriesAdd(t *testing.T) {
	r := Builtin()
	if got := strings.Join(r.Names(), ","); got != "aggregate,elasticsearch,memcached,rabbitmq,redis,sqlmirror,stdout" {
		t.Errorf("Builtin names %s", got)
	}
	for _, tc := range []struct {
		name string
		f    Factory
		want string
	}{
		{"redis", Stdout(), "already registered"},
		{"My Handler", Stdout(), "lower-case"},
		{"", Stdout(), "lower-case"},
		{"nilf", nil, "nil factory"},
	} {
		if err := r.Add(tc.name, tc.f); !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%q): %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := r.Add("mine", Typed[probeOpts]{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := NewFactories().Get("stdout"); ok {
		t.Error("NewFactories must be empty: nothing registers itself")
	}
}

// TestBuildErrorsNameTheEntry: errors of the registry's part name the entry
// and its field; handlers built before a failing one are closed.
func TestBuildErrorsNameTheEntry(t *testing.T) {
	closed := 0
	r := Builtin()
	r.Add("fake", Typed[probeOpts]{
		Defaults: func() probeOpts { return probeOpts{Addr: "default:1"} },
		Build: func(spec *Spec, o *probeOpts, env Env) (consumer.Handler, error) {
			if o.Fail {
				return nil, errors.New("refused by the factory")
			}
			return &fake{name: spec.Name, closed: &closed}, nil
		},
		Reserved: []string{"name"},
	})
	r.Add("misnamed", Typed[probeOpts]{Build: func(spec *Spec, o *probeOpts, env Env) (consumer.Handler, error) {
		return &fake{name: "other", closed: &closed}, nil
	}})
	head := "handlers:\n  - {handler: fake, name: first, tables: [d.t]}\n"
	for _, tc := range []struct{ doc, want string }{
		{head + "  - {handler: nosuch, name: b, tables: [d.t]}\n", `consumers.handlers[1].handler: unknown handler "nosuch" (known: aggregate, elasticsearch, fake, memcached, misnamed, rabbitmq, redis, sqlmirror, stdout)`},
		{head + "  - {handler: fake, name: b, tables: [d.t], options: {adr: x}}\n", "consumers.handlers[1] (b): consumer: invalid configuration: options: yaml: unmarshal errors:\n  line 1: field adr not found"},
		{head + "  - {handler: fake, name: b, tables: [d.t], options: {name: c}}\n", "consumers.handlers[1].options.name: not an option here"},
		{head + "  - {handler: fake, name: b, tables: [d.t], options: {fail: true}}\n", "consumers.handlers[1] (b): refused by the factory"},
		{head + "  - {handler: misnamed, name: b, tables: [d.t]}\n", `consumers.handlers[1]: handler type "misnamed" named its handler "other", not "b"`},
	} {
		closed = 0
		_, err := r.Build(section(t, tc.doc), Env{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %q", err, tc.want)
		}
		if closed < 1 {
			t.Errorf("%q: the handler built before the failing one was not closed", tc.want)
		}
	}
}

// TestOptionsDecodeOnDefaults: an entry's options override the factory's
// defaults key by key.
func TestOptionsDecodeOnDefaults(t *testing.T) {
	var got []probeOpts
	r := NewFactories()
	r.Add("fake", Typed[probeOpts]{
		Defaults: func() probeOpts { return probeOpts{Addr: "default:1"} },
		Build: func(spec *Spec, o *probeOpts, env Env) (consumer.Handler, error) {
			got = append(got, *o)
			return consumer.HandlerFunc{HandlerName: spec.Name}, nil
		},
		Probe: func(spec *Spec, o *probeOpts) []Probe {
			return []Probe{{Server: "fake " + o.Addr, Check: func(context.Context) error { return nil }}}
		},
	})
	c := section(t, "handlers:\n  - {handler: fake, name: a, tables: [d.t]}\n  - {handler: fake, name: b, tables: [d.t], options: {addr: 'h:2'}}\n")
	if err := r.Check(c); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Addr != "default:1" || got[1].Addr != "h:2" {
		t.Errorf("options %+v", got)
	}
	ps, err := r.Probes(c)
	if err != nil || len(ps) != 2 || ps[0].Server != "handler a: fake default:1" || ps[1].Server != "handler b: fake h:2" {
		t.Errorf("probes %+v, %v", ps, err)
	}
}

// TestNewRunnerRoutes: NewRunner registers each entry with its tables, group
// and policy, refuses an empty section, and validates it.
func TestNewRunnerRoutes(t *testing.T) {
	k := kafkaconn.Default()
	k.Brokers = []string{"127.0.0.1:1"}
	c := section(t, "handlers:\n  - {handler: stdout, name: a, tables: [d.t], group: g1, on_failure: dead-letter}\n  - {handler: stdout, name: b, tables: ['d.*']}\n")
	r, err := NewRunner(*c, k, Builtin(), Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Handlers) != 2 || r.Handlers[0].Name() != "a" || r.Handlers[1].Name() != "b" {
		t.Errorf("handlers %v", r.Handlers)
	}
	if c.Handlers[0].GroupName() != "g1" || c.Handlers[1].GroupName() != "kanal-b" {
		t.Errorf("groups %s %s", c.Handlers[0].GroupName(), c.Handlers[1].GroupName())
	}
	if _, err := NewRunner(Default(), k, Builtin(), Env{}); !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), "no handlers") {
		t.Errorf("empty section: %v", err)
	}
	bad := section(t, "handlers:\n  - {handler: stdout, name: a, tables: [d.t]}\n  - {handler: stdout, name: a, tables: [d.t]}\n")
	if _, err := NewRunner(*bad, k, Builtin(), Env{}); err == nil || !strings.Contains(err.Error(), `consumers.handlers[1].name: "a" is used twice`) {
		t.Errorf("duplicate name: %v", err)
	}
}
