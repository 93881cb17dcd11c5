package handlers

import (
	"bufio"
	"context"
	"fmt"
	"sync"

	"github.com/kanal-cdc/kanal/consumer"
)

// StdoutOptions are the stdout handler's options.
type StdoutOptions struct {
	// Tombstones prints {"tombstone":"<key>"} lines for tombstones too.
	Tombstones bool `yaml:"tombstones"`
}

// Stdout is the factory of the stdout handler type: it prints each change as a
// kanal JSON envelope on one line, to Env.Stdout.
func Stdout() Factory {
	return Typed[StdoutOptions]{
		Build: func(spec *Spec, o *StdoutOptions, env Env) (consumer.Handler, error) {
			return &stdoutHandler{name: spec.Name, tombstones: o.Tombstones, out: bufio.NewWriter(env.Stdout)}, nil
		},
	}
}

type stdoutHandler struct {
	name       string
	tombstones bool
	mu         sync.Mutex
	out        *bufio.Writer
}

func (h *stdoutHandler) Name() string { return h.name }

// Handle writes the batch and flushes it before returning, so that a committed
// offset always means the line was written.
func (h *stdoutHandler) Handle(_ context.Context, b consumer.Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range b.Records {
		if r.Tombstone {
			if h.tombstones {
				fmt.Fprintf(h.out, "{\"tombstone\":%q}\n", r.Key)
			}
			continue
		}
		line, err := r.Change.MarshalJSON()
		if err != nil {
			return consumer.Permanent(err)
		}
		h.out.Write(line)
		h.out.WriteByte('\n')
	}
	return h.out.Flush()
}
