package reference

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/tlsconfig"
)

var (
	durationType = reflect.TypeFor[time.Duration]()
	nodeType     = reflect.TypeFor[yaml.Node]()
	// tlsType is every connection's `tls:`: a boolean or a mapping, described
	// once (its own section, definition and example) rather than at each use.
	tlsType = reflect.TypeFor[tlsconfig.Config]()
)

// setting is one key of a YAML mapping decoded into a Go struct.
type setting struct {
	key     string        // the YAML key
	comment string        // the comment key: "<pkg path>.<Type>.<Field>"
	typ     reflect.Type  // the field's type
	def     reflect.Value // its default (the zero value when the struct has none)
}

// settings lists the keys of struct type t, as yaml.v3 decodes them: inline
// and embedded structs are flattened, "-" and unexported fields left out. def
// is a value of t holding the defaults (or invalid: zero values).
func settings(t reflect.Type, def reflect.Value) []setting {
	if !def.IsValid() {
		def = reflect.New(t).Elem()
	}
	var out []setting
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, settings(f.Type, def.Field(i))...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, setting{key: name, comment: typeKey(t) + "." + f.Name, typ: f.Type, def: def.Field(i)})
	}
	return out
}

// typeKey is a named type's key in the comment map: "<pkg path>.<Type>".
func typeKey(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }

// isStruct reports whether t is decoded as a nested mapping of known keys,
// described where it is used (the TLS settings are described once).
func isStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != nodeType && t != tlsType
}

// without returns s minus the settings named in keys.
func without(s []setting, keys []string) []setting {
	var out []setting
	for _, x := range s {
		if !slices.Contains(keys, x.key) {
			out = append(out, x)
		}
	}
	return out
}
