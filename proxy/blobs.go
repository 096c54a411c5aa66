package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// maxRedirects bounds the blob redirects the proxy follows itself.
const maxRedirects = 5

// getBlob serves GET/HEAD /v2/<name>/blobs/<digest>. Redirects (a CDN) are
// followed by the proxy so the bytes pass through it and its tee; a full
// 200 GET body is teed to Teer.Pull.
func (p *Proxy) getBlob(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	out, err := p.outRequest(r.Context(), r, rt, up, nil, 0)
	if err != nil {
		WriteError(w, r, errorf(http.StatusBadRequest, CodeUnsupported, "bad request: %v", err))
		return
	}
	d, _ := rt.refDigest()
	if p.Local != nil && !up.mirror {
		p.serveLocalBlob(w, r, out, up, d)
		return
	}
	resp, redirected, err := p.followRedirects(up, out)
	if err != nil {
		p.writeRoundTripError(w, r, err)
		return
	}
	defer resp.Body.Close()
	if redirected {
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			WriteError(w, r, errorf(http.StatusBadGateway, CodeUnavailable,
				"blob redirect target of upstream registry %s answered %d %s", up.name, resp.StatusCode, http.StatusText(resp.StatusCode)))
			return
		}
		// A CDN does not speak the distribution API: present the answer as
		// the registry would.
		resp.Header.Del("Location")
		resp.Header.Set("Docker-Content-Digest", d.String())
		if resp.Header.Get("Content-Type") == "" {
			resp.Header.Set("Content-Type", "application/octet-stream")
		}
	}
	var sink scan.BlobSink
	if p.Teer != nil && r.Method == http.MethodGet && resp.StatusCode == http.StatusOK && d.Validate() == nil {
		sink = p.Teer.Pull(r.Context(), up.recordRepo(), d, resp.ContentLength)
	}
	p.relay(w, r, up, resp, sink)
}

// followRedirects sends out and follows up to maxRedirects 3xx answers
// that carry a Location. Redirect targets get no client credentials (a
// Transport that authenticates, as in mirror mode, only authenticates to
// its own registry host).
func (p *Proxy) followRedirects(up upstream, out *http.Request) (*http.Response, bool, error) {
	resp, err := p.roundTrip(up, out)
	if err != nil {
		return nil, false, err
	}
	redirected := false
	for i := 0; ; i++ {
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, redirected, nil
		}
		loc := resp.Header.Get("Location")
		if loc == "" || i == maxRedirects {
			return resp, redirected, nil
		}
		target, err := out.URL.Parse(loc)
		_ = resp.Body.Close()
		if err != nil {
			return nil, redirected, upstreamError(up.name, err)
		}
		next, err := http.NewRequestWithContext(out.Context(), out.Method, target.String(), nil)
		if err != nil {
			return nil, redirected, upstreamError(up.name, err)
		}
		for _, h := range []string{"Range", "If-Range", "User-Agent", "Accept"} {
			if v := out.Header.Get(h); v != "" {
				next.Header.Set(h, v)
			}
		}
		if !strings.EqualFold(target.Host, out.URL.Host) {
			next.Header.Del("Authorization")
		} else if a := out.Header.Get("Authorization"); a != "" {
			next.Header.Set("Authorization", a)
		}
		out = next
		redirected = true
		if resp, err = p.roundTrip(up, out); err != nil {
			return nil, redirected, err
		}
	}
}

// upload serves the upload endpoints: POST /blobs/uploads/ (start,
// monolithic with ?digest=, mount with ?mount=), PATCH/PUT/GET/DELETE
// /blobs/uploads/<session>. Request bodies stream upstream through a tee
// (Teer.Upload with the session id and the offset of the body in the blob);
// Teer.UploadDone follows the registry's 201 (with the digest), a cancel
// (DELETE 204) or a failed PUT.
func (p *Proxy) upload(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	ctx := r.Context()
	repo := up.recordRepo()
	if rt.kind == routeUploads && r.Method != http.MethodPost {
		methodNotAllowed(w, r)
		return
	}
	if rt.kind == routeUpload && r.Method != http.MethodPatch && r.Method != http.MethodPut &&
		r.Method != http.MethodGet && r.Method != http.MethodDelete {
		methodNotAllowed(w, r)
		return
	}
	session := rt.ref
	var offset int64
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	if r.Method == http.MethodGet || r.Method == http.MethodDelete ||
		(r.Method == http.MethodPost && !r.URL.Query().Has("digest")) {
		hasBody = false // only a monolithic POST (?digest=) carries the blob
	}
	switch {
	case r.Method == http.MethodPost && hasBody:
		session = "monolithic-" + randomID() // POST ?digest= with the blob
	case r.Method == http.MethodPatch || r.Method == http.MethodPut:
		offset = p.uploadOffset(r, repo, session)
	}
	var body *teeBody
	var bodyReader io.Reader
	if hasBody {
		var sink scan.BlobSink
		if p.Teer != nil {
			sink = p.Teer.Upload(ctx, repo, session, offset)
		}
		body = newTeeBody(r.Body, sink)
		bodyReader = body
	}
	out, err := p.outRequest(ctx, r, rt, up, bodyReader, r.ContentLength)
	if err != nil {
		if body != nil {
			_ = body.Close()
		}
		WriteError(w, r, errorf(http.StatusBadRequest, CodeUnsupported, "bad request: %v", err))
		return
	}
	if body != nil {
		out.Body = body // the transport closes it when done: that ends the sink
	}
	resp, err := p.roundTrip(up, out)
	if err != nil {
		if body != nil {
			body.wait()
		}
		if r.Method == http.MethodPut {
			p.uploadEnded(ctx, repo, session, "")
		}
		if body != nil && body.incomplete() {
			// The client sent less than its Content-Length and closed its
			// side (a push killed mid-layer): the request context ends with
			// it, but the client may still read, and a handler that returns
			// without answering would tell it 200 OK.
			WriteError(w, r, errorf(http.StatusBadRequest, CodeBlobUploadInvalid,
				"request body incomplete: %d of %d bytes received", body.n.Load(), r.ContentLength))
			return
		}
		p.writeRoundTripError(w, r, err)
		return
	}
	defer resp.Body.Close()
	// The session's state and the Teer are updated once the request body
	// is closed (its sink ended). An empty answer (201, 202, 204) is relayed
	// after that, so UploadDone precedes the client's next request (the
	// manifest PUT); an answer with a body (an error) is relayed first,
	// since an in-process registry only returns, closing the body, once its
	// answer has been read.
	finish := func() {
		if body != nil {
			body.wait()
		}
		p.uploadState(ctx, r, resp, repo, session, offset, body, hasBody)
	}
	if resp.ContentLength == 0 {
		finish()
		p.relay(w, r, up, resp, nil)
		return
	}
	p.relay(w, r, up, resp, nil)
	_ = resp.Body.Close()
	finish()
}

// uploadState records what an upload answer means for the session: the
// accepted offset, or its end (Teer.UploadDone).
func (p *Proxy) uploadState(ctx context.Context, r *http.Request, resp *http.Response, repo, session string, offset int64, body *teeBody, hasBody bool) {
	switch {
	case resp.StatusCode == http.StatusCreated && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		d := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
		if d == "" {
			d = digest.Digest(r.URL.Query().Get("digest"))
		}
		if r.Method == http.MethodPut || hasBody {
			p.uploadEnded(ctx, repo, session, d)
		}
	case resp.StatusCode == http.StatusAccepted && r.Method == http.MethodPost:
		if id := sessionFromLocation(resp.Header.Get("Location")); id != "" {
			p.sessions.set(repo+"\x00"+id, 0)
		}
	case resp.StatusCode == http.StatusAccepted && r.Method == http.MethodPatch:
		next := offset
		if body != nil {
			next += body.n.Load()
		}
		if end, ok := rangeEnd(resp.Header.Get("Range")); ok && end > 0 {
			next = end + 1
		}
		p.sessions.set(repo+"\x00"+session, next)
	case resp.StatusCode == http.StatusNoContent && r.Method == http.MethodDelete:
		p.uploadEnded(ctx, repo, session, "")
	case resp.StatusCode >= 400 && r.Method == http.MethodPut, resp.StatusCode >= 400 && hasBody && r.Method == http.MethodPost:
		p.uploadEnded(ctx, repo, session, "")
	}
}

// uploadOffset is where the request body starts in the blob: the
// Content-Range start if given, else what the session has accepted so far.
func (p *Proxy) uploadOffset(r *http.Request, repo, session string) int64 {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		cr = strings.TrimPrefix(strings.TrimSpace(cr), "bytes ")
		if s, _, ok := strings.Cut(cr, "-"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
				return n
			}
		}
	}
	n, _ := p.sessions.get(repo + "\x00" + session)
	return n
}

// uploadEnded forgets session and tells the Teer (d empty: cancelled or
// failed).
func (p *Proxy) uploadEnded(ctx context.Context, repo, session string, d digest.Digest) {
	p.sessions.del(repo + "\x00" + session)
	if p.Teer != nil {
		p.Teer.UploadDone(context.WithoutCancel(ctx), repo, session, d)
	}
}

// rangeEnd parses the end of an upload Range header "0-<end>".
func rangeEnd(v string) (int64, bool) {
	_, e, ok := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(e, 10, 64)
	return n, err == nil
}

// sessionFromLocation extracts the session id from an upload Location.
func sessionFromLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	if !strings.Contains(u.Path, "/blobs/uploads/") {
		return ""
	}
	return path.Base(u.Path)
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// teeBody is an upload request body on its way upstream: it counts bytes,
// copies them to sink (result ignored), and ends the sink when the
// transport closes it.
type teeBody struct {
	r      io.Reader
	sink   scan.BlobSink
	n      atomic.Int64
	eof    atomic.Bool
	failed atomic.Bool // reading the client's body failed (not io.EOF)
	once   sync.Once
	closed chan struct{}
}

func newTeeBody(r io.Reader, sink scan.BlobSink) *teeBody {
	return &teeBody{r: r, sink: sink, closed: make(chan struct{})}
}

func (t *teeBody) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		if t.sink != nil {
			_, _ = t.sink.Write(b[:n])
		}
		t.n.Add(int64(n))
	}
	if err == io.EOF {
		t.eof.Store(true)
	} else if err != nil {
		t.failed.Store(true)
	}
	return n, err
}

// incomplete reports whether reading the client's body failed (it ended
// before its Content-Length, or the connection broke): not an upstream
// failure.
func (t *teeBody) incomplete() bool { return t.failed.Load() }

// Close ends the sink's share; the client's body itself is closed by the
// server.
func (t *teeBody) Close() error {
	t.once.Do(func() {
		if t.sink != nil {
			t.sink.Done(t.eof.Load())
		}
		close(t.closed)
	})
	return nil
}

// wait blocks until the transport closed the body (it always does, but may
// do it just after RoundTrip returns), so the sink's Done precedes
// UploadDone; bounded in case a transport misbehaves.
func (t *teeBody) wait() {
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-t.closed:
	case <-timer.C:
		_ = t.Close()
	}
}

// sessionTable remembers, per upload session, the bytes the registry has
// accepted, for the offset of the next PATCH without Content-Range. It is
// bounded: abandoned sessions are evicted.
type sessionTable struct {
	mu sync.Mutex
	m  map[string]int64
}

const maxSessions = 1 << 16

func (s *sessionTable) get(k string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok
}

func (s *sessionTable) set(k string, v int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]int64)
	}
	if _, ok := s.m[k]; !ok && len(s.m) >= maxSessions {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = v
}

func (s *sessionTable) del(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}
