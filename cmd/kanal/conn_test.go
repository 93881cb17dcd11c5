package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/spf13/cobra"
)

// TestConnFlags: --config gives the whole kafka section (TLS, SASL, registry
// included); --brokers and --prefix given as well replace only those values;
// without --config the flags are all there is.
func TestConnFlags(t *testing.T) {
	cfg := writeFile(t, `kafka:
  brokers: [file-broker:9092]
  topic_prefix: fromfile
  sasl: {mechanism: SCRAM-SHA-256, user: u, password: file-secret}
  schema_registry: {url: "http://registry:8081", user: r, password: reg-secret}
consumers:
  handlers:
    - {handler: stdout, name: audit, tables: ["shop.*"]}
`)
	for _, tc := range []struct {
		args    []string
		brokers []string
		prefix  string
		file    bool // TLS/SASL/registry of the file kept
	}{
		{[]string{"--config", cfg}, []string{"file-broker:9092"}, "fromfile", true},
		{[]string{"--config", cfg, "--brokers", "a:1,b:2"}, []string{"a:1", "b:2"}, "fromfile", true},
		{[]string{"--config", cfg, "--prefix", "other"}, []string{"file-broker:9092"}, "other", true},
		{[]string{"--brokers", "a:1"}, []string{"a:1"}, "kanal", false},
		{[]string{"--brokers", "a:1", "--prefix", "p"}, []string{"a:1"}, "p", false},
	} {
		var c connFlags
		cmd := &cobra.Command{}
		c.add(cmd, "")
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		k, f, err := c.resolve(cmd)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if !slices.Equal(k.Brokers, tc.brokers) || k.TopicPrefix != tc.prefix || (f != nil) != tc.file ||
			(k.SASL != nil) != tc.file || (k.SchemaRegistry != nil) != tc.file {
			t.Errorf("%v: brokers %v prefix %q sasl %v registry %v file %v", tc.args, k.Brokers, k.TopicPrefix, k.SASL, k.SchemaRegistry, f != nil)
		}
	}
	var c connFlags
	cmd := &cobra.Command{}
	c.add(cmd, "")
	var usage usageError
	if _, _, err := c.resolve(cmd); !errors.As(err, &usage) {
		t.Errorf("neither --config nor --brokers: %v, want a usage error", err)
	}
}
