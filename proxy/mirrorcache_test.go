package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// TestMirrorCacheServesRepeatPullsThroughRedirects: a mirror pull whose
// blobs the upstream redirects to a CDN caches them; the second pull reads
// no blob from the CDN, and the tee still sees every layer.
func TestMirrorCacheServesRepeatPullsThroughRedirects(t *testing.T) {
	a := newAuthUpstream(t)
	img := a.seed(t, "team/app", "v1")
	h := newHarness(t, func(p *Proxy) {
		p.Upstream = a.url
		p.Transport = &MirrorCache{Next: http.DefaultTransport, Dir: t.TempDir()}
		p.Mirror = &Mirror{}
	})
	ref, _ := name.ParseReference(h.host+"/team/app:v1", name.Insecure)
	pullAll := func() {
		t.Helper()
		got, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := got.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
		ls, _ := got.Layers()
		for _, l := range ls {
			rc, err := l.Compressed() // ggcr verifies the digest while reading
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("layer: %v", err)
			}
			rc.Close()
		}
	}
	pullAll()
	first := a.cdnHits.Load()
	if first != 3 { // config + 2 layers
		t.Fatalf("first pull: %d CDN reads, want 3", first)
	}
	pullAll()
	if n := a.cdnHits.Load(); n != first {
		t.Fatalf("second pull read %d blobs from the CDN, want 0 (cached)", n-first)
	}
	h.srv.Close()
	ls, _ := img.Layers()
	for _, l := range ls {
		ld, _ := l.Digest()
		h.teer.mu.Lock()
		n := len(h.teer.pulls[digest.Digest(ld.String())])
		h.teer.mu.Unlock()
		if n != 2 {
			t.Errorf("tee saw layer %s %d times, want 2 (once per pull)", ld, n)
		}
	}
}

// blobUpstream serves one blob; a GET sends half of it, then waits for
// release before the rest.
type blobUpstream struct {
	srv     *httptest.Server
	blob    []byte
	d       digest.Digest
	gets    atomic.Int64
	release chan struct{}
}

func newBlobUpstream(t *testing.T, blob []byte, gate bool) *blobUpstream {
	u := &blobUpstream{blob: blob, d: digest.FromBytes(blob)}
	if gate {
		u.release = make(chan struct{})
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/blobs/"+u.d.String()) {
			http.NotFound(w, r)
			return
		}
		u.gets.Add(1)
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(u.blob[:512])
		w.(http.Flusher).Flush()
		if u.release != nil {
			<-u.release
		}
		_, _ = w.Write(u.blob[512:])
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *blobUpstream) get(t *testing.T, c *MirrorCache) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u.srv.URL+"/v2/team/app/blobs/"+u.d.String(), nil)
	resp, err := c.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", resp, err)
	}
	return resp
}

func randomBlob(seed byte) []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// TestMirrorCacheTailsABlobInFlight: a second GET while the first is still
// streaming reads the cache file as it grows: one upstream read, both
// bodies whole; a third GET comes from disk.
func TestMirrorCacheTailsABlobInFlight(t *testing.T) {
	u := newBlobUpstream(t, randomBlob(1), true)
	c := &MirrorCache{Next: http.DefaultTransport, Dir: t.TempDir()}
	r1 := u.get(t, c)
	half := make([]byte, 512)
	if _, err := io.ReadFull(r1.Body, half); err != nil {
		t.Fatal(err)
	}
	r2 := u.get(t, c) // in flight: tails the file
	got2 := make(chan []byte)
	go func() { b, _ := io.ReadAll(r2.Body); r2.Body.Close(); got2 <- b }()
	close(u.release)
	rest, err := io.ReadAll(r1.Body)
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	if !bytes.Equal(append(half, rest...), u.blob) {
		t.Fatal("first body differs from the blob")
	}
	if b := <-got2; !bytes.Equal(b, u.blob) {
		t.Fatalf("tailing body: %d bytes, differs from the blob", len(b))
	}
	r3 := u.get(t, c)
	b, _ := io.ReadAll(r3.Body)
	r3.Body.Close()
	if !bytes.Equal(b, u.blob) || r3.Header.Get("Docker-Content-Digest") != u.d.String() || r3.ContentLength != 1024 {
		t.Fatalf("cached answer: %d bytes, headers %v", len(b), r3.Header)
	}
	if n := u.gets.Load(); n != 1 {
		t.Fatalf("%d upstream reads, want 1", n)
	}
}

// TestMirrorCacheKeepsOnlyWholeVerifiedBlobs: a body closed early or whose
// bytes do not match the digest is not kept; past MaxBytes the least
// recently used blob goes.
func TestMirrorCacheKeepsOnlyWholeVerifiedBlobs(t *testing.T) {
	u := newBlobUpstream(t, randomBlob(2), false)
	c := &MirrorCache{Next: http.DefaultTransport, Dir: t.TempDir(), MaxBytes: 1500}
	r := u.get(t, c)
	_, _ = io.ReadFull(r.Body, make([]byte, 10))
	r.Body.Close()
	r = u.get(t, c)
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if n := u.gets.Load(); n != 2 {
		t.Fatalf("a partly read blob was kept: %d upstream reads, want 2", n)
	}

	bad := newBlobUpstream(t, randomBlob(3), false)
	bad.d = digest.FromString("something else")
	r = bad.get(t, c)
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	r = bad.get(t, c)
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if n := bad.gets.Load(); n != 2 {
		t.Fatalf("a blob not matching its digest was kept: %d upstream reads, want 2", n)
	}

	other := newBlobUpstream(t, randomBlob(4), false)
	r = other.get(t, c) // 2 × 1024 > 1500: u's blob is evicted
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	r = u.get(t, c)
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if n := u.gets.Load(); n != 3 {
		t.Fatalf("least recently used blob not evicted past MaxBytes: %d upstream reads, want 3", n)
	}
}
