package reference

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/handlers"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := Schema(handlers.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("kanal.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("kanal.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// asJSON turns a YAML document into the JSON value a schema validator checks.
func asJSON(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSchemaAcceptsTheExample: the example (with its commented-out settings
// restored) is valid under the schema, so the schema knows every key.
func TestSchemaAcceptsTheExample(t *testing.T) {
	s := compileSchema(t)
	for name, doc := range map[string]string{
		"as shipped":             string(Example()),
		"commented-out restored": commentedSetting.ReplaceAllString(string(Example()), "$1$2"),
	} {
		if err := s.Validate(asJSON(t, doc)); err != nil {
			t.Errorf("example %s: %v", name, err)
		}
	}
}

// TestSchemaRejectsMistakes: what the loader refuses for a wrong key or type,
// an editor using the schema flags too, options included (by handler type).
func TestSchemaRejectsMistakes(t *testing.T) {
	s := compileSchema(t)
	base := "kafka:\n  brokers: [k:9092]\nconsumers:\n  handlers:\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown top-level key", "kafak:\n  brokers: [k:9092]\n", "kafak"},
		{"unknown source key", "source:\n  nmae: x\n", "nmae"},
		{"duration as text", "source:\n  connect_timeout: soon\n", "connect_timeout"},
		{"policy", base + "    - {handler: stdout, name: a, tables: [d.t], on_failure: ignore}\n", "on_failure"},
		{"unknown handler", base + "    - {handler: nosuch, name: a, tables: [d.t]}\n", "handler"},
		{"entry without tables", base + "    - {handler: stdout, name: a}\n", "tables"},
		{"stdout option", base + "    - {handler: stdout, name: a, tables: [d.t], options: {colour: red}}\n", "colour"},
		{"redis option of sqlmirror", base + "    - {handler: redis, name: a, tables: [d.t], options: {dialect: mysql}}\n", "dialect"},
		{"reserved name option", base + "    - {handler: redis, name: a, tables: [d.t], options: {name: b}}\n", "name"},
		{"nested redis option", base + "    - {handler: redis, name: a, tables: [d.t], options: {instances: {m: {adr: x}}}}\n", "adr"},
		{"aggregate target type", base + "    - {handler: aggregate, name: a, tables: [d.t], options: {target: {max_conns: many}}}\n", "max_conns"},
	} {
		err := s.Validate(asJSON(t, tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	// And durations as the loader takes them.
	for _, d := range []string{"0", "0s", "250ms", "1m30s", "24h", "200us", "1.5s"} {
		if err := s.Validate(asJSON(t, "source:\n  connect_timeout: "+d+"\n")); err != nil {
			t.Errorf("duration %s: %v", d, err)
		}
	}
}
