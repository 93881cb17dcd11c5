package essink_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/estest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// TestTLSAndPasswordFile: an https cluster with a private CA and basic auth.
// With the CA in tls and the password in a file, documents are indexed; with
// a wrong CA the handler fails naming the cluster and the certificate problem,
// and nothing reaches it.
func TestTLSAndPasswordFile(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	fake := newESServer(t, false)
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != "kanal" || p != "es-s3cret" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		fake.Config.Handler.ServeHTTP(w, r)
	}))
	srv.TLS = certs.ServerConfig(false)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pwFile := filepath.Join(t.TempDir(), "es-password")
	if err := os.WriteFile(pwFile, []byte("es-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(srv.URL, essink.TableConfig{Match: "t.*"})
	cfg.Username, cfg.PasswordFile = "kanal", pwFile
	row := orderRow(1, "one", "2024-05-01 10:00:00")
	batch := func(h consumer.Handler) error {
		return h.Handle(context.Background(), consumer.Batch{Topic: "kanal.t.orders", Partition: 0,
			Records: []consumer.Record{rec(change("orders", orderCols, schemas.OpCreate, 1, nil, row), 0)}})
	}

	cfg.TLS = tlsconfig.Config{Enabled: true, CA: certs.WrongCA}
	bad := newHandler(t, cfg)
	for _, err := range []error{bad.Ping(context.Background()), batch(bad)} {
		if err == nil || !strings.Contains(err.Error(), "elasticsearch "+srv.URL) || !strings.Contains(err.Error(), "not trusted") ||
			!strings.Contains(err.Error(), "x509: certificate signed by unknown authority") || strings.Contains(err.Error(), "es-s3cret") {
			t.Errorf("with a wrong CA: %v", err)
		}
	}
	mu.Lock()
	if len(auths) != 0 {
		t.Errorf("with a wrong CA, %d requests reached the cluster", len(auths))
	}
	mu.Unlock()

	cfg.TLS = tlsconfig.Config{Enabled: true, CA: certs.CA}
	h := newHandler(t, cfg)
	if err := batch(h); err != nil {
		t.Fatal(err)
	}
	expectDocs(t, estest.Cluster{URL: fake.URL}, "t.orders", map[string]map[string]string{"t.orders/1": {"id": "1", "note": "one", "created": "2024-05-01 10:00:00", "secret": "s3cr3t"}})
}
