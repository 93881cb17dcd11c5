package reference

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// Markdown returns the configuration reference (docs/config.md): one table per
// section of the file and per handler type's options, with each key's type,
// default and doc comment.
func Markdown(reg *handlers.Factories) []byte {
	return markdownWith(reg, comments)
}

// tlsHeading is the title of the TLS settings' section.
const tlsHeading = "TLS settings (`tls:`)"

// section is one mapping of the file: a struct type at a path.
type section struct {
	path string
	typ  reflect.Type
	def  reflect.Value
	omit []string // keys set elsewhere (a handler's reserved options)
	of   string   // the handler type of an options section
	// noDefaults: the section is an optional struct (a nil pointer by
	// default) that is given whole.
	noDefaults bool
}

// heading is the section's title; anchor(heading) is its link target.
func (s section) heading() string {
	if s.of != "" {
		return "`" + s.path + "` (" + s.of + ")"
	}
	return "`" + s.path + "`"
}

func markdownWith(reg *handlers.Factories, comments map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated from the Go types and their doc comments by ` + "`go test ./config/reference -update`" + `; do not edit. -->

kanal reads one YAML file (` + "`--config`" + `). ` + "`${NAME}`" + ` or ` + "`${NAME:-default}`" + ` is replaced
from the environment, so secrets stay out of the file; an unset variable is an error
naming it. Unknown keys are errors, so a typo never silently falls back to a default.
Passwords and DSNs never appear in logs or errors. A file for consumers only may leave
out ` + "`source:`" + `.

- ` + "`kanal config example`" + ` prints a complete commented file
  ([examples/kanal.yaml](../examples/kanal.yaml)).
- ` + "`kanal config check --config F`" + ` validates a file without connecting (exit 0, or 2
  naming the bad field); with ` + "`--connect`" + ` it also tries every server: the MySQL source
  (connection, privileges, binlog settings), each Kafka broker, the schema registry, each
  handler's targets (exit 1 if one fails).
- ` + "`kanal config schema`" + ` prints the file's JSON Schema
  ([kanal.schema.json](kanal.schema.json)). Editors using the YAML language server
  complete and check the file when it starts with
  ` + "`# yaml-language-server: $schema=<path or URL of kanal.schema.json>`" + `.

Durations are Go durations: ` + "`250ms`, `5s`, `1m30s`, `24h`" + `.
`)
	root := reflect.TypeFor[config.File]()
	queue := []section{{path: "", typ: root, def: reflect.ValueOf(config.Default())}}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		queue = append(writeSection(&b, comments, s, "##"), queue...)
	}
	// The TLS settings every connection shares, once.
	tlsSection := section{path: "tls", typ: tlsType, def: reflect.ValueOf(tlsconfig.Config{})}
	fmt.Fprintf(&b, "\n## %s\n", tlsHeading)
	b.WriteString("\nEvery `tls:` of the file (`source.tls`, `kafka.tls`, a Redis instance's, a SQL target's, …) takes " +
		"`true` (TLS with the system's roots), `false` (the default), or this mapping. A file's error names the setting " +
		"and the file, never its content. Without TLS, a connection to another machine logs a warning once.\n")
	writeSection(&b, comments, tlsSection, "")
	b.WriteString("\n## Handler options\n\nThe `options:` of a `consumers.handlers[]` entry depend on its `handler:` type.\n")
	for _, n := range reg.Names() {
		f, _ := reg.Get(n)
		opts := reflect.ValueOf(f.NewOptions()).Elem()
		queue := []section{{path: "options", typ: opts.Type(), def: opts, omit: handlers.ReservedOptions(f), of: n}}
		fmt.Fprintf(&b, "\n### handler: %s\n", n)
		first := true
		for len(queue) > 0 {
			s := queue[0]
			queue = queue[1:]
			level := "####"
			if first {
				level = ""
				first = false
			}
			queue = append(writeSection(&b, comments, s, level), queue...)
		}
	}
	return b.Bytes()
}

// writeSection writes the table of s (under a heading of level, unless
// empty) and returns the nested sections it refers to.
func writeSection(b *bytes.Buffer, comments map[string]string, s section, level string) []section {
	set := without(settings(s.typ, s.def), s.omit)
	var nested []section
	var rows []string
	topLevel := s.path == "" && s.typ == reflect.TypeFor[config.File]()
	for _, x := range set {
		t := x.typ
		p := join(s.path, x.key)
		desc := oneLine(describeSetting(comments, x))
		if topLevel {
			// The file's sections: each gets its own table.
			nested = append(nested, section{path: p, typ: deref(t), def: derefValue(x.def)})
			continue
		}
		kind := typeName(t)
		switch {
		case isStruct(deref(t)):
			sub := section{path: p, typ: deref(t), def: derefValue(x.def), of: s.of, noDefaults: t.Kind() == reflect.Pointer}
			nested = append(nested, sub)
			kind = fmt.Sprintf("[object](#%s)", anchor(sub.heading()))
		case t.Kind() == reflect.Slice && isStruct(deref(t.Elem())):
			sub := section{path: p + "[]", typ: deref(t.Elem()), of: s.of}
			nested = append(nested, sub)
			kind = fmt.Sprintf("[list of objects](#%s)", anchor(sub.heading()))
		case t.Kind() == reflect.Map && isStruct(deref(t.Elem())):
			sub := section{path: p + ".<name>", typ: deref(t.Elem()), of: s.of}
			nested = append(nested, sub)
			kind = fmt.Sprintf("[map of objects](#%s)", anchor(sub.heading()))
		}
		def := defaultText(x.def)
		if s.noDefaults {
			def = ""
		}
		rows = append(rows, fmt.Sprintf("| `%s` | %s | %s | %s |", x.key, kind, def, escape(desc)))
	}
	if len(rows) > 0 {
		if level != "" {
			fmt.Fprintf(b, "\n%s %s\n", level, s.heading())
		}
		if d := oneLine(describe(comments, typeKey(s.typ))); d != "" {
			fmt.Fprintf(b, "\n%s\n", d)
		}
		b.WriteString("\n| key | type | default | description |\n|---|---|---|---|\n")
		b.WriteString(strings.Join(rows, "\n"))
		b.WriteString("\n")
	}
	return nested
}

func join(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// anchor is the GitHub anchor of heading h.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

func deref(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

func derefValue(v reflect.Value) reflect.Value {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}
		}
		return v.Elem()
	}
	return v
}

// typeName is a Go type as the YAML file writes it.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	if t == tlsType {
		return "boolean or [TLS object](#" + anchor(tlsHeading) + ")"
	}
	if t == nodeType {
		return "object"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	case reflect.Map:
		return "map of " + typeName(t.Key()) + " to " + typeName(t.Elem())
	}
	return t.Kind().String()
}

// defaultText shows a default the way the file would write it; empty values
// show as "".
func defaultText(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	if v.Type() == durationType {
		return "`" + durationText(time.Duration(v.Int())) + "`"
	}
	switch v.Kind() {
	case reflect.Bool:
		return fmt.Sprintf("`%v`", v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("`%d`", v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("`%d`", v.Uint())
	case reflect.String:
		if v.String() == "" {
			return ""
		}
		return "`" + v.String() + "`"
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return ""
		}
	case reflect.Pointer:
		if v.IsNil() {
			return ""
		}
		return defaultText(v.Elem())
	}
	return ""
}

// durationText drops the zero units time.Duration.String writes ("1m0s" → "1m").
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
