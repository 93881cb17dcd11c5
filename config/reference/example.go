package reference

import _ "embed"

//go:embed example.yaml
var example []byte

// Example returns a complete commented configuration file: every setting of
// the file and of each built-in handler type, with its default or a sample
// value (examples/kanal.yaml is a copy, kept equal by a test).
func Example() []byte { return append([]byte(nil), example...) }
