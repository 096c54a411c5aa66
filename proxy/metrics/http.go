package metrics

import (
	"io"
	"net/http"
	"strings"
)

// Middleware counts every registry API request through next by OCI
// distribution operation (Operation), with its status code and body bytes
// (tollgate_registry_requests_total, tollgate_registry_bytes_total). It
// does not alter the exchange: the response writer keeps Flush and Unwrap
// (for http.ResponseController).
func (r *Registry) Middleware(next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		op := Operation(req.Method, req.URL.Path, req.URL.Query().Has("mount"))
		cw := &countingWriter{ResponseWriter: w}
		var cb *countingBody
		if req.Body != nil && req.Body != http.NoBody {
			cb = &countingBody{ReadCloser: req.Body}
			req.Body = cb
		}
		next.ServeHTTP(cw, req)
		code := cw.code
		if code == 0 {
			code = http.StatusOK
		}
		var in int64
		if cb != nil {
			in = cb.n
		}
		r.Request(op, code, in, cw.n)
	})
}

// Operation names the OCI distribution-spec endpoint
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#endpoints)
// that method and path address: base, pull_manifest, check_manifest,
// pull_blob, check_blob, push_blob_start, mount_blob, push_blob_chunk,
// push_blob_finish, upload_status, cancel_upload, push_manifest, list_tags,
// delete_manifest, delete_blob, list_referrers, catalog; "other" otherwise.
func Operation(method, path string, mount bool) string {
	p, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return "base"
		}
		return "other"
	}
	if p == "" {
		return "base"
	}
	if p == "_catalog" {
		return "catalog"
	}
	segs := strings.Split(strings.TrimSuffix(p, "/"), "/")
	n := len(segs)
	// Find the last route keyword with a name before it.
	for i := n - 1; i >= 1; i-- {
		switch segs[i] {
		case "manifests":
			if i != n-2 {
				continue
			}
			switch method {
			case http.MethodGet:
				return "pull_manifest"
			case http.MethodHead:
				return "check_manifest"
			case http.MethodPut:
				return "push_manifest"
			case http.MethodDelete:
				return "delete_manifest"
			}
			return "other"
		case "blobs":
			if i == n-1 {
				continue
			}
			if segs[i+1] == "uploads" {
				switch {
				case i+1 == n-1 && method == http.MethodPost:
					if mount {
						return "mount_blob"
					}
					return "push_blob_start"
				case i+2 == n-1 && method == http.MethodPatch:
					return "push_blob_chunk"
				case i+2 == n-1 && method == http.MethodPut:
					return "push_blob_finish"
				case i+2 == n-1 && method == http.MethodGet:
					return "upload_status"
				case i+2 == n-1 && method == http.MethodDelete:
					return "cancel_upload"
				}
				return "other"
			}
			if i != n-2 {
				continue
			}
			switch method {
			case http.MethodGet:
				return "pull_blob"
			case http.MethodHead:
				return "check_blob"
			case http.MethodDelete:
				return "delete_blob"
			}
			return "other"
		case "tags":
			if i == n-2 && segs[n-1] == "list" && method == http.MethodGet {
				return "list_tags"
			}
		case "referrers":
			if i == n-2 && method == http.MethodGet {
				return "list_referrers"
			}
		}
	}
	return "other"
}

type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Flush passes through so streamed bodies are not held back.
func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
