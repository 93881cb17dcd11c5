// Package handlers runs handlers from the `consumers:` section of kanal's
// configuration file: it holds the section's types, an explicit registry of
// named handler factories (Builtin returns kanal's own: stdout, redis,
// aggregate, sqlmirror) and NewRunner, which builds the consumer.Runner that
// `kanal consume` runs.
//
// A binary of your own that needs one more handler type registers its factory
// next to the built-ins and runs the same file:
//
//	reg := handlers.Builtin()
//	reg.Add("rowcache", handlers.Typed[cacheOptions]{Build: newRowCache})
//	r, err := handlers.NewRunner(f.Consumers, f.Kafka.Config, reg, handlers.Env{Log: log})
//	...
//	err = r.Run(ctx)
//
// (examples/custom-handler is that program, with its test.) Nothing registers
// itself: a factory is there because a caller added it.
package handlers
