package proxy

import (
	"fmt"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// serveLocalBlob answers a blob GET/HEAD by calling p.Local (the embedded
// registry's handler, in this process) with out, the request as built for
// the upstream, and a ResponseWriter that passes the registry's answer to
// the client as relay would: headers rewritten, 5xx turned into the
// proxy's upstream error, and a 200 GET body teed to Teer.Pull as it is
// written. No pipe or second goroutine sits between the registry's file
// reads and the client's socket.
func (p *Proxy) serveLocalBlob(w http.ResponseWriter, r *http.Request, out *http.Request, up upstream, d digest.Digest) {
	lw := &localBlobWriter{p: p, w: w, r: r, up: up, d: d, header: http.Header{}}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler || lw.status != 0 { // a sentinel panic value, compared as net/http does
				lw.done(false)
				panic(http.ErrAbortHandler) // the answer has started: the client must see a broken transfer
			}
			lw.status = http.StatusInternalServerError
			p.Logger.Error().Str("repo", up.repo).Str("digest", d.String()).Str("panic", fmt.Sprint(v)).Msg("embedded registry handler panicked")
			WriteError(w, r, upstreamStatusError(up.name, http.StatusInternalServerError))
		}
	}()
	p.Local.ServeHTTP(lw, out)
	lw.WriteHeader(http.StatusOK) // no-op unless the handler wrote nothing
	complete := lw.werr == nil && (lw.length < 0 || lw.n == lw.length)
	lw.done(complete)
	if lw.werr != nil {
		p.Logger.Debug().Err(lw.werr).Str("op", "relay").Str("repo", up.repo).Msg("body copy ended early")
	}
}

// localBlobWriter is the registry handler's ResponseWriter in
// serveLocalBlob.
type localBlobWriter struct {
	p      *Proxy
	w      http.ResponseWriter
	r      *http.Request
	up     upstream
	d      digest.Digest
	header http.Header
	status int   // 0 until WriteHeader
	failed bool  // 5xx: replaced by the proxy's error, body discarded
	length int64 // Content-Length of a 200 body, or -1
	n      int64 // body bytes written to the client
	werr   error // first error writing to the client
	sink   scan.BlobSink
}

func (lw *localBlobWriter) Header() http.Header { return lw.header }

func (lw *localBlobWriter) WriteHeader(code int) {
	if lw.status != 0 || (code >= 100 && code < 200) {
		return
	}
	lw.status = code
	if code >= 500 {
		lw.failed = true
		WriteError(lw.w, lw.r, upstreamStatusError(lw.up.name, code))
		return
	}
	lw.p.copyHeaders(lw.w, lw.r, lw.up, &http.Response{Header: lw.header})
	lw.length = contentLength(lw.header)
	if lw.p.Teer != nil && lw.r.Method == http.MethodGet && code == http.StatusOK && lw.d.Validate() == nil {
		lw.sink = lw.p.Teer.Pull(lw.r.Context(), lw.up.recordRepo(), lw.d, lw.length)
	}
	lw.w.WriteHeader(code)
}

func (lw *localBlobWriter) Write(b []byte) (int, error) {
	lw.WriteHeader(http.StatusOK)
	if lw.failed {
		return len(b), nil
	}
	if lw.r.Method == http.MethodHead {
		// net/http drops a HEAD body but sizes Content-Length from it when
		// the handler set none (an error's JSON), as the registry's own
		// listener answers.
		_, _ = lw.w.Write(b)
		return len(b), nil
	}
	if lw.werr != nil {
		return 0, lw.werr
	}
	if lw.sink != nil {
		_, _ = lw.sink.Write(b)
	}
	n, err := lw.w.Write(b)
	lw.n += int64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	lw.werr = err
	return n, err
}

// Flush passes on to the client's writer when it can flush.
func (lw *localBlobWriter) Flush() {
	if f, ok := lw.w.(http.Flusher); ok && lw.status != 0 && !lw.failed {
		f.Flush()
	}
}

func (lw *localBlobWriter) done(complete bool) {
	if lw.sink != nil {
		lw.sink.Done(complete)
		lw.sink = nil
	}
}
