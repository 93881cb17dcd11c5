package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/handlers"
)

// fragmentMarker, on the line right before a ```yaml fence, marks a block that is
// deliberately not a whole configuration file (a list entry, one option). It is
// an HTML comment, so it does not show where the Markdown is rendered.
const fragmentMarker = "<!-- fragment -->"

// yamlBlock is one ```yaml (or ```yml) block of a Markdown file.
type yamlBlock struct {
	file     string
	line     int // of the opening fence
	body     []byte
	fragment bool
}

// yamlBlocks returns the YAML blocks of a Markdown document.
func yamlBlocks(file string, doc []byte) []yamlBlock {
	var out []yamlBlock
	lines := strings.Split(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		lang, isFence := strings.CutPrefix(fence, "```")
		if !isFence {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
			body = append(body, lines[i])
		}
		if lang != "yaml" && lang != "yml" {
			continue
		}
		b := yamlBlock{file: file, line: start + 1, body: []byte(strings.Join(body, "\n") + "\n")}
		b.fragment = start > 0 && strings.TrimSpace(lines[start-1]) == fragmentMarker
		out = append(out, b)
	}
	return out
}

// anyVariable gives every ${NAME} a value: documentation keeps secrets in the
// environment, and what matters here is the rest of the file. A variable named
// *_DSN holds a Postgres URL, so that the handler options using it parse.
func anyVariable(name string) (string, bool) {
	if strings.HasSuffix(name, "_DSN") {
		return "postgres://kanal:secret@127.0.0.1:5432/kanal", true
	}
	return "doc-" + strings.ToLower(name), true
}

// checkFile loads a configuration as `kanal config check` does: the file through
// config.Parse (variables, defaults, every field) and each handler's options
// through the built-in factories.
func checkFile(data []byte) error {
	f, err := config.Parse(data, anyVariable)
	if err != nil {
		return err
	}
	return handlers.Builtin().Check(&f.Consumers)
}

// TestDocsYAMLExamplesLoad: every YAML example in README.md and docs/*.md is a
// configuration file kanal accepts, unless it is marked a fragment (then it must
// still be valid YAML). The generated example file is checked the same way.
func TestDocsYAMLExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../README.md"}, files...)
	checked, fragments := 0, 0
	for _, file := range files {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range yamlBlocks(strings.TrimPrefix(file, "../"), doc) {
			if b.fragment {
				var v any
				if err := yaml.NewDecoder(bytes.NewReader(b.body)).Decode(&v); err != nil {
					t.Errorf("%s:%d: fragment is not valid YAML: %v", b.file, b.line, err)
				}
				fragments++
				continue
			}
			if err := checkFile(b.body); err != nil {
				t.Errorf("%s:%d: example is rejected by kanal's config loader (fix it, or mark a deliberate fragment with %s on the line before the fence): %v",
					b.file, b.line, fragmentMarker, err)
			}
			checked++
		}
	}
	example, err := os.ReadFile("../examples/kanal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkFile(example); err != nil {
		t.Errorf("examples/kanal.yaml: %v", err)
	}
	if checked == 0 {
		t.Fatal("no YAML examples found: the extraction is broken")
	}
	t.Logf("%d YAML examples load, %d fragments are valid YAML", checked, fragments)
}

// TestYAMLBlocksExtraction pins the extraction rules the docs test relies on.
func TestYAMLBlocksExtraction(t *testing.T) {
	doc := "text\n```yaml\na: 1\n```\n" + fragmentMarker + "\n```yml\n- b\n```\n```sh\nc: 2\n```\n"
	got := yamlBlocks("x.md", []byte(doc))
	if len(got) != 2 || string(got[0].body) != "a: 1\n" || got[0].fragment || got[0].line != 2 ||
		string(got[1].body) != "- b\n" || !got[1].fragment {
		t.Fatalf("got %+v", got)
	}
}
