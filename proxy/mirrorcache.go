package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// MirrorCache is the mirror's blob cache, an http.RoundTripper under
// Proxy.Transport (and the image scanner's registry fetcher): every blob
// GET answered 200 by the upstream (or by the CDN it redirects to) is
// written to Dir while it streams to whoever asked, and kept once its
// digest checks out. A later GET of that blob is answered from disk, and a
// GET while it is still streaming reads the file as it grows. So the first
// pull through the mirror reads each layer from the upstream once, although
// the image scan before the answer (pull policy) or beside it reads the
// layer as well as the client. Blobs are content-addressed and verified,
// so one copy serves every repository and ?ns= registry; the least
// recently used are removed past MaxBytes. Range requests and HEADs go to
// the upstream.
type MirrorCache struct {
	Next     http.RoundTripper
	Dir      string
	MaxBytes int64 // default 10 GiB
	Logger   zerolog.Logger

	mu        sync.Mutex
	loaded    bool
	entries   map[digest.Digest]*cachedBlob
	total     int64
	inflight  map[digest.Digest]*inflightBlob
	redirects map[string]redirectTarget // redirect target URL → the blob asked for
}

type cachedBlob struct {
	size int64
	used time.Time
}

type redirectTarget struct {
	d  digest.Digest
	at time.Time
}

const (
	defaultMirrorCacheBytes = 10 << 30
	maxCacheRedirects       = 1024
	cacheRedirectTTL        = 5 * time.Minute
)

func (c *MirrorCache) maxBytes() int64 {
	if c.MaxBytes > 0 {
		return c.MaxBytes
	}
	return defaultMirrorCacheBytes
}

func (c *MirrorCache) path(d digest.Digest) string {
	return filepath.Join(c.Dir, d.Algorithm().String(), d.Encoded())
}

// load indexes the blobs a previous process kept and removes partial
// files; called with c.mu held.
func (c *MirrorCache) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	c.entries = map[digest.Digest]*cachedBlob{}
	c.inflight = map[digest.Digest]*inflightBlob{}
	c.redirects = map[string]redirectTarget{}
	if tmps, err := filepath.Glob(filepath.Join(c.Dir, "partial-*")); err == nil {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	des, err := os.ReadDir(filepath.Join(c.Dir, "sha256"))
	if err != nil {
		return
	}
	for _, de := range des {
		d := digest.NewDigestFromEncoded(digest.SHA256, de.Name())
		fi, err := de.Info()
		if err != nil || d.Validate() != nil || !fi.Mode().IsRegular() {
			continue
		}
		c.entries[d] = &cachedBlob{size: fi.Size(), used: fi.ModTime()}
		c.total += fi.Size()
	}
	c.evict()
}

// evict removes least recently used blobs past maxBytes; c.mu held.
func (c *MirrorCache) evict() {
	for c.total > c.maxBytes() && len(c.entries) > 0 {
		var oldest digest.Digest
		var t time.Time
		for d, e := range c.entries {
			if oldest == "" || e.used.Before(t) {
				oldest, t = d, e.used
			}
		}
		c.total -= c.entries[oldest].size
		delete(c.entries, oldest)
		_ = os.Remove(c.path(oldest)) // an open reader keeps its bytes
	}
}

// blobDigest is d when req is a GET of /v2/<name>/blobs/<d>.
func blobDigest(req *http.Request) (digest.Digest, bool) {
	if req.Method != http.MethodGet || !strings.HasPrefix(req.URL.Path, "/v2/") {
		return "", false
	}
	i := strings.LastIndex(req.URL.Path, "/blobs/")
	if i < 0 {
		return "", false
	}
	d := digest.Digest(req.URL.Path[i+len("/blobs/"):])
	return d, d.Validate() == nil && d.Algorithm() == digest.SHA256
}

// RoundTrip answers a blob GET from the cache, or sends req on and caches
// the blob it answers with.
func (c *MirrorCache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Header.Get("Range") != "" {
		return c.Next.RoundTrip(req)
	}
	d, isBlob := blobDigest(req)
	c.mu.Lock()
	c.load()
	if !isBlob {
		rt, ok := c.redirects[req.URL.String()]
		if ok {
			delete(c.redirects, req.URL.String())
			d, isBlob = rt.d, true
		}
	}
	if !isBlob {
		c.mu.Unlock()
		return c.Next.RoundTrip(req)
	}
	if e, ok := c.entries[d]; ok {
		if f, err := os.Open(c.path(d)); err == nil {
			e.used = time.Now()
			c.mu.Unlock()
			return cachedResponse(req, d, e.size, f), nil
		}
		c.total -= e.size
		delete(c.entries, d)
	}
	if in := c.inflight[d]; in != nil {
		if f, err := os.Open(in.tmp); err == nil {
			c.mu.Unlock()
			return cachedResponse(req, d, in.size, &tailReader{in: in, f: f, req: req}), nil
		}
	}
	c.mu.Unlock()

	resp, err := c.Next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		if loc := resp.Header.Get("Location"); loc != "" {
			if target, err := req.URL.Parse(loc); err == nil {
				c.rememberRedirect(target.String(), d)
			}
		}
	case resp.StatusCode == http.StatusOK && resp.ContentLength <= c.maxBytes():
		if body := c.start(d, resp); body != nil {
			resp.Body = body
		}
	}
	return resp, nil
}

func (c *MirrorCache) rememberRedirect(target string, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.redirects) >= maxCacheRedirects {
		for k, v := range c.redirects {
			if now.Sub(v.at) > cacheRedirectTTL {
				delete(c.redirects, k)
			}
		}
		if len(c.redirects) >= maxCacheRedirects {
			clear(c.redirects)
		}
	}
	c.redirects[target] = redirectTarget{d: d, at: now}
}

func cachedResponse(req *http.Request, d digest.Digest, size int64, body io.ReadCloser) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: size, Request: req}
}

// inflightBlob is a blob being written to the cache as it streams.
type inflightBlob struct {
	tmp  string
	size int64 // Content-Length, -1 if unknown

	mu      sync.Mutex
	cond    *sync.Cond
	written int64
	done    bool
	err     error
}

// start registers d as in flight and returns resp's body wrapped to write
// it to the cache; nil (no caching) if d is already in flight or the file
// cannot be created.
func (c *MirrorCache) start(d digest.Digest, resp *http.Response) io.ReadCloser {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[d] != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "sha256"), 0o755); err != nil {
		c.Logger.Warn().Err(err).Str("op", "mirror-cache").Msg("blob cache directory not writable: blobs are not cached")
		return nil
	}
	f, err := os.CreateTemp(c.Dir, "partial-*")
	if err != nil {
		c.Logger.Warn().Err(err).Str("op", "mirror-cache").Msg("blob not cached")
		return nil
	}
	in := &inflightBlob{tmp: f.Name(), size: resp.ContentLength}
	in.cond = sync.NewCond(&in.mu)
	c.inflight[d] = in
	return &cachingBody{c: c, d: d, in: in, rc: resp.Body, f: f, h: sha256.New()}
}

// cachingBody writes what its reader reads to the cache file, and keeps
// the file once the whole blob was read and its digest checks out.
type cachingBody struct {
	c      *MirrorCache
	d      digest.Digest
	in     *inflightBlob
	rc     io.ReadCloser
	f      *os.File
	h      hash.Hash
	n      int64
	failed error
	ended  bool
}

func (b *cachingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && b.failed == nil {
		if _, werr := b.f.Write(p[:n]); werr != nil {
			b.failed = werr
		}
		b.h.Write(p[:n])
		b.n += int64(n)
		b.in.mu.Lock()
		b.in.written = b.n
		b.in.cond.Broadcast()
		b.in.mu.Unlock()
	}
	if errors.Is(err, io.EOF) {
		b.end(nil)
	} else if err != nil {
		b.end(err)
	}
	return n, err
}

func (b *cachingBody) Close() error {
	if b.in.size >= 0 && b.n == b.in.size {
		b.end(nil) // read to its length without asking for the EOF
	} else {
		b.end(errors.New("read ended before the end of the blob"))
	}
	return b.rc.Close()
}

// end keeps the file (reason nil and the digest and size match) or drops it.
func (b *cachingBody) end(reason error) {
	if b.ended {
		return
	}
	b.ended = true
	if reason == nil {
		reason = b.failed
	}
	if reason == nil {
		if got := "sha256:" + hex.EncodeToString(b.h.Sum(nil)); got != b.d.String() {
			reason = fmt.Errorf("digest %s, want %s", got, b.d)
		} else if b.in.size >= 0 && b.n != b.in.size {
			reason = fmt.Errorf("%d bytes, want %d", b.n, b.in.size)
		}
	}
	cerr := b.f.Close()
	if reason == nil {
		reason = cerr
	}
	c := b.c
	c.mu.Lock()
	if reason == nil {
		if reason = os.Rename(b.in.tmp, c.path(b.d)); reason == nil {
			if old, ok := c.entries[b.d]; ok {
				c.total -= old.size
			}
			c.entries[b.d] = &cachedBlob{size: b.n, used: time.Now()}
			c.total += b.n
			c.evict()
		}
	}
	delete(c.inflight, b.d)
	c.mu.Unlock()
	if reason != nil {
		_ = os.Remove(b.in.tmp)
		c.Logger.Debug().Err(reason).Str("op", "mirror-cache").Str("digest", b.d.String()).Msg("blob not cached")
	}
	b.in.mu.Lock()
	b.in.done, b.in.err = true, reason
	b.in.cond.Broadcast()
	b.in.mu.Unlock()
}

// tailReader reads an in-flight blob's file as it grows; it fails if the
// blob's transfer does (its client then sees the upstream break off, as it
// would have reading from the upstream itself).
type tailReader struct {
	in   *inflightBlob
	f    *os.File
	req  *http.Request
	off  int64
	stop func() bool
}

func (t *tailReader) Read(p []byte) (int, error) {
	in := t.in
	in.mu.Lock()
	if t.stop == nil {
		t.stop = context.AfterFunc(t.req.Context(), func() { in.mu.Lock(); in.cond.Broadcast(); in.mu.Unlock() })
	}
	for in.written <= t.off && !in.done && t.req.Context().Err() == nil {
		in.cond.Wait()
	}
	avail, done, err := in.written-t.off, in.done, in.err
	in.mu.Unlock()
	if avail > 0 {
		n, rerr := t.f.ReadAt(p[:min(int64(len(p)), avail)], t.off)
		t.off += int64(n)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return n, rerr
		}
		return n, nil
	}
	if cerr := t.req.Context().Err(); cerr != nil {
		return 0, cerr
	}
	if done && err != nil {
		return 0, fmt.Errorf("mirror cache: the blob's upstream transfer failed: %w", err)
	}
	return 0, io.EOF
}

func (t *tailReader) Close() error {
	if t.stop != nil {
		t.stop()
	}
	return t.f.Close()
}
