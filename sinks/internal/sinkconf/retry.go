package sinkconf

import (
	"context"
	"time"
)

// RetryConfig is the in-handler backoff: waits double from InitialInterval up
// to MaxInterval.
type RetryConfig struct {
	// MaxAttempts bounds the tries, the first included.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialInterval is the wait before the second try.
	InitialInterval time.Duration `yaml:"initial_interval"`
	// MaxInterval caps the doubling waits.
	MaxInterval time.Duration `yaml:"max_interval"`
}

// Validate checks the settings at field ("retry").
func (r *RetryConfig) Validate(field string) error {
	switch {
	case r.MaxAttempts < 1:
		return fieldError(field+".max_attempts", "must be >= 1")
	case r.InitialInterval <= 0:
		return fieldError(field+".initial_interval", "must be positive")
	case r.MaxInterval < r.InitialInterval:
		return fieldError(field+".max_interval", "must be >= initial_interval")
	}
	return nil
}

// Backoff returns the waits of one retry loop, starting at InitialInterval.
// The caller counts the attempts: loops differ in what they retry and how many
// tries they allow.
func (r *RetryConfig) Backoff() *Backoff {
	return &Backoff{next: r.InitialInterval, max: r.MaxInterval}
}

// Backoff is the wait between the tries of one retry loop.
type Backoff struct {
	next, max time.Duration
}

// Next returns the wait the next Sleep takes.
func (b *Backoff) Next() time.Duration { return b.next }

// Sleep waits Next(), or until ctx ends (then it returns ctx's error), and
// doubles the wait after it, up to MaxInterval.
func (b *Backoff) Sleep(ctx context.Context) error {
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	b.next = min(2*b.next, b.max)
	return nil
}
