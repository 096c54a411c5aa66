package proxy

import (
	"io"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// AccessLog wraps next with one zerolog line per request: method, path,
// repo, digest (when the reference is one), status, bytes (response body
// bytes written), in (request body bytes read) and duration_ms.
func AccessLog(log zerolog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		var cr *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			cr = &countingBody{ReadCloser: r.Body}
			r.Body = cr
		}
		// Logged in a defer so that a request the proxy aborts
		// (http.ErrAbortHandler: the upstream broke off mid-body) still gets
		// its line; the panic then goes on to net/http.
		defer func() {
			aborted := recover()
			logAccess(log, w, r, sw, cr, start, aborted != nil)
			if aborted != nil {
				panic(aborted)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// logAccess writes one access line for r.
func logAccess(log zerolog.Logger, w http.ResponseWriter, r *http.Request, sw *statusWriter, cr *countingBody, start time.Time, aborted bool) {
	rt := parseRoute(r.URL.Path)
	ev := log.Info()
	if sw.status >= 500 || aborted {
		ev = log.Warn()
	}
	if aborted {
		ev = ev.Bool("aborted", true)
	}
	ev = ev.Str("op", "access").Str("method", r.Method).Str("path", r.URL.Path).
		Int("status", sw.statusCode()).Int64("bytes", sw.n).Dur("duration", time.Since(start))
	if cr != nil {
		ev = ev.Int64("in", cr.n)
	}
	if rt.repo != "" {
		ev = ev.Str("repo", rt.repo)
	}
	if d, ok := rt.refDigest(); ok {
		ev = ev.Str("digest", d.String())
	} else if t := rt.tag(); t != "" && rt.kind == routeManifest {
		ev = ev.Str("tag", t)
		if d := w.Header().Get("Docker-Content-Digest"); d != "" {
			ev = ev.Str("digest", d) // what the tag resolved to
		}
	}
	ev.Str("remote", r.RemoteAddr).Msg("request")
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) statusCode() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Flush lets streaming handlers flush through the wrapper.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type countingBody struct {
	ReadCloser io.ReadCloser
	n          int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *countingBody) Close() error { return c.ReadCloser.Close() }
