// Package sinkconf holds the configuration blocks the built-in sinks share, each
// with its validation and its compiled form: the handler name, table rules
// (a "db.table" glob per rule, the first match wins), column selection and
// renaming, templates such as "{db}.{table}:{pk}", and the in-handler retry
// backoff.
//
// Validation errors name the bad setting by the field path the caller passes
// ("tables[2].columns.rename.note: …"), without the sink's own error sentinel:
// the sink wraps them with it. Keeping these blocks in one place keeps their
// YAML keys, messages and behaviour the same in every sink.
package sinkconf

import "fmt"

// fieldError is a validation error naming the setting at field.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}
