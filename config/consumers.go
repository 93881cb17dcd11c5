package config

import (
	"bytes"
	"fmt"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/producer"
)

// ConsumersConfig is the `consumers:` section: how `kanal consume` runs built-in
// handlers. The Kafka connection and topic prefix come from the `kafka:` section.
//
//	consumers:
//	  start: earliest
//	  concurrency: 8
//	  metrics_addr: 127.0.0.1:9464
//	  handlers:
//	    - handler: stdout        # which built-in handler
//	      name: audit            # stable: metrics, dead letters, group "kanal-audit"
//	      tables: ["shop.*"]
//	      on_failure: dead-letter
//	      options: {}            # handler-specific
type ConsumersConfig struct {
	consumer.Config `yaml:",inline"`
	Handlers        []HandlerConfig `yaml:"handlers"`
}

// HandlerConfig is one built-in handler to run.
type HandlerConfig struct {
	// Handler is the built-in handler type ("stdout", and more as they arrive).
	Handler string `yaml:"handler"`
	// Name identifies this instance (metrics, dead letters, default group).
	Name string `yaml:"name"`
	// Tables are "db.table" glob patterns.
	Tables []string `yaml:"tables"`
	// Group overrides the consumer group ("kanal-<name>").
	Group string `yaml:"group"`
	// OnFailure ("halt" or "dead-letter") and Retry override the section defaults.
	OnFailure consumer.Policy       `yaml:"on_failure"`
	Retry     *consumer.RetryConfig `yaml:"retry"`
	// Options are the handler type's own settings; the handler decodes them.
	Options yaml.Node `yaml:"options"`
}

// DefaultConsumers returns the section's defaults (no handlers).
func DefaultConsumers() ConsumersConfig {
	return ConsumersConfig{Config: consumer.DefaultConfig()}
}

var handlerNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Validate checks the section, naming the bad field. The Kafka section is the
// producer's, validated there.
func (c *ConsumersConfig) Validate(k producer.KafkaConfig) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: consumers.%s: %s", producer.ErrConfig, field, fmt.Sprintf(format, args...))
	}
	cfg := c.Config
	cfg.Kafka = k.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	names := map[string]bool{}
	for i, h := range c.Handlers {
		at := fmt.Sprintf("handlers[%d]", i)
		switch {
		case h.Handler == "":
			return bad(at+".handler", "required (the built-in handler type, e.g. stdout)")
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
func (c *ConsumersConfig) Runner(k producer.KafkaConfig) consumer.Config {
	cfg := c.Config
	cfg.Kafka = k.Config
	return cfg
}

// RouteOptions returns the registration options of a handler entry.
func (h *HandlerConfig) RouteOptions() []consumer.RouteOption {
	opts := []consumer.RouteOption{consumer.Tables(h.Tables...)}
	if h.Group != "" {
		opts = append(opts, consumer.Group(h.Group))
	}
	if h.OnFailure != "" {
		opts = append(opts, consumer.OnFailure(h.OnFailure))
	}
	if h.Retry != nil {
		opts = append(opts, consumer.WithRetry(*h.Retry))
	}
	return opts
}

// GroupName is the consumer group the handler runs in.
func (h *HandlerConfig) GroupName() string {
	if h.Group != "" {
		return h.Group
	}
	return "kanal-" + h.Name
}

// DecodeOptions decodes the handler's options into v, rejecting unknown keys.
func (h *HandlerConfig) DecodeOptions(v any) error {
	if h.Options.Kind == 0 {
		return nil
	}
	data, err := yaml.Marshal(&h.Options)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: consumers handler %s: options: %v", producer.ErrConfig, h.Name, err)
	}
	return nil
}
