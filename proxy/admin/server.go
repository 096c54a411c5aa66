package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// Options configures New. Every field is optional.
type Options struct {
	Logger  zerolog.Logger
	DB      *index.DB
	Records *index.Records
	// Ready reports readiness for GET /readyz (nil: ready once New
	// returned). It should be cheap: load balancers poll it.
	Ready func(ctx context.Context) error
}

// Server is the admin listener's handler (default 127.0.0.1:5001): GET
// /healthz (process alive), GET /readyz (dependencies ready), GET
// /v1/images (JSON listing of image records), and whatever other admin
// components mount with Handle.
type Server struct {
	mux  *http.ServeMux
	o    Options
	log  zerolog.Logger
	auth *Auth // set by Protect: guards the base routes other than /healthz and /readyz
}

// Protect puts the base routes other than /healthz and /readyz (today
// /v1/images) behind a. Call before serving. Routes mounted with Handle
// are wrapped by whoever mounts them (a.Wrap).
func (s *Server) Protect(a *Auth) { s.auth = a }

// New returns the admin server with its base routes.
func New(o Options) *Server {
	s := &Server{mux: http.NewServeMux(), o: o, log: o.Logger.With().Str("op", "admin").Logger()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /v1/images", s.images)
	return s
}

// Handle mounts h at pattern (http.ServeMux syntax, e.g. "POST /" or
// "GET /metrics"). Call before serving.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeServerJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.o.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.o.Ready(ctx); err != nil {
			writeServerJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	writeServerJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// ImagesPage is the GET /v1/images answer.
type ImagesPage struct {
	Images []index.ImageRecord `json:"images"`
	// NextToken is passed as ?nextToken= for the next page; empty at the end.
	NextToken string `json:"nextToken,omitempty"`
}

// images serves GET /v1/images?repository=&maxResults=&nextToken=:
// image records in digest order (maxResults default 100, at most 1000).
func (s *Server) images(w http.ResponseWriter, r *http.Request) {
	if s.auth != nil && s.auth.Check(r) != nil {
		WriteUnauthorized(w)
		return
	}
	if s.o.Records == nil {
		writeServerJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "image records are not available"})
		return
	}
	q := r.URL.Query()
	lim := 100
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"error": "maxResults must be 1..1000"})
			return
		}
		lim = n
	}
	recs, next, err := s.o.Records.List(r.Context(), index.ListOptions{
		Repository: q.Get("repository"), After: digest.Digest(q.Get("nextToken")), Limit: lim,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error().Err(err).Msg("list images")
		writeServerJSON(w, http.StatusInternalServerError, map[string]string{"error": "listing images failed"})
		return
	}
	if recs == nil {
		recs = []index.ImageRecord{}
	}
	writeServerJSON(w, http.StatusOK, ImagesPage{Images: recs, NextToken: next.String()})
}

func writeServerJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
