// Package proxy is tollgate's data path: an HTTP handler for the OCI
// distribution API (/v2/…) that streams every request to a registry (the
// embedded one or an upstream) and back, while it
//
//   - hands blob bytes to a scan.Teer (pull bodies and upload bodies),
//   - records pushes, pulls and deletes of manifests (Recorder) before the
//     client gets its answer, then tells Observers,
//   - consults a Gate before serving a manifest,
//   - serves the referrers API from the manifests with a subject it saw,
//   - in mirror mode, is a read-only pull-through cache front that
//     authenticates itself upstream and follows blob redirects.
//
// Proxy follows net/http/httputil.ReverseProxy: one struct with optional
// hooks, whose zero value (plus Upstream) works.
package proxy

import (
	"context"
	_ "crypto/sha256" // digest algorithms for go-digest
	_ "crypto/sha512"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// Recorder stores push, pull and delete events durably and answers the
// status of an image in a repository. *index.Records implements it.
type Recorder interface {
	// Record applies ev in one transaction; it returns after the commit.
	Record(ctx context.Context, ev index.Event) error
	// Status is index.ImageActive or index.ImageArchived, or an error
	// wrapping index.ErrNotFound when repo has no such image.
	Status(ctx context.Context, repo string, d digest.Digest) (string, error)
}

// ReferrerLister lists the referrers of a subject in a repository, filtered
// by artifact type when non-empty. *index.Referrers implements it.
type ReferrerLister interface {
	List(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]v1.Descriptor, error)
}

// Observer is told of every recorded event, after the record is committed
// and before the client gets its answer. Observe must return quickly
// (enqueue, don't scan); it cannot fail the request.
type Observer interface {
	Observe(ctx context.Context, ev index.Event)
}

// ManifestInfo describes a manifest about to be served to a client.
type ManifestInfo struct {
	Reference string        // tag or digest as requested
	Digest    digest.Digest // manifest digest
	MediaType string
	Size      int64  // bytes
	Manifest  []byte // the raw manifest
	Mirror    bool   // fetched through mirror mode
}

// Gate decides whether a manifest may be served (pull policy, mirror
// scan-before-serve). It is consulted on every manifest GET (not HEAD)
// after the upstream answered 200 and before anything is sent. Returning a
// *DeniedError answers 403 DENIED with its message; an *Error answers as
// given; any other error is logged and the manifest is served (fail-open).
// In mirror mode an image the repository does not hold yet is recorded
// (index.EventSeen) before Admit, and the observers are told of it when
// Admit refuses.
type Gate interface {
	Admit(ctx context.Context, repo string, desc ManifestInfo) error
}

// Proxy is the /v2/ handler. Set fields before the first request; they must
// not change afterwards.
type Proxy struct {
	// Upstream is the base URL of the registry (scheme and host; a path
	// prefix is kept). Nil answers every request with 502.
	Upstream *url.URL
	// UpstreamName names the upstream in error messages (default: its
	// host), e.g. "embedded registry".
	UpstreamName string
	// Transport carries requests upstream. Nil means a clone of
	// http.DefaultTransport with ResponseHeaderTimeout set to Timeout.
	Transport http.RoundTripper
	// Local, when set, is the upstream's own handler in this process (the
	// embedded registry's Handler): blob GET/HEAD requests, built as for
	// Transport, are served by calling it with the client's ResponseWriter
	// (teed), without Transport's pipe between the registry and the client.
	// Everything else still goes through Transport. Ignored in mirror mode.
	Local http.Handler
	// Timeout bounds the wait for the upstream's response headers and for
	// manifest bodies (default 30s); exceeded, the client gets 504.
	Timeout time.Duration
	// MaxManifestBytes caps manifest bodies (default 4 MiB, as distribution).
	MaxManifestBytes int64

	// Mirror, when non-nil, makes the proxy a read-only pull-through mirror.
	Mirror *Mirror

	Records   Recorder       // nil: nothing recorded, no archive check
	Referrers ReferrerLister // nil: referrers requests go upstream
	// UpstreamReferrers asks the upstream's referrers API first and answers
	// from Referrers only when the upstream lacks it (404/405): for
	// upstreams that may hold referrers pushed around the proxy.
	UpstreamReferrers bool
	Teer              scan.Teer // nil: no tee
	Gate              Gate      // nil: everything is served
	Observers         []Observer

	Logger zerolog.Logger
	// Now is the clock for event times (default time.Now).
	Now func() time.Time

	initOnce       sync.Once
	transport      http.RoundTripper
	sessions       sessionTable
	bufs           sync.Pool
	recordFailures atomic.Int64
	pending        pendingRecords
}

const (
	defaultTimeout          = 30 * time.Second
	defaultMaxManifestBytes = 4 << 20
	copyBufferSize          = 256 << 10
)

func (p *Proxy) init() {
	p.initOnce.Do(func() {
		p.transport = p.Transport
		if p.transport == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.ResponseHeaderTimeout = p.timeout()
			t.DialContext = (&net.Dialer{Timeout: min(p.timeout(), 30*time.Second), KeepAlive: 30 * time.Second}).DialContext
			t.MaxIdleConnsPerHost = 32
			t.DisableCompression = true
			t.WriteBufferSize = copyBufferSize
			t.ReadBufferSize = copyBufferSize
			p.transport = t
		}
		p.bufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	})
}

func (p *Proxy) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return defaultTimeout
}

func (p *Proxy) maxManifest() int64 {
	if p.MaxManifestBytes > 0 {
		return p.MaxManifestBytes
	}
	return defaultMaxManifestBytes
}

func (p *Proxy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// RecordFailures is the number of record writes that failed (each was
// logged; see record for what the client got).
func (p *Proxy) RecordFailures() int64 { return p.recordFailures.Load() }

// PendingRecords is the number of records that could not be written yet
// (a full disk) and are kept in memory, bounded, until a write succeeds
// again: pulls and deletes (answered as the registry answered) and pushes
// (answered 500 UNKNOWN, but the registry holds the manifest).
func (p *Proxy) PendingRecords() int { return p.pending.len() }

// ServeHTTP answers the OCI distribution API.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.init()
	rt := parseRoute(r.URL.Path)
	if rt.kind == routeUnknown {
		if rt.repo != "" {
			WriteError(w, r, errorf(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q", rt.repo))
			return
		}
		WriteError(w, r, errorf(http.StatusNotFound, CodeUnsupported, "no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	if p.Mirror != nil {
		p.serveMirror(w, r, rt)
		return
	}
	if p.Upstream == nil {
		WriteError(w, r, errorf(http.StatusBadGateway, CodeUnavailable, "no upstream registry configured"))
		return
	}
	up := upstream{base: p.Upstream, rt: p.transport, name: p.Upstream.Host, repo: rt.repo, passAuth: true}
	if p.UpstreamName != "" {
		up.name = p.UpstreamName
	}
	p.serve(w, r, rt, up)
}

// upstream is where one request goes.
type upstream struct {
	base     *url.URL
	rt       http.RoundTripper
	name     string // for messages: the upstream's host
	repo     string // repository name upstream (mirror: library/ added)
	record   string // repository name in records (default repo)
	passAuth bool   // forward the client's Authorization
	mirror   bool
}

func (u upstream) recordRepo() string {
	if u.record != "" {
		return u.record
	}
	return u.repo
}

// serve dispatches a parsed request.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	switch rt.kind {
	case routeManifest:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			p.getManifest(w, r, rt, up)
		case http.MethodPut:
			p.putManifest(w, r, rt, up)
		case http.MethodDelete:
			p.deleteManifest(w, r, rt, up)
		default:
			methodNotAllowed(w, r)
		}
	case routeBlob:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			p.getBlob(w, r, rt, up)
		case http.MethodDelete:
			p.forward(w, r, rt, up)
		default:
			methodNotAllowed(w, r)
		}
	case routeUploads, routeUpload:
		p.upload(w, r, rt, up)
	case routeReferrers:
		if r.Method != http.MethodGet {
			methodNotAllowed(w, r)
			return
		}
		p.referrers(w, r, rt, up)
	default: // base, catalog, tags
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r)
			return
		}
		p.forward(w, r, rt, up)
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not allowed here", r.Method))
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1), as in httputil.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// outRequest builds the upstream request for r: same method, the
// upstream's URL for rt (query kept, minus mirror-only parameters), the
// client's headers without hop-by-hop ones (and without Authorization
// unless up.passAuth), and body.
func (p *Proxy) outRequest(ctx context.Context, r *http.Request, rt route, up upstream, body io.Reader, length int64) (*http.Request, error) {
	u := *up.base
	u.Path = strings.TrimSuffix(up.base.Path, "/") + upstreamPath(r.URL.Path, rt, up.repo)
	u.RawPath = ""
	q := r.URL.Query()
	if q.Has("ns") {
		q.Del("ns")
		u.RawQuery = q.Encode()
	} else {
		u.RawQuery = r.URL.RawQuery
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if c := r.Header.Get("Connection"); c != "" {
		for _, f := range strings.Split(c, ",") {
			out.Header.Del(strings.TrimSpace(f))
		}
	}
	if !up.passAuth {
		out.Header.Del("Authorization")
		out.Header.Del("Cookie")
	}
	out.Header.Del("Accept-Encoding") // blobs are already compressed; keep bytes identical
	out.ContentLength = length
	if body == nil || length == 0 {
		out.Body = nil
		out.ContentLength = 0
		if body != nil && length == 0 && r.Method != http.MethodGet && r.Method != http.MethodHead {
			out.Body = http.NoBody
		}
	}
	return out, nil
}

// upstreamPath maps the client's path to the upstream's: the repository
// name is replaced by repo (mirror mode adds library/).
func upstreamPath(path string, rt route, repo string) string {
	if rt.repo == "" || repo == "" || rt.repo == repo {
		return path
	}
	return "/v2/" + repo + strings.TrimPrefix(path, "/v2/"+rt.repo)
}

// roundTrip sends out and maps transport failures to upstream errors.
func (p *Proxy) roundTrip(up upstream, out *http.Request) (*http.Response, error) {
	resp, err := up.rt.RoundTrip(out)
	if err != nil {
		if out.Context().Err() != nil && !errorsIsDeadline(out.Context().Err()) {
			return nil, err // client went away
		}
		return nil, upstreamError(up.name, err)
	}
	return resp, nil
}

// copyHeaders copies the upstream's response headers to the client,
// without hop-by-hop headers, rewriting Location and Link to the proxy.
func (p *Proxy) copyHeaders(w http.ResponseWriter, r *http.Request, up upstream, resp *http.Response) {
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = append([]string(nil), vv...)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		h.Set("Location", rewriteLocation(r, up, loc))
	}
	if links := resp.Header.Values("Link"); len(links) > 0 {
		h.Del("Link")
		for _, l := range links {
			h.Add("Link", rewriteLink(r, up, l))
		}
	}
}

// clientBase is the proxy's own base URL as the client sees it.
func clientBase(r *http.Request) *url.URL {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if fp := r.Header.Get("X-Forwarded-Proto"); fp == "http" || fp == "https" {
		scheme = fp
	}
	return &url.URL{Scheme: scheme, Host: r.Host}
}

// rewriteLocation turns an upstream Location (absolute on the upstream's
// host, or relative) into one on the proxy, so upload sessions continue
// through it. Locations on other hosts (a CDN) are left alone.
func rewriteLocation(r *http.Request, up upstream, loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if u.IsAbs() && !strings.EqualFold(u.Host, up.base.Host) {
		return loc
	}
	path := u.Path
	if bp := strings.TrimSuffix(up.base.Path, "/"); bp != "" {
		path = strings.TrimPrefix(path, bp)
	}
	if up.repo != "" {
		if rt := parseRoute(r.URL.Path); rt.repo != "" && rt.repo != up.repo {
			path = strings.Replace(path, "/v2/"+up.repo+"/", "/v2/"+rt.repo+"/", 1)
		}
	}
	base := clientBase(r)
	base.Path = path
	base.RawQuery = u.RawQuery
	return base.String()
}

// rewriteLink rewrites the URL inside a Link header (<url>; rel="next").
func rewriteLink(r *http.Request, up upstream, l string) string {
	start, end := strings.IndexByte(l, '<'), strings.IndexByte(l, '>')
	if start < 0 || end < start {
		return l
	}
	target := l[start+1 : end]
	u, err := url.Parse(target)
	if err != nil || !u.IsAbs() {
		return l
	}
	return l[:start+1] + rewriteLocation(r, up, target) + l[end:]
}

// forward streams r to the upstream and the answer back, mapping upstream
// 5xx and transport failures to OCI errors.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	resp := p.exchange(r.Context(), w, r, rt, up, body, r.ContentLength)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	p.relay(w, r, up, resp, nil)
}

// exchange sends r to the upstream (with body, length bytes long; nil and 0
// for none) and returns the upstream's answer, whose body the caller closes.
// When the request cannot be built (400) or the round trip fails (502/503/504
// naming the upstream), it has already answered the client and returns nil.
func (p *Proxy) exchange(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, up upstream, body io.Reader, length int64) *http.Response {
	out, err := p.outRequest(ctx, r, rt, up, body, length)
	if err != nil {
		WriteError(w, r, errorf(http.StatusBadRequest, CodeUnsupported, "bad request: %v", err))
		return nil
	}
	resp, err := p.roundTrip(up, out)
	if err != nil {
		p.writeRoundTripError(w, r, err)
		return nil
	}
	return resp
}

// writeRoundTripError answers a failed round trip, unless the client left.
func (p *Proxy) writeRoundTripError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	WriteError(w, r, err)
}

// relay writes resp to the client: 5xx become OCI upstream errors; other
// answers are copied with rewritten headers and the body streamed, with
// sink (may be nil) getting a copy. It returns the bytes written and
// whether the body was copied completely.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, up upstream, resp *http.Response, sink scan.BlobSink) (int64, bool) {
	if resp.StatusCode >= 500 {
		if sink != nil {
			sink.Done(false)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		WriteError(w, r, upstreamStatusError(up.name, resp.StatusCode))
		return 0, false
	}
	if up.mirror && resp.StatusCode == http.StatusUnauthorized {
		// The mirror authenticated itself; its client cannot answer the
		// upstream's challenge through it, so the challenge is not passed on.
		if sink != nil {
			sink.Done(false)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		WriteError(w, r, errorf(http.StatusUnauthorized, CodeUnauthorized,
			"upstream registry %s refused the mirror access to %s (a private repository, or none by that name)", up.name, up.repo))
		return 0, false
	}
	p.copyHeaders(w, r, up, resp)
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		if sink != nil {
			sink.Done(false)
		}
		return 0, true
	}
	n, err := p.copyBody(w, resp.Body, sink)
	complete := err == nil && (resp.ContentLength < 0 || n == resp.ContentLength)
	if sink != nil {
		sink.Done(complete)
	}
	if err != nil {
		p.Logger.Debug().Err(err).Str("op", "relay").Str("repo", up.repo).Msg("body copy ended early")
		var re *upstreamReadError
		if errors.As(err, &re) {
			// The upstream broke off mid-body. Returning normally would let
			// net/http end a chunked response cleanly (a truncated blob
			// passed off as complete); abort the connection instead, so the
			// client fails exactly as it would talking to the upstream.
			panic(http.ErrAbortHandler)
		}
	}
	return n, complete
}

// upstreamReadError marks a body copy that failed reading the upstream (as
// opposed to writing to the client).
type upstreamReadError struct{ err error }

func (e *upstreamReadError) Error() string { return "reading upstream body: " + e.err.Error() }
func (e *upstreamReadError) Unwrap() error { return e.err }

// copyBody is io.Copy from src to dst with a pooled buffer, handing each
// chunk to sink (whose result is ignored) after it is read.
func (p *Proxy) copyBody(dst io.Writer, src io.Reader, sink scan.BlobSink) (int64, error) {
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			if sink != nil {
				_, _ = sink.Write(buf[:nr])
			}
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, &upstreamReadError{rerr}
		}
	}
}

func errorsIsDeadline(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// contentLength parses a Content-Length header value (-1 if absent/bad).
func contentLength(h http.Header) int64 {
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
