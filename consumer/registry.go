package consumer

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Route is a registered handler with how it is run.
type Route struct {
	Handler Handler
	// Tables are "db.table" glob patterns (path.Match syntax: "shop.*",
	// "shop.order_*", "*.*").
	Tables []string
	// Group is the consumer group; "kanal-<name>" by default. Handlers registered
	// with the same group share one Kafka client and one set of offsets: each batch
	// goes to every handler of the group whose tables match, and an offset is
	// committed only after all of them applied it.
	Group string
	// OnFailure and Retry override the Config defaults when set.
	OnFailure Policy
	Retry     *RetryConfig
	// Middleware wraps the handler, first = outermost (inside the Runner's own
	// panic recovery and metrics).
	Middleware []Middleware
}

// RouteOption configures a Route at registration.
type RouteOption func(*Route)

// Tables sets the table patterns ("db.table" globs) a handler gets changes of.
func Tables(patterns ...string) RouteOption {
	return func(r *Route) { r.Tables = append(r.Tables, patterns...) }
}

// Group sets the consumer group (default "kanal-<handler name>").
func Group(name string) RouteOption { return func(r *Route) { r.Group = name } }

// OnFailure sets what happens when a record's retries run out.
func OnFailure(p Policy) RouteOption { return func(r *Route) { r.OnFailure = p } }

// WithRetry sets the retry backoff for transient errors.
func WithRetry(c RetryConfig) RouteOption { return func(r *Route) { r.Retry = &c } }

// Use adds middleware around the handler.
func Use(mws ...Middleware) RouteOption {
	return func(r *Route) { r.Middleware = append(r.Middleware, mws...) }
}

// Registry holds the handlers a Runner runs. Registration is explicit; nothing is
// registered behind the caller's back.
type Registry struct {
	routes []*Route
	names  map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)
)

// Register adds a handler. It fails when the name is empty, not letters, digits,
// '_' or '-', or taken; when no table pattern is given or one is malformed; when
// the group name is not usable in a topic name; or when an OffsetStore handler
// would share its group.
func (r *Registry) Register(h Handler, opts ...RouteOption) error {
	if h == nil {
		return fmt.Errorf("%w: register: nil handler", ErrConfig)
	}
	name := h.Name()
	rt := &Route{Handler: h}
	for _, o := range opts {
		o(rt)
	}
	if rt.Group == "" {
		rt.Group = DefaultGroup(name)
	}
	switch {
	case !nameRE.MatchString(name):
		return fmt.Errorf("%w: handler name %q must be 1-100 letters, digits, '_' or '-'", ErrConfig, name)
	case r.names[name]:
		return fmt.Errorf("%w: handler %q is registered twice", ErrConfig, name)
	case len(rt.Tables) == 0:
		return fmt.Errorf("%w: handler %q: no table patterns", ErrConfig, name)
	case !groupRE.MatchString(rt.Group):
		return fmt.Errorf("%w: handler %q: group %q must be 1-200 letters, digits, '.', '_' or '-'", ErrConfig, name, rt.Group)
	case rt.OnFailure != "" && !rt.OnFailure.valid():
		return fmt.Errorf("%w: handler %q: on_failure %q is not halt or dead-letter", ErrConfig, name, rt.OnFailure)
	}
	for _, p := range rt.Tables {
		if err := checkPattern(p); err != nil {
			return fmt.Errorf("%w: handler %q: %w", ErrConfig, name, err)
		}
	}
	if rt.Retry != nil {
		if err := rt.Retry.validate("retry."); err != nil {
			return fmt.Errorf("handler %q: %w", name, err)
		}
	}
	for _, other := range r.routes {
		if other.Group != rt.Group {
			continue
		}
		_, a := other.Handler.(OffsetStore)
		_, b := h.(OffsetStore)
		if a || b {
			return fmt.Errorf("%w: handlers %q and %q share group %q, but one keeps its offsets in its sink: it needs a group of its own",
				ErrConfig, other.Handler.Name(), name, rt.Group)
		}
	}
	r.names[name] = true
	r.routes = append(r.routes, rt)
	return nil
}

// Routes returns the registered routes in registration order.
func (r *Registry) Routes() []Route {
	out := make([]Route, len(r.routes))
	for i, rt := range r.routes {
		out[i] = *rt
	}
	return out
}

func checkPattern(p string) error {
	db, table, ok := strings.Cut(p, ".")
	if !ok || db == "" || table == "" || strings.Contains(table, ".") {
		return fmt.Errorf("table pattern %q must look like db.table (globs allowed: shop.*)", p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("table pattern %q: %w", p, err)
	}
	return nil
}

// TopicPattern returns a regular expression matching the topics
// "<prefix>.<db>.<table>" of the given "db.table" glob patterns. Wildcards never
// match kanal's internal topics ("<prefix>._positions", "<prefix>._dlq.…").
func TopicPattern(prefix string, patterns []string) (string, error) {
	alts := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if err := checkPattern(p); err != nil {
			return "", fmt.Errorf("%w: %w", ErrConfig, err)
		}
		db, table, _ := strings.Cut(p, ".")
		alts = append(alts, globRE(db, true)+`\.`+globRE(table, false))
	}
	re := "^" + regexp.QuoteMeta(prefix) + `\.(?:` + strings.Join(alts, "|") + ")$"
	if _, err := regexp.Compile(re); err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return re, nil
}

// globRE translates a path.Match glob over one name part to a regular expression.
// Topic names replace characters Kafka does not allow with '_', as the producer
// does, so the pattern is sanitized the same way.
func globRE(g string, first bool) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c == '*':
			if first && i == 0 {
				// Internal topics are "<prefix>._…": a leading wildcard must not
				// reach them.
				b.WriteString(`(?:[^._][^.]*)?`)
			} else {
				b.WriteString(`[^.]*`)
			}
		case c == '?':
			if first && i == 0 {
				b.WriteString(`[^._]`)
			} else {
				b.WriteString(`[^.]`)
			}
		case c == '[':
			// Character classes keep their meaning; copy up to the closing bracket.
			j := strings.IndexByte(g[i:], ']')
			if j < 0 {
				b.WriteString(regexp.QuoteMeta(g[i:]))
				return b.String()
			}
			class := g[i : i+j+1]
			if len(class) > 2 && class[1] == '^' {
				class = "[^" + class[2:]
			}
			b.WriteString(class)
			i += j
		case c == '\\' && i+1 < len(g):
			i++
			b.WriteString(regexp.QuoteMeta(sanitize(g[i : i+1])))
		default:
			b.WriteString(regexp.QuoteMeta(sanitize(string(c))))
		}
	}
	return b.String()
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
