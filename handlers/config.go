package handlers

import (
	"bytes"
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/kafkaconn"
)

// Config is the `consumers:` section: how the handlers of the file are run. The
// Kafka connection and topic prefix come from the `kafka:` section.
//
//	consumers:
//	  start: earliest
//	  concurrency: 8
//	  metrics_addr: 127.0.0.1:9464
//	  handlers:
//	    - handler: stdout        # which registered handler type
//	      name: audit            # stable: metrics, dead letters, group "kanal-audit"
//	      tables: ["shop.*"]
//	      on_failure: dead-letter
//	      options: {}            # the handler type's own settings
type Config struct {
	consumer.Config `yaml:",inline"`
	// Handlers are the handlers to run, each in its own consumer group unless
	// group says otherwise.
	Handlers []Spec `yaml:"handlers"`
}

// Spec is one handler to run: an entry of consumers.handlers.
type Spec struct {
	// Handler is the handler type: a name registered in the Factories ("stdout",
	// "redis", "aggregate", "sqlmirror", "elasticsearch", "rabbitmq", "memcached"
	// in kanal itself).
	Handler string `yaml:"handler" jsonschema:"required"`
	// Name identifies this handler: metrics, logs, dead letters and the default
	// consumer group "kanal-<name>". Keep it stable.
	Name string `yaml:"name" jsonschema:"required"`
	// Tables are the "db.table" glob patterns (shop.*, shop.order_*) whose
	// changes the handler gets.
	Tables []string `yaml:"tables" jsonschema:"required"`
	// Group overrides the consumer group ("kanal-<name>").
	Group string `yaml:"group"`
	// OnFailure ("halt" or "dead-letter") overrides the section's on_failure for
	// this handler.
	OnFailure consumer.Policy `yaml:"on_failure"`
	// Retry overrides the section's retry for this handler; give every field.
	Retry *consumer.RetryConfig `yaml:"retry"`
	// Options are the handler type's own settings, decoded by its factory
	// (unknown keys are errors).
	Options yaml.Node `yaml:"options"`
}

// Default returns the section's defaults (no handlers).
func Default() Config {
	return Config{Config: consumer.DefaultConfig()}
}

var handlerNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Validate checks the section, naming the bad field; k is the file's kafka
// section (validated with it). Which handler types exist and whether their
// options are right is for the Factories (Factories.Check).
func (c *Config) Validate(k kafkaconn.Config) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: consumers.%s: %s", consumer.ErrConfig, field, fmt.Sprintf(format, args...))
	}
	cfg := c.Runner(k)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	names := map[string]bool{}
	for i, h := range c.Handlers {
		at := fmt.Sprintf("handlers[%d]", i)
		switch {
		case h.Handler == "":
			return bad(at+".handler", "required (the handler type, e.g. stdout)")
		case !handlerNameRE.MatchString(h.Name):
			return bad(at+".name", "%q must be 1-100 letters, digits, '_' or '-'", h.Name)
		case names[h.Name]:
			return bad(at+".name", "%q is used twice", h.Name)
		case len(h.Tables) == 0:
			return bad(at+".tables", "at least one db.table pattern is required")
		case h.OnFailure != "" && h.OnFailure != consumer.Halt && h.OnFailure != consumer.DeadLetter:
			return bad(at+".on_failure", "%q is not halt or dead-letter", h.OnFailure)
		}
		names[h.Name] = true
		if _, err := consumer.TopicPattern(k.TopicPrefix, h.Tables); err != nil {
			return bad(at+".tables", "%v", err)
		}
		if h.Retry != nil {
			if err := h.Retry.Validate(); err != nil {
				return fmt.Errorf("consumers.%s: %w", at, err)
			}
		}
	}
	return nil
}

// Runner returns the consumer.Config to run with: the section plus the Kafka
// connection.
func (c *Config) Runner(k kafkaconn.Config) consumer.Config {
	cfg := c.Config
	cfg.Kafka = k
	return cfg
}

// RouteOptions returns the registration options of the entry.
func (s *Spec) RouteOptions() []consumer.RouteOption {
	opts := []consumer.RouteOption{consumer.Tables(s.Tables...)}
	if s.Group != "" {
		opts = append(opts, consumer.Group(s.Group))
	}
	if s.OnFailure != "" {
		opts = append(opts, consumer.OnFailure(s.OnFailure))
	}
	if s.Retry != nil {
		opts = append(opts, consumer.WithRetry(*s.Retry))
	}
	return opts
}

// GroupName is the consumer group the handler runs in.
func (s *Spec) GroupName() string {
	if s.Group != "" {
		return s.Group
	}
	return consumer.DefaultGroup(s.Name)
}

// DecodeOptions decodes the entry's options into v (on top of what v holds),
// rejecting unknown keys.
func (s *Spec) DecodeOptions(v any) error {
	if s.Options.Kind == 0 {
		return nil
	}
	data, err := yaml.Marshal(&s.Options)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: options: %v", consumer.ErrConfig, err)
	}
	return nil
}
