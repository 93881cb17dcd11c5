package consumer

// DefaultGroupPrefix starts the consumer group a handler runs in when its route
// names none: "kanal-<handler name>". Tools that find a handler's group (offsets,
// lag) and sinks that name their connections after it use the same rule.
const DefaultGroupPrefix = "kanal-"

// DefaultGroup returns the consumer group of handler when its route names none.
func DefaultGroup(handler string) string { return DefaultGroupPrefix + handler }
