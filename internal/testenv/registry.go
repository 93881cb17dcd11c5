package testenv

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hamba/avro/v2"
)

// RegistryServer is an in-test schema registry: the part of the Confluent
// Schema Registry REST API kanal uses, as Confluent documents it —
//
//	POST /subjects/{subject}/versions   {"schema": "…", "schemaType": "AVRO"} → {"id": n}
//	GET  /schemas/ids/{id}              → {"schema": "…"}
//	PUT  /config/{subject}              {"compatibility": "NONE"} → {"compatibility": "NONE"}
//	GET  /config                        → {"compatibilityLevel": "BACKWARD"} (the global level)
//
// with HTTP basic auth, Confluent's error bodies ({"error_code": 40403, …}),
// ids shared by equal schemas across subjects, and the compatibility check of
// the subject's level (BACKWARD by default, as Confluent's), done with
// hamba/avro's Avro resolution rules: an incompatible schema gets 409. No real
// registry runs here; docs/formats.md says how to run the same test against one.
type RegistryServer struct {
	URL            string
	User, Password string
	// Down, while set, answers every request 503 (a registry that is down).
	Down atomic.Bool
	// Requests counts the requests answered (also those answered 503).
	Requests atomic.Int64

	mu       sync.Mutex
	ids      map[string]int // schema text → id
	schemas  []string       // by id-1
	subjects map[string][]int
	compat   map[string]string
}

// RegistryOption configures a RegistryServer.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	tls            *tls.Config
	user, password string
}

// WithRegistryTLS serves https:// with the certificate of certs (no client
// certificate required).
func WithRegistryTLS(certs *TLSCerts) RegistryOption {
	return func(c *registryConfig) { c.tls = certs.ServerConfig(false) }
}

// WithRegistryUser sets the basic-auth credentials the registry requires.
func WithRegistryUser(user, password string) RegistryOption {
	return func(c *registryConfig) { c.user, c.password = user, password }
}

// SchemaRegistry starts a RegistryServer on a random 127.0.0.1 port, requiring
// basic auth (by default as user "kanal" with a generated password); it stops
// when the test ends.
func SchemaRegistry(t T, opts ...RegistryOption) *RegistryServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: schema registry listen: %v", err)
	}
	c := registryConfig{user: "kanal", password: fmt.Sprintf("pw-%d", ln.Addr().(*net.TCPAddr).Port)}
	for _, o := range opts {
		o(&c)
	}
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
		ln = tls.NewListener(ln, c.tls)
	}
	r := &RegistryServer{URL: scheme + ln.Addr().String(), User: c.user, Password: c.password,
		ids: map[string]int{}, subjects: map[string][]int{}, compat: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subjects/{subject}/versions", r.register)
	mux.HandleFunc("GET /schemas/ids/{id}", r.byID)
	mux.HandleFunc("PUT /config/{subject}", r.setConfig)
	mux.HandleFunc("GET /config", r.globalConfig)
	// The server's own log of failed TLS handshakes (a client with a wrong
	// CA) is noise in a test that provokes them.
	srv := &http.Server{Handler: r.guard(mux), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// Subjects returns each subject's schema ids in registration order.
func (r *RegistryServer) Subjects() map[string][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]int{}
	for s, ids := range r.subjects {
		out[s] = append([]int(nil), ids...)
	}
	return out
}

// Schema returns the schema with the given id.
func (r *RegistryServer) Schema(id int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.schemas[id-1]
}

func (r *RegistryServer) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Requests.Add(1)
		if r.Down.Load() {
			regError(w, http.StatusServiceUnavailable, 50003, "registry is down")
			return
		}
		if u, p, ok := req.BasicAuth(); !ok || u != r.User || p != r.Password {
			regError(w, http.StatusUnauthorized, 401, "Unauthorized")
			return
		}
		next.ServeHTTP(w, req)
	})
}

func regError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

func regJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(v)
}

func (r *RegistryServer) register(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		regError(w, http.StatusBadRequest, 400, err.Error())
		return
	}
	if body.SchemaType != "" && body.SchemaType != "AVRO" {
		regError(w, http.StatusUnprocessableEntity, 42201, "only AVRO schemas here")
		return
	}
	schema, err := avro.ParseWithCache(body.Schema, "", &avro.SchemaCache{})
	if err != nil {
		regError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	subject := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	id, known := r.ids[body.Schema]
	versions := r.subjects[subject]
	for _, v := range versions {
		if v == id && known {
			regJSON(w, map[string]int{"id": id})
			return
		}
	}
	level := r.compat[subject]
	if level == "" {
		level = "BACKWARD"
	}
	if level != "NONE" && len(versions) > 0 {
		check := versions[len(versions)-1:]
		if level == "BACKWARD_TRANSITIVE" || level == "FULL_TRANSITIVE" || level == "FORWARD_TRANSITIVE" {
			check = versions
		}
		for _, v := range check {
			old, _ := avro.ParseWithCache(r.schemas[v-1], "", &avro.SchemaCache{})
			var err error
			switch level {
			case "BACKWARD", "BACKWARD_TRANSITIVE":
				err = avro.NewSchemaCompatibility().Compatible(schema, old)
			case "FORWARD", "FORWARD_TRANSITIVE":
				err = avro.NewSchemaCompatibility().Compatible(old, schema)
			default:
				if err = avro.NewSchemaCompatibility().Compatible(schema, old); err == nil {
					err = avro.NewSchemaCompatibility().Compatible(old, schema)
				}
			}
			if err != nil {
				regError(w, http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject \""+subject+"\": "+err.Error())
				return
			}
		}
	}
	if !known {
		r.schemas = append(r.schemas, body.Schema)
		id = len(r.schemas)
		r.ids[body.Schema] = id
	}
	r.subjects[subject] = append(versions, id)
	regJSON(w, map[string]int{"id": id})
}

func (r *RegistryServer) byID(w http.ResponseWriter, req *http.Request) {
	id, err := strconv.Atoi(req.PathValue("id"))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || id < 1 || id > len(r.schemas) {
		regError(w, http.StatusNotFound, 40403, "Schema "+req.PathValue("id")+" not found")
		return
	}
	regJSON(w, map[string]string{"schema": r.schemas[id-1]})
}

func (r *RegistryServer) globalConfig(w http.ResponseWriter, _ *http.Request) {
	regJSON(w, map[string]string{"compatibilityLevel": "BACKWARD"})
}

func (r *RegistryServer) setConfig(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		regError(w, http.StatusUnprocessableEntity, 42203, err.Error())
		return
	}
	switch body.Compatibility {
	case "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE":
	default:
		regError(w, http.StatusUnprocessableEntity, 42203, "Invalid compatibility level")
		return
	}
	r.mu.Lock()
	r.compat[req.PathValue("subject")] = body.Compatibility
	r.mu.Unlock()
	regJSON(w, body)
}
