// Package config reads kanal's YAML configuration file. Secrets stay out of the file:
// `${NAME}` (or `${NAME:-default}`) is replaced by a value the caller looks up, which
// cmd/kanal does in the process environment.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/handlers"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/secret"
)

// LogConfig selects the log output.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// File is the whole configuration file.
type File struct {
	producer.Config `yaml:",inline"`
	Log             LogConfig `yaml:"log"`
	// Consumers configures `kanal consume`: the handlers to run and how.
	Consumers handlers.Config `yaml:"consumers"`
}

// Default returns a File with every default filled in.
func Default() File {
	return File{Config: producer.DefaultConfig(), Log: LogConfig{Level: "info", Format: "text"}, Consumers: handlers.Default()}
}

// ErrMissingVariable is wrapped when the file refers to a variable that is not set.
var ErrMissingVariable = errors.New("config refers to unset variables")

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// commentLineRE matches lines holding only a comment: variables there are
// left alone, so a commented-out setting needs no value.
var commentLineRE = regexp.MustCompile(`^[ \t]*#`)

// Expand replaces ${NAME} and ${NAME:-default} in data using lookup, except on
// comment lines. Every missing variable is named in the error; values never are.
func Expand(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	missing := map[string]bool{}
	expand := func(line []byte) []byte {
		if commentLineRE.Match(line) {
			return line
		}
		return varRE.ReplaceAllFunc(line, func(m []byte) []byte {
			sub := varRE.FindSubmatch(m)
			name := string(sub[1])
			if v, ok := lookup(name); ok {
				return []byte(yamlScalar(v))
			}
			if sub[2] != nil {
				return []byte(yamlScalar(string(sub[3])))
			}
			missing[name] = true
			return nil
		})
	}
	var out []byte
	for line := range bytes.Lines(data) {
		out = append(out, expand(line)...)
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: %s", ErrMissingVariable, strings.Join(names, ", "))
	}
	return out, nil
}

// yamlScalar keeps a substituted value a plain string even when it contains YAML
// syntax (a password like `a: #b` must not change the document's structure).
func yamlScalar(v string) string {
	if v == "" {
		return `""`
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return v
	}
	s := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(s, "\n") {
		// Multi-line values: a double-quoted scalar stays on one line.
		return fmt.Sprintf("%q", v)
	}
	return s
}

// Parse expands variables, decodes the YAML on top of the defaults (unknown keys are
// errors, so a typo never silently falls back to a default) and validates the result.
func Parse(data []byte, lookup func(string) (string, bool)) (*File, error) {
	expanded, err := Expand(data, lookup)
	if err != nil {
		return nil, err
	}
	f := Default()
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", producer.ErrConfig, err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// CheckFiles reads the files the source and kafka sections name (TLS
// certificates and keys, password files), which Validate leaves alone so that a
// file can be checked where they do not exist, and names the first that cannot
// be used. Handlers read the files of their options when they are built.
func (f *File) CheckFiles() error {
	var errs []error
	if s := f.Source; s.Addr != "" {
		if _, err := secret.Password("source.password", s.Password, s.PasswordFile); err != nil {
			errs = append(errs, err)
		}
		if _, err := s.TLS.Client("source.tls"); err != nil {
			errs = append(errs, err)
		}
	}
	if s := f.Kafka.SASL; s != nil {
		if _, err := secret.Password("kafka.sasl.password", s.Password, s.PasswordFile); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := f.Kafka.TLS.Client("kafka.tls"); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", producer.ErrConfig, err)
	}
	return nil
}

// Validate checks the whole file, naming the bad field.
func (f *File) Validate() error {
	// A file for consumers only needs no source section; `kanal produce` still
	// refuses a missing source (producer.New validates it).
	s := f.Source
	hasSource := s.Name != "" || s.Addr != "" || s.User != "" || s.Password != "" || s.PasswordFile != ""
	if hasSource || len(f.Consumers.Handlers) == 0 {
		if err := f.Config.Validate(); err != nil {
			return err
		}
	} else {
		if err := f.Kafka.Validate(); err != nil {
			return err
		}
		if err := f.Tables.Validate(); err != nil {
			return err
		}
	}
	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("%w: log.level: %q is not debug, info, warn or error", producer.ErrConfig, f.Log.Level)
	}
	if f.Log.Format != "text" && f.Log.Format != "json" {
		return fmt.Errorf("%w: log.format: %q is not text or json", producer.ErrConfig, f.Log.Format)
	}
	return f.Consumers.Validate(f.Kafka.Config)
}
