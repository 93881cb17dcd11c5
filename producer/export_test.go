package producer

// SetEmitHook installs a function called after each change is handed to Kafka, with
// the number of changes so far. Tests use it to stop at an exact point.
func SetEmitHook(p *Producer, fn func(changes uint64)) { p.emitHook = fn }
