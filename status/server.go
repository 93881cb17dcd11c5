package status

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// Handler serves the status page at / (it refreshes itself every refresh)
// and the Report as JSON at /status.json. Reports are gathered at most once
// per refresh/2, however many pages are open.
func Handler(c *Collector, refresh time.Duration, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{c: c, refresh: refresh, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /status.json", s.json)
	return mux
}

type server struct {
	c       *Collector
	refresh time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	last *Report
	at   time.Time
}

func (s *server) page(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, struct{ RefreshMs int64 }{s.refresh.Milliseconds()})
}

func (s *server) json(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || time.Since(s.at) >= s.refresh/2 {
		rep, err := s.c.Collect(r.Context())
		if err != nil {
			s.log.Warn("status not gathered", "err", err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		s.last, s.at = rep, time.Now()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.last)
}
