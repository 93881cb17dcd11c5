// Package secret reads passwords given as files. Every password setting of kanal
// (source.password, kafka.sasl.password, a Redis instance's password, a SQL
// target's) may instead be a `password_file:` naming a file that holds it: the
// way Docker and Kubernetes hand secrets to a container (/run/secrets/…, a
// mounted Secret). Errors name the setting and the file, never the content.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrConfig matches every error of this package (errors.Is).
var ErrConfig = errors.New("invalid secret setting")

// FieldError is a bad password setting: the key as the YAML file spells it
// ("source.password_file") and what is wrong, never the password.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrConfig) true.
func (e *FieldError) Is(target error) bool { return target == ErrConfig }

// Password returns the password of a setting: value, or the content of file
// without its trailing line break (editors and `echo` add one). field is the
// password's key as the file spells it ("source.password"); the file's key is
// field + "_file". Giving both, or an empty file, is an error.
func Password(field, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", &FieldError{Field: field + "_file", Problem: fmt.Sprintf("%s is set too; give one of them", field)}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", &FieldError{Field: field + "_file", Problem: fmt.Sprintf("%s: %v", file, err)}
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", &FieldError{Field: field + "_file", Problem: file + " is empty"}
	}
	return pw, nil
}

// Check validates a password setting without reading the file, for Validate
// methods: a configuration is checked where the file may not exist (a laptop,
// a CI job); Password reads it when connecting.
func Check(field, value, file string) error {
	if file != "" && value != "" {
		return &FieldError{Field: field + "_file", Problem: fmt.Sprintf("%s is set too; give one of them", field)}
	}
	return nil
}

// Redact returns "[redacted]" for a set secret and "" for an unset one, so that a
// printed configuration still tells the two apart.
func Redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}
