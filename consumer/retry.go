package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryConfig is the backoff for transient handler errors.
type RetryConfig struct {
	// MaxAttempts bounds the attempts per batch, the first one included.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialInterval is the first wait; each further wait is 2x (±50% jitter) the
	// previous, up to MaxInterval.
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	// MaxElapsed stops retrying once this much time has passed since the first
	// attempt (0 = only MaxAttempts limits).
	MaxElapsed time.Duration `yaml:"max_elapsed"`
}

// DefaultRetry is the retry configuration used when a route does not set one.
func DefaultRetry() RetryConfig {
	return RetryConfig{MaxAttempts: 6, InitialInterval: 200 * time.Millisecond, MaxInterval: 10 * time.Second, MaxElapsed: time.Minute}
}

// Validate names the first bad field, relative to prefix ("retry.").
func (c RetryConfig) validate(prefix string) error {
	switch {
	case c.MaxAttempts < 1:
		return fmt.Errorf("%w: %smax_attempts: must be >= 1", ErrConfig, prefix)
	case c.InitialInterval <= 0:
		return fmt.Errorf("%w: %sinitial_interval: must be positive", ErrConfig, prefix)
	case c.MaxInterval < c.InitialInterval:
		return fmt.Errorf("%w: %smax_interval: must be >= initial_interval", ErrConfig, prefix)
	case c.MaxElapsed < 0:
		return fmt.Errorf("%w: %smax_elapsed: must not be negative", ErrConfig, prefix)
	}
	return nil
}

// Validate checks the configuration and names the first bad field.
func (c RetryConfig) Validate() error { return c.validate("retry.") }

func (c RetryConfig) backoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.InitialInterval
	b.MaxInterval = c.MaxInterval
	b.MaxElapsedTime = c.MaxElapsed
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.Reset()
	return b
}

// Retry retries Handle with exponential backoff while it fails with errors not
// marked Permanent. onRetry, when not nil, is told about each failed attempt before
// the wait. When attempts run out the error is an *ExhaustedError; a permanent error
// or a cancelled context ends the retries at once.
func Retry(cfg RetryConfig, onRetry func(b Batch, attempt int, err error, wait time.Duration)) Middleware {
	return func(h Handler) Handler {
		return Wrap(h, func(ctx context.Context, b Batch) error {
			return retry(ctx, cfg, func(attempt int) error { return h.Handle(ctx, b) },
				func(attempt int, err error, wait time.Duration) {
					if onRetry != nil {
						onRetry(b, attempt, err, wait)
					}
				})
		})
	}
}

// retry runs fn until it succeeds, fails permanently, ctx ends or the budget is
// spent.
func retry(ctx context.Context, cfg RetryConfig, fn func(attempt int) error, onRetry func(attempt int, err error, wait time.Duration)) error {
	bo := cfg.backoff()
	for attempt := 1; ; attempt++ {
		err := fn(attempt)
		if err == nil {
			return nil
		}
		if IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (after: %w)", ctx.Err(), err)
		}
		wait := bo.NextBackOff()
		if attempt >= cfg.MaxAttempts || wait == backoff.Stop {
			return &ExhaustedError{Attempts: attempt, Err: err}
		}
		if onRetry != nil {
			onRetry(attempt, err, wait)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (after: %w)", serr, err)
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
