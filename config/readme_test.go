package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigParses keeps the README's configuration reference true: the
// example file there must parse and validate.
func TestREADMEConfigParses(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	if !ok {
		t.Fatal("README has no yaml block")
	}
	doc, _, _ := strings.Cut(rest, "```")
	f, err := Parse([]byte(doc), func(string) (string, bool) { return "x", true })
	if err != nil {
		t.Fatalf("README example config: %v", err)
	}
	if len(f.Consumers.Handlers) != 2 || f.Source.Name != "shop" {
		t.Errorf("README example parsed to %+v", f)
	}
}
