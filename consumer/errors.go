package consumer

import (
	"errors"
	"fmt"
)

// ErrConfig is wrapped by every configuration and registration error.
var ErrConfig = errors.New("consumer: invalid configuration")

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: retrying cannot help (bad data, a value the
// sink cannot store). The failing record goes to the dead-letter topic at once.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err or any error it wraps was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ExhaustedError is returned by Retry when every attempt failed.
type ExhaustedError struct {
	Attempts int
	Err      error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("failed after %d attempts: %v", e.Attempts, e.Err)
}

func (e *ExhaustedError) Unwrap() error { return e.Err }

// attemptsOf returns how many attempts an error from Retry took.
func attemptsOf(err error) int {
	var ex *ExhaustedError
	if errors.As(err, &ex) {
		return ex.Attempts
	}
	return 1
}
