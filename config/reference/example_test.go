package reference

import (
	"reflect"
	"regexp"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/handlers"
)

// exampleEnv holds the variables the example needs (the DSNs must parse);
// those on comment lines and those with defaults need none.
func exampleEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"KANAL_DB_PASSWORD":       "secret",
		"KANAL_SUMMARY_DSN":       "postgres://kanal:secret@127.0.0.1:5432/kanal",
		"KANAL_MIRROR_DSN":        "postgres://kanal:secret@127.0.0.1:5432/mirror",
		"KANAL_ES_PASSWORD":       "secret",
		"KANAL_RABBITMQ_PASSWORD": "secret",
	}[name]
	return v, ok
}

// TestExampleLoads: the example is a valid file for the real loader and every
// built-in handler in it builds (without connecting).
func TestExampleLoads(t *testing.T) {
	f, err := config.Parse(Example(), exampleEnv)
	if err != nil {
		t.Fatalf("example: %v", err)
	}
	if err := handlers.Builtin().Check(&f.Consumers); err != nil {
		t.Fatalf("example: %v", err)
	}
	got := map[string]bool{}
	for _, h := range f.Consumers.Handlers {
		got[h.Handler] = true
	}
	for _, n := range handlers.Builtin().Names() {
		if !got[n] {
			t.Errorf("the example has no %s handler", n)
		}
	}
}

// commentedSetting is a setting shown commented out ("  # sasl:",
// "  #   mechanism: PLAIN"): prose comments do not start with "key:".
var commentedSetting = regexp.MustCompile(`(?m)^(\s*)# (\s*(- )?[a-z_]+:( .*)?)$`)

// TestExampleCoversEverySetting: every key of the file and of each built-in
// handler's options appears in the example, in its place (commented-out
// settings count).
func TestExampleCoversEverySetting(t *testing.T) {
	text := commentedSetting.ReplaceAllString(string(Example()), "$1$2")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("the example with its commented-out settings restored is not YAML: %v", err)
	}
	var missing []string
	covers(reflect.TypeFor[config.File](), []*yaml.Node{doc.Content[0]}, "", &missing)
	for _, m := range missing {
		t.Errorf("the example does not show %s", m)
	}
}

// TestExampleShowsTLS: the TLS settings every `tls:` takes are shown whole
// once, at source.tls.
func TestExampleShowsTLS(t *testing.T) {
	text := commentedSetting.ReplaceAllString(string(Example()), "$1$2")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	tls := valueOf(valueOf(doc.Content[0], "source"), "tls")
	if tls == nil {
		t.Fatal("the example has no source.tls")
	}
	var missing []string
	covers(tlsType, []*yaml.Node{tls}, "source.tls", &missing)
	for _, m := range missing {
		t.Errorf("the example does not show %s", m)
	}
}

// covers checks that the mappings in nodes, together, hold every key of struct
// type t (recursively), appending the paths of the missing ones.
func covers(t reflect.Type, nodes []*yaml.Node, path string, missing *[]string) {
	for _, s := range settings(t, reflect.Value{}) {
		p := join(path, s.key)
		var vals []*yaml.Node
		for _, n := range nodes {
			if v := valueOf(n, s.key); v != nil {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			*missing = append(*missing, p)
			continue
		}
		if s.typ == reflect.TypeFor[[]handlers.Spec]() {
			coversHandlers(vals, p, missing)
			continue
		}
		ft := deref(s.typ)
		switch {
		case ft == tlsType:
			// Shown whole once, as source.tls (TestExampleShowsTLS).
		case isStruct(ft):
			covers(ft, vals, p, missing)
		case ft.Kind() == reflect.Slice && isStruct(deref(ft.Elem())):
			covers(deref(ft.Elem()), children(vals, yaml.SequenceNode), p+"[]", missing)
		case ft.Kind() == reflect.Map && isStruct(deref(ft.Elem())):
			covers(deref(ft.Elem()), children(vals, yaml.MappingNode), p+".<name>", missing)
		}
	}
}

// coversHandlers checks the handler entries, and each built-in type's options
// against the entries of that type.
func coversHandlers(lists []*yaml.Node, path string, missing *[]string) {
	entries := children(lists, yaml.SequenceNode)
	covers(reflect.TypeFor[handlers.Spec](), entries, path+"[]", missing)
	reg := handlers.Builtin()
	for _, n := range reg.Names() {
		f, _ := reg.Get(n)
		var opts []*yaml.Node
		for _, e := range entries {
			if h := valueOf(e, "handler"); h != nil && h.Value == n {
				if o := valueOf(e, "options"); o != nil {
					opts = append(opts, o)
				}
			}
		}
		p := path + "[" + n + "].options"
		if len(opts) == 0 {
			*missing = append(*missing, p)
			continue
		}
		t := reflect.TypeOf(f.NewOptions()).Elem()
		var m []string
		covers(t, opts, p, &m)
		for _, x := range m {
			reserved := false
			for _, r := range handlers.ReservedOptions(f) {
				reserved = reserved || x == p+"."+r
			}
			if !reserved {
				*missing = append(*missing, x)
			}
		}
	}
}

// valueOf returns the value of key in mapping n.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// children returns the items of sequences, or the values of mappings.
func children(nodes []*yaml.Node, kind yaml.Kind) []*yaml.Node {
	var out []*yaml.Node
	for _, n := range nodes {
		if n.Kind != kind {
			continue
		}
		for i, c := range n.Content {
			if kind == yaml.SequenceNode || i%2 == 1 {
				out = append(out, c)
			}
		}
	}
	return out
}
