package handlers

import (
	"fmt"

	"github.com/kanal-cdc/kanal/consumer"
)

// BuildNamed makes the handler of c named name (for tools that work on one
// handler's target, such as kanal verify) and returns it with its entry. The
// caller closes it (io.Closer or Close()).
func (r *Factories) BuildNamed(c *Config, name string, env Env) (consumer.Handler, *Spec, error) {
	env = env.withDefaults()
	for i := range c.Handlers {
		if spec := &c.Handlers[i]; spec.Name == name {
			h, err := r.build(i, spec, env)
			return h, spec, err
		}
	}
	names := make([]string, len(c.Handlers))
	for i := range c.Handlers {
		names[i] = c.Handlers[i].Name
	}
	return nil, nil, fmt.Errorf("%w: no handler named %q in consumers.handlers (there are %v)", consumer.ErrConfig, name, names)
}

// Close closes a handler made by the factories when it holds connections
// (io.Closer or Close()).
func Close(h consumer.Handler) error { return closeAll([]consumer.Handler{h}) }
