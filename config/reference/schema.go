package reference

import (
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"slices"

	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/handlers"
)

// durationPattern is what time.ParseDuration takes (yaml.v3 decodes durations
// with it; a plain integer is nanoseconds).
const durationPattern = `^[-+]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)(\d+(\.\d*)?|\.\d+)?((ns|us|µs|ms|s|m|h)(\d+(\.\d*)?|\.\d+)?)*$`

// Schema returns the JSON Schema (draft 2020-12) of the configuration file
// whose handlers are the types of reg: every key with its doc comment, and
// each handler entry's options checked against its type's options (by the
// value of `handler`). Editors that speak the YAML language server protocol
// use it through a first line `# yaml-language-server: $schema=<path>`.
func Schema(reg *handlers.Factories) ([]byte, error) {
	return schemaWith(reg, comments)
}

func schemaWith(reg *handlers.Factories, comments map[string]string) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Anonymous:                  true,
		Namer:                      defName,
		Mapper:                     mapType,
		LookupComment: func(t reflect.Type, field string) string {
			k := typeKey(t)
			if field != "" {
				k += "." + field
			}
			return oneLine(describe(comments, k))
		},
	}
	root := r.Reflect(&config.File{})
	root.Title = "kanal configuration file"
	// The TLS settings' mapping, which mapType refers to from every `tls:`.
	tr := *r
	tr.Mapper = func(t reflect.Type) *jsonschema.Schema {
		if t == tlsType {
			return nil
		}
		return mapType(t)
	}
	for k, d := range tr.ReflectFromType(tlsType).Definitions {
		root.Definitions[k] = d
	}
	spec := root.Definitions[defName(reflect.TypeFor[handlers.Spec]())]
	if spec == nil {
		return nil, fmt.Errorf("reference: no definition of handlers.Spec")
	}
	names := reg.Names()
	if h, ok := spec.Properties.Get("handler"); ok {
		for _, n := range names {
			h.Enum = append(h.Enum, n)
		}
	}
	for _, n := range names {
		f, _ := reg.Get(n)
		t := reflect.TypeOf(f.NewOptions()).Elem()
		opts := r.ReflectFromType(t)
		for k, d := range opts.Definitions {
			root.Definitions[k] = d
		}
		def := "options." + n
		// The options' own definition, less the keys the entry sets itself.
		body := root.Definitions[defName(t)]
		if body == nil || body.Properties == nil {
			root.Definitions[def] = &jsonschema.Schema{Description: fmt.Sprintf("Options of handler type %s.", n)}
		} else {
			cp := *body
			cp.Properties = orderedmap.New[string, *jsonschema.Schema]()
			reserved := handlers.ReservedOptions(f)
			for p := body.Properties.Oldest(); p != nil; p = p.Next() {
				if !slices.Contains(reserved, p.Key) {
					cp.Properties.Set(p.Key, p.Value)
				}
			}
			cp.Description = fmt.Sprintf("Options of handler type %s: %s", n, body.Description)
			root.Definitions[def] = &cp
		}
		spec.AllOf = append(spec.AllOf, &jsonschema.Schema{
			If: &jsonschema.Schema{
				Properties: props("handler", &jsonschema.Schema{Const: n}),
				Required:   []string{"handler"},
			},
			Then: &jsonschema.Schema{Properties: props("options", &jsonschema.Schema{Ref: "#/$defs/" + def})},
		})
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func props(k string, v *jsonschema.Schema) *orderedmap.OrderedMap[string, *jsonschema.Schema] {
	m := orderedmap.New[string, *jsonschema.Schema]()
	m.Set(k, v)
	return m
}

// defName names a type's definition after its package: "redis.Config",
// "aggregators.Config" (several packages have a Config).
func defName(t reflect.Type) string {
	if t.Name() == "" {
		return ""
	}
	return path.Base(t.PkgPath()) + "." + t.Name()
}

// mapType describes the types whose YAML form is not their Go form.
func mapType(t reflect.Type) *jsonschema.Schema {
	switch t {
	case durationType:
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: durationPattern, Description: `a duration such as "250ms", "5s", "1m30s", "24h"`},
			{Type: "integer", Description: "nanoseconds"},
		}}
	case nodeType:
		return &jsonschema.Schema{Type: "object"}
	case tlsType:
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "boolean", Description: "true: TLS with the system's roots; false: no TLS"},
			{Ref: "#/$defs/" + defName(tlsType)},
		}}
	case reflect.TypeFor[consumer.Policy]():
		return &jsonschema.Schema{Type: "string", Enum: []any{string(consumer.Halt), string(consumer.DeadLetter)}}
	}
	return nil
}
