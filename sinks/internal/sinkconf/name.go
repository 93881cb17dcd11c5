package sinkconf

import "regexp"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// CheckName checks a handler name: it becomes part of metric labels, log
// fields, dead-letter headers and the consumer group "kanal-<name>", so it is
// kept to 1-100 letters, digits, '_' or '-'.
func CheckName(field, name string) error {
	if !nameRE.MatchString(name) {
		return fieldError(field, "%q must be 1-100 letters, digits, '_' or '-'", name)
	}
	return nil
}
