package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// recTeer is a scan.Teer recording what reaches it.
type recTeer struct {
	mu    sync.Mutex
	sinks map[string]*recSink
	done  map[string]digest.Digest
}

func newRecTeer() *recTeer {
	return &recTeer{sinks: map[string]*recSink{}, done: map[string]digest.Digest{}}
}

func (r *recTeer) Pull(context.Context, string, digest.Digest, int64) scan.BlobSink {
	return &recSink{ended: make(chan bool, 2)}
}

func (r *recTeer) Upload(_ context.Context, _, session string, _ int64) scan.BlobSink {
	s := &recSink{ended: make(chan bool, 2)}
	r.mu.Lock()
	r.sinks[session] = s
	r.mu.Unlock()
	return s
}

func (r *recTeer) UploadDone(_ context.Context, _, session string, d digest.Digest) {
	r.mu.Lock()
	r.done[session] = d
	r.mu.Unlock()
}

type recSink struct {
	mu    sync.Mutex
	n     int
	ended chan bool // each Done's complete
}

func (s *recSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.n += len(p)
	s.mu.Unlock()
	return len(p), nil
}

func (s *recSink) Done(complete bool) { s.ended <- complete }

// feed writes b to sink in chunks of 16 KiB.
func feed(sink scan.BlobSink, b []byte) {
	for len(b) > 0 {
		n := min(16<<10, len(b))
		_, _ = sink.Write(b[:n])
		b = b[n:]
	}
}

func TestKnownTeerEndsAnalysisOfAReuploadedStoredLayer(t *testing.T) {
	ctx := context.Background()
	blob := bytes.Repeat([]byte("layer-bytes-"), 20000) // 240,000 bytes
	d := digest.FromBytes(blob)
	var mu sync.Mutex
	stored := map[digest.Digest]bool{}
	inner := newRecTeer()
	k := newKnownTeer(inner, func(_ context.Context, x digest.Digest) bool {
		mu.Lock()
		defer mu.Unlock()
		return stored[x]
	})

	// First upload: analysed to the end, its fingerprint remembered.
	s1 := k.Upload(ctx, "a", "s1", 0)
	feed(s1, blob)
	s1.Done(true)
	k.UploadDone(ctx, "a", "s1", d)
	if got := <-inner.sinks["s1"].ended; !got {
		t.Fatal("first upload's sink ended incomplete")
	}
	mu.Lock()
	stored[d] = true // its analysis committed
	mu.Unlock()

	// The same bytes again, to another repository: the analysis is ended
	// (Done(false)) and the transfer's own Done is not passed on twice.
	s2 := k.Upload(ctx, "b", "s2", 0)
	feed(s2, blob)
	if got := <-inner.sinks["s2"].ended; got {
		t.Fatal("re-upload of a stored layer: sink ended complete, want its analysis stopped")
	}
	s2.Done(true)
	k.UploadDone(ctx, "b", "s2", d)
	if n := len(inner.sinks["s2"].ended); n != 0 {
		t.Fatalf("inner sink ended %d more times", n)
	}
	if inner.done["s2"] != d {
		t.Fatalf("UploadDone not passed on: %v", inner.done)
	}
}

func TestKnownTeerAnalysesOtherOrUnstoredBlobs(t *testing.T) {
	ctx := context.Background()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160,000 bytes
	d := digest.FromBytes(blob)
	other := bytes.Repeat([]byte("fedcba9876543210"), 10000)
	var stored atomic.Bool
	inner := newRecTeer()
	k := newKnownTeer(inner, func(context.Context, digest.Digest) bool { return stored.Load() })
	s := k.Upload(ctx, "a", "s1", 0)
	feed(s, blob)
	s.Done(true)
	k.UploadDone(ctx, "a", "s1", d)
	<-inner.sinks["s1"].ended

	for _, c := range []struct {
		name    string
		session string
		body    []byte
	}{
		{"same first bytes, layer not stored", "s2", blob},
		{"other first bytes", "s3", other},
		{"shorter than a fingerprint", "s4", blob[:1000]},
	} {
		s := k.Upload(ctx, "b", c.session, 0)
		feed(s, c.body)
		s.Done(true)
		k.UploadDone(ctx, "b", c.session, digest.FromBytes(c.body))
		if got := <-inner.sinks[c.session].ended; !got {
			t.Errorf("%s: analysis stopped", c.name)
		}
		if inner.sinks[c.session].n != len(c.body) {
			t.Errorf("%s: %d bytes reached the tee, want %d", c.name, inner.sinks[c.session].n, len(c.body))
		}
		if c.name == "other first bytes" {
			stored.Store(true) // from here the first blob's layer is stored
		}
	}
	// A request continuing a session (offset > 0) passes through untouched.
	if s := k.Upload(ctx, "b", "s5", 100); s == nil {
		t.Fatal("continuing request not teed")
	}
}

// mapCache is an in-memory scan.LayerCache.
type mapCache struct {
	mu sync.Mutex
	m  map[digest.Digest]*scan.LayerInventory
}

func (c *mapCache) GetLayer(_ context.Context, d digest.Digest, _ string) (*scan.LayerInventory, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[d], nil
}

func (c *mapCache) PutLayer(_ context.Context, li *scan.LayerInventory) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[li.Digest] = li
	return nil
}

// blobFetcher serves blobs from memory and counts reads.
type blobFetcher struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	reads int
}

func (f *blobFetcher) Fetch(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[d]
	if !ok {
		return nil, errors.New("blob unknown")
	}
	f.reads++
	return io.NopCloser(bytes.NewReader(b)), nil
}

func osReleaseLayer(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := []byte("ID=alpine\nVERSION_ID=3.20.0\n")
	if err := tw.WriteHeader(&tar.Header{Name: "etc/os-release", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(body)
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

func TestPrefetcherAnalysesADeferredLayerAndEndsItsWait(t *testing.T) {
	ctx := context.Background()
	layer := osReleaseLayer(t)
	d := digest.FromBytes(layer)
	cache := &mapCache{m: map[digest.Digest]*scan.LayerInventory{}}
	f := &blobFetcher{blobs: map[digest.Digest][]byte{d: layer}}
	as := analyzer.Default(analyzer.Options{})
	waits := newTeeWaits()
	pf := newPrefetcher(scan.NewAssembler(scan.AssemblerOptions{Analyzers: as, Cache: cache}), f, waits, zerolog.Nop())

	if pf.start(ctx, "r", d) {
		t.Fatal("prefetched a blob nobody waits for (not seen as a layer)")
	}
	waits.start(d)
	if !pf.start(ctx, "r", d) {
		t.Fatal("deferred layer not prefetched")
	}
	// The image scan's cache (waitingCache) waits for the prefetch, then
	// finds the layer stored: one registry read in all.
	waits.wait(ctx, d, maxTeeWait) // false when the prefetch already ended
	if waits.has(d) {
		t.Fatal("wait did not end with the prefetch")
	}
	li, _ := cache.GetLayer(ctx, d, "")
	if li == nil || li.OS == nil || li.OS.ID != "alpine" {
		t.Fatalf("layer not stored by the prefetch: %+v", li)
	}
	if f.reads != 1 {
		t.Fatalf("%d registry reads, want 1", f.reads)
	}

	// A failed read still ends the wait; after close nothing starts.
	missing := digest.FromString("missing")
	waits.start(missing)
	if !pf.start(ctx, "r", missing) {
		t.Fatal("deferred layer not prefetched")
	}
	waits.wait(ctx, missing, maxTeeWait)
	if waits.has(missing) {
		t.Fatal("failed prefetch did not end its wait")
	}
	if err := pf.close(ctx); err != nil {
		t.Fatal(err)
	}
	waits.start(d)
	if pf.start(ctx, "r", d) {
		t.Fatal("prefetch started after close")
	}
}
