package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/producer"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const minimal = `
source:
  name: shop
  addr: 127.0.0.1:3306
  user: kanal
  password: ${PW}
kafka:
  brokers: ["127.0.0.1:9092"]
`

func TestParseDefaultsAndExpansion(t *testing.T) {
	f, err := Parse([]byte(minimal), env(map[string]string{"PW": "s3cr#t: {x}"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.Source.Password != "s3cr#t: {x}" {
		t.Errorf("password %q: YAML syntax in a secret must stay a plain string", f.Source.Password)
	}
	d := producer.DefaultConfig()
	if f.Kafka.TopicPrefix != "kanal" || f.Kafka.CleanupPolicy != "compact" || !f.Kafka.Tombstones ||
		f.Kafka.FlushInterval != d.Kafka.FlushInterval || f.Source.Start != "current" || f.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v", f.Kafka)
	}
}

func TestParseOverrides(t *testing.T) {
	f, err := Parse([]byte(minimal+`  flush_interval: 5ms
  tombstones: false
tables:
  include: ["shop.*"]
  exclude: ["shop.tmp_*"]
`), env(map[string]string{"PW": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.Kafka.FlushInterval != 5*time.Millisecond || f.Kafka.Tombstones {
		t.Errorf("overrides lost: %+v", f.Kafka)
	}
	// Every format the codec seam knows is a valid kafka.format (json-compact
	// needs nothing more; avro-confluent a registry, checked elsewhere).
	for _, format := range []string{"json", "json-compact", "canal-json", "avro"} {
		f, err := Parse([]byte(minimal+"  format: "+format+"\n"), env(map[string]string{"PW": "x"}))
		if err != nil || f.Kafka.Format != format {
			t.Errorf("kafka.format %s: %v", format, err)
		}
	}
}

func TestParseDefaultValueSyntax(t *testing.T) {
	f, err := Parse([]byte(strings.Replace(minimal, "${PW}", "${PW:-fallback}", 1)), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if f.Source.Password != "fallback" {
		t.Errorf("password %q", f.Source.Password)
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
		sentinel        error
	}{
		{"missing variable", minimal, "PW", ErrMissingVariable},
		{"unknown key", minimal + "  flush_recrods: 5\n", "flush_recrods", producer.ErrConfig},
		{"bad start", strings.Replace(minimal, "user: kanal", "user: kanal\n  start: yesterday", 1), "source.start", producer.ErrConfig},
		{"no brokers", strings.Replace(minimal, `brokers: ["127.0.0.1:9092"]`, "brokers: []", 1), "kafka.brokers", producer.ErrConfig},
		{"bad pattern", minimal + "tables:\n  include: [\"nodot\"]\n", "tables.include[0]", producer.ErrConfig},
		{"bad exclude", minimal + "tables:\n  exclude: [\"a.[\"]\n", "tables.exclude[0]", producer.ErrConfig},
		{"bad log level", minimal + "log:\n  level: loud\n", "log.level", producer.ErrConfig},
		{"bad format", minimal + "  format: avro-ish\n", "kafka.format", producer.ErrConfig},
		{"bad name", strings.Replace(minimal, "name: shop", "name: 'a b'", 1), "source.name", producer.ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := env(map[string]string{"PW": "hunter2"})
			if tc.sentinel == ErrMissingVariable {
				lookup = env(nil)
			}
			_, err := Parse([]byte(tc.doc), lookup)
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v naming %q", err, tc.sentinel, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestConsumerOnlyFileNeedsNoSource(t *testing.T) {
	doc := "kafka:\n  brokers: [\"127.0.0.1:9092\"]\nconsumers:\n  handlers:\n    - handler: stdout\n      name: audit\n      tables: [\"shop.*\"]\n"
	if _, err := Parse([]byte(doc), env(nil)); err != nil {
		t.Fatalf("consumer-only file rejected: %v", err)
	}
	if _, err := Parse([]byte("kafka:\n  brokers: [\"127.0.0.1:9092\"]\n"), env(nil)); err == nil || !strings.Contains(err.Error(), "source.name") {
		t.Fatalf("a file with neither source nor consumers must name source.name, got %v", err)
	}
}

// TestCommentLinesAreNotExpanded: a commented-out setting needs no variable.
func TestCommentLinesAreNotExpanded(t *testing.T) {
	doc := minimal + "  # sasl:\n  #   password: ${KAFKA_PW}\n# ${ANY}\n"
	f, err := Parse([]byte(doc), env(map[string]string{"PW": "x"}))
	if err != nil {
		t.Fatalf("a variable on a comment line was expanded: %v", err)
	}
	if f.Source.Password != "x" {
		t.Errorf("password %q", f.Source.Password)
	}
	if _, err := Parse([]byte(minimal+"  client_id: ${KAFKA_PW} # ${ANY}\n"), env(map[string]string{"PW": "x"})); !errors.Is(err, ErrMissingVariable) || !strings.Contains(err.Error(), "KAFKA_PW") {
		t.Errorf("a variable of a setting must still be required: %v", err)
	}
}
