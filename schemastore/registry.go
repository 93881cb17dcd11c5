// Package schemastore is where the writer schemas of kanal's Avro records live:
// the compacted "<prefix>._schemas" topic (format avro) and a
// Confluent-compatible schema registry (format avro-confluent). The producer
// registers schemas through Registry; consumers look them up through Resolver,
// which implements schemas.SchemaResolver.
package schemastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// Registry talks to a Confluent-compatible schema registry through franz-go's
// sr client. Registrations and lookups are cached; it is safe for concurrent
// use.
type Registry struct {
	cl  *sr.Client
	cfg kafkaconn.SchemaRegistryConfig
	log *slog.Logger
	// RetryFor bounds how long Register and SchemaByID retry a registry that
	// does not answer (or answers 5xx) before giving up with a transient error.
	RetryFor time.Duration

	mu        sync.Mutex
	ids       map[string]int // subject + "\x00" + schema → id
	byID      map[int]string
	compatSet map[string]bool
}

// NewRegistry returns a client of the registry cfg describes. It connects to
// nothing yet.
func NewRegistry(cfg *kafkaconn.SchemaRegistryConfig, log *slog.Logger) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = kafkaconn.DefaultRegistryTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: timeout}).DialContext
	if u, err := url.Parse(cfg.URL); err == nil {
		t := cfg.TLS
		t.Enabled = t.Enabled || u.Scheme == "https" // https verifies with the system's roots by default
		tlsconfig.WarnPlaintext(log, "schema registry", u.Host, "kafka.schema_registry.url (https://) and tls", &t)
	}
	tc, err := cfg.TLS.Client("kafka.schema_registry.tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", kafkaconn.ErrConfig, err)
	}
	if tc != nil {
		tr.TLSClientConfig = tc
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URL), sr.HTTPClient(&http.Client{Transport: tr, Timeout: timeout}), sr.UserAgent("kanal")}
	if cfg.User != "" {
		pw, err := secret.Password("kafka.schema_registry.password", cfg.Password, cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", kafkaconn.ErrConfig, err)
		}
		opts = append(opts, sr.BasicAuth(cfg.User, pw))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return &Registry{cl: cl, cfg: *cfg, log: log, RetryFor: 30 * time.Second,
		ids: map[string]int{}, byID: map[int]string{}, compatSet: map[string]bool{}}, nil
}

// Check asks the registry for its global compatibility level (GET /config),
// once and without retrying: a request that needs the connection, TLS and the
// credentials to work, and changes nothing. The error says what failed; a
// refused login names the settings to fix.
func (r *Registry) Check(ctx context.Context) error {
	err := r.explain(r.cl.Compatibility(ctx)[0].Err)
	var re *sr.ResponseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden):
		return fmt.Errorf("GET /config answered %d: %w (check kafka.schema_registry.user and password)", re.StatusCode, err)
	case errors.As(err, &re):
		return fmt.Errorf("GET /config answered %d: %w", re.StatusCode, err)
	}
	return fmt.Errorf("GET /config: %w", err)
}

// explain gives a TLS failure the hint the other connections give: which
// settings to check. A certificate that is not trusted stays so on retry.
func (r *Registry) explain(err error) error {
	return tlsconfig.Explain("schema registry "+r.cfg.URL, "kafka.schema_registry.tls", err)
}

// permanentStatus reports registry answers that a retry cannot change: the
// schema is refused (409 incompatible, 422 invalid), or kanal may not do this
// (401, 403).
func permanentStatus(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch re.StatusCode {
	case http.StatusConflict, http.StatusUnprocessableEntity, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// retry runs fn with exponential backoff until it succeeds, fails permanently
// (stop reports so), RetryFor passes or ctx ends.
func (r *Registry) retry(ctx context.Context, what string, stop func(error) bool, fn func(context.Context) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = r.RetryFor
	attempt := 0
	return backoff.RetryNotify(func() error {
		attempt++
		err := r.explain(fn(ctx))
		if err != nil && (stop(err) || tlsconfig.VerifyFailed(err) || ctx.Err() != nil) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(bo, ctx), func(err error, wait time.Duration) {
		r.log.Warn("schema registry request failed; retrying", "request", what, "attempt", attempt,
			"retry_in", wait.Round(time.Millisecond), "err", err)
	})
}

// Register registers schema (Avro JSON) under subject and returns its id
// (schemas.SchemaRegistry). When Compatibility is configured it is set on the
// subject first. A refused schema is an error wrapping
// schemas.ErrSchemaRejected that names the subject and the registry's reason.
func (r *Registry) Register(ctx context.Context, subject, schema string) (int, error) {
	key := subject + "\x00" + schema
	r.mu.Lock()
	id, ok := r.ids[key]
	setCompat := r.cfg.Compatibility != "" && !r.compatSet[subject]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	if setCompat {
		var level sr.CompatibilityLevel
		if err := level.UnmarshalText([]byte(r.cfg.Compatibility)); err != nil {
			return 0, fmt.Errorf("kafka.schema_registry.compatibility: %w", err)
		}
		err := r.retry(ctx, "set compatibility of "+subject, permanentStatus, func(ctx context.Context) error {
			res := r.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: level}, subject)
			return res[0].Err
		})
		if err != nil {
			return 0, r.classify(fmt.Errorf("set compatibility %s on subject %s: %w", r.cfg.Compatibility, subject, err), err)
		}
		r.mu.Lock()
		r.compatSet[subject] = true
		r.mu.Unlock()
	}
	err := r.retry(ctx, "register under "+subject, permanentStatus, func(ctx context.Context) error {
		var err error
		id, err = r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
		return err
	})
	if err != nil {
		return 0, r.classify(fmt.Errorf("register schema under subject %s at %s: %w", subject, r.cfg.URL, err), err)
	}
	r.mu.Lock()
	r.ids[key] = id
	r.byID[id] = schema
	r.mu.Unlock()
	r.log.Info("schema registered", "subject", subject, "id", id)
	return id, nil
}

// classify marks refusals with schemas.ErrSchemaRejected, with advice for the
// commonest one.
func (r *Registry) classify(wrapped, cause error) error {
	var re *sr.ResponseError
	if errors.As(cause, &re) && re.StatusCode == http.StatusConflict {
		return fmt.Errorf("%w: %w (the new table version is not compatible with the subject's compatibility level: "+
			"set kafka.schema_registry.compatibility, or the subject's level in the registry, to one that allows it, e.g. NONE)",
			schemas.ErrSchemaRejected, wrapped)
	}
	if permanentStatus(cause) {
		return fmt.Errorf("%w: %w", schemas.ErrSchemaRejected, wrapped)
	}
	return wrapped
}

// SchemaByID returns the schema with this id (schemas.SchemaResolver, format
// avro-confluent). An id the registry does not know is an error wrapping
// schemas.ErrSchemaNotFound; a registry that cannot be reached, one wrapping
// schemas.ErrSchemaUnavailable.
func (r *Registry) SchemaByID(ctx context.Context, id int) (string, error) {
	r.mu.Lock()
	s, ok := r.byID[id]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	stop := func(err error) bool { return notFound(err) || permanentStatus(err) }
	err := r.retry(ctx, fmt.Sprintf("schema id %d", id), stop, func(ctx context.Context) error {
		sc, err := r.cl.SchemaByID(ctx, id)
		s = sc.Schema
		return err
	})
	switch {
	case notFound(err):
		return "", fmt.Errorf("%w: the registry at %s has no schema with id %d: %v", schemas.ErrSchemaNotFound, r.cfg.URL, id, err)
	case err != nil:
		return "", fmt.Errorf("%w: schema id %d from %s: %w", schemas.ErrSchemaUnavailable, id, r.cfg.URL, err)
	}
	r.mu.Lock()
	r.byID[id] = s
	r.mu.Unlock()
	return s, nil
}
