package tee

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// memStore is a scan layer store in memory.
type memStore struct {
	mu sync.Mutex
	m  map[digest.Digest]*scan.LayerInventory
}

func (s *memStore) HasLayer(ctx context.Context, d digest.Digest, av string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[d]
	return ok, nil
}

func (s *memStore) PutLayer(ctx context.Context, li *scan.LayerInventory) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[digest.Digest]*scan.LayerInventory{}
	}
	s.m[li.Digest] = li
	return nil
}

func (s *memStore) get(d digest.Digest) *scan.LayerInventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[d]
}

type deferral struct {
	d      digest.Digest
	reason string
}

type recorder struct {
	mu sync.Mutex
	l  []deferral
}

func (r *recorder) fn(ctx context.Context, repo string, d digest.Digest, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.l = append(r.l, deferral{d, reason})
}

func (r *recorder) list() []deferral {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deferral(nil), r.l...)
}

const status = "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b13\nArchitecture: amd64\nSource: bash (5.2.15-2)\n\n"

// layer builds a gzip layer with a dpkg status and pad bytes of random data.
func layer(t testing.TB, pad int) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	add("var/lib/dpkg/status", []byte(status))
	if pad > 0 {
		b := make([]byte, pad)
		rand.Read(b)
		add("usr/share/blob.bin", b)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func feed(s scan.BlobSink, b []byte, chunk int) {
	for len(b) > 0 {
		n := min(chunk, len(b))
		if w, err := s.Write(b[:n]); w != n || err != nil {
			panic("sink refused a write")
		}
		b = b[n:]
	}
}

func newTeer(st *memStore, rec *recorder, as []scan.Analyzer, buf int64) *Teer {
	return New(Options{Analyzers: as, Store: st, Deferred: rec.fn, BufferBytes: buf, Workers: 2})
}

func TestPullCommitsUnderDigest(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	b := layer(t, 1<<16)
	d := digest.FromBytes(b)
	s := tee.Pull(context.Background(), "r", d, int64(len(b)))
	if s == nil {
		t.Fatal("nil sink for a new blob")
	}
	feed(s, b, 1000)
	s.Done(true)
	tee.Wait()
	li := st.get(d)
	if li == nil || len(li.Packages) != 1 || li.Packages[0].Name != "bash" || li.Packages[0].Layer != d {
		t.Fatalf("stored %+v", li)
	}
	if li.DiffID == "" {
		t.Error("no diffID")
	}
	// Coalesce: an analysed digest is not teed again.
	if tee.Pull(context.Background(), "other", d, int64(len(b))) != nil {
		t.Error("teed an analysed blob again")
	}
	if len(rec.list()) != 0 {
		t.Errorf("deferred %v", rec.list())
	}
}

func TestPullInFlightCoalesced(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, nil, 8<<20)
	b := layer(t, 0)
	d := digest.FromBytes(b)
	s := tee.Pull(context.Background(), "r", d, -1)
	if tee.Pull(context.Background(), "r2", d, -1) != nil {
		t.Error("second pull of an in-flight digest teed")
	}
	s.Done(false)
	tee.Wait()
	if st.get(d) != nil {
		t.Error("incomplete pull stored")
	}
}

// blocking is an analyzer that waits for release before reading.
type blocking struct{ release chan struct{} }

func (blocking) Name() string             { return "blocking" }
func (blocking) Version() string          { return "1" }
func (blocking) Wants(h *tar.Header) bool { return h.Name == "var/lib/dpkg/status" }
func (b blocking) Analyze(ctx context.Context, h *tar.Header, r io.Reader) ([]scan.Package, error) {
	<-b.release
	return nil, nil
}

func TestSlowAnalyzerDetachesWithoutBlocking(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	bl := blocking{release: make(chan struct{})}
	tee := newTeer(st, rec, []scan.Analyzer{bl}, 64<<10)
	b := layer(t, 4<<20)
	d := digest.FromBytes(b)
	s := tee.Pull(context.Background(), "r", d, int64(len(b)))
	// The analyzer is stuck: every write must still return at once (a
	// blocking write would hang this test), and the blob detaches.
	feed(s, b, 32<<10)
	s.Done(true)
	close(bl.release)
	tee.Wait()
	if st.get(d) != nil {
		t.Error("detached blob stored")
	}
	got := rec.list()
	if len(got) != 1 || got[0].d != d || got[0].reason != ReasonBehind {
		t.Fatalf("deferred %v, want %s behind", got, d)
	}
}

func TestUploadAcrossPatches(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	b := layer(t, 100_000)
	d := digest.FromBytes(b)
	ctx := context.Background()
	half := len(b) / 2
	s1 := tee.Upload(ctx, "r", "sess", 0)
	feed(s1, b[:half], 4096)
	s1.Done(true)
	s2 := tee.Upload(ctx, "r", "sess", int64(half))
	if s2 == nil {
		t.Fatal("contiguous PATCH refused")
	}
	feed(s2, b[half:], 4096)
	s2.Done(true)
	tee.UploadDone(ctx, "r", "sess", d)
	tee.Wait()
	if li := st.get(d); li == nil || len(li.Packages) != 1 || li.Packages[0].Layer != d {
		t.Fatalf("stored %+v", li)
	}
}

func TestUploadGapDetaches(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	b := layer(t, 100_000)
	d := digest.FromBytes(b)
	ctx := context.Background()
	s1 := tee.Upload(ctx, "r", "sess", 0)
	feed(s1, b[:1000], 100)
	s1.Done(true)
	if s := tee.Upload(ctx, "r", "sess", 500); s != nil { // rewinds: a resumed upload
		t.Fatal("non-contiguous offset accepted")
	}
	if s := tee.Upload(ctx, "r", "sess", 1000); s != nil {
		t.Fatal("detached session teed again")
	}
	tee.UploadDone(ctx, "r", "sess", d)
	tee.Wait()
	if st.get(d) != nil {
		t.Error("gapped upload stored")
	}
	if got := rec.list(); len(got) != 1 || got[0].reason != ReasonGap {
		t.Fatalf("deferred %v", got)
	}
}

func TestUploadDigestMismatchStoresNothing(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	b := layer(t, 1000)
	wrong := digest.FromString("something else")
	ctx := context.Background()
	s := tee.Upload(ctx, "r", "sess", 0)
	feed(s, b, 512)
	s.Done(true)
	tee.UploadDone(ctx, "r", "sess", wrong)
	tee.Wait()
	if st.get(wrong) != nil || st.get(digest.FromBytes(b)) != nil {
		t.Error("mismatched upload stored")
	}
	if got := rec.list(); len(got) != 1 || got[0].reason != ReasonMismatch {
		t.Fatalf("deferred %v", got)
	}
}

func TestNonLayerDroppedSilently(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}` + string(bytes.Repeat([]byte(" "), 400)))
	d := digest.FromBytes(cfg)
	ctx := context.Background()
	s := tee.Upload(ctx, "r", "cfg", 0)
	feed(s, cfg, 100)
	s.Done(true)
	tee.UploadDone(ctx, "r", "cfg", d)
	tee.Wait()
	if st.get(d) != nil || len(rec.list()) != 0 {
		t.Errorf("config blob stored or deferred: %v", rec.list())
	}
}

func TestCancelledUpload(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, nil, 8<<20)
	ctx := context.Background()
	s := tee.Upload(ctx, "r", "x", 0)
	feed(s, layer(t, 10), 100)
	s.Done(true)
	tee.UploadDone(ctx, "r", "x", "")
	tee.Wait()
	if len(st.m) != 0 || len(rec.list()) != 0 {
		t.Error("cancelled upload left a trace")
	}
}

func TestBusyWorkersDeferPull(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := New(Options{Store: st, Deferred: rec.fn, Workers: 1})
	a, b := layer(t, 1), layer(t, 2)
	s := tee.Pull(context.Background(), "r", digest.FromBytes(a), -1)
	if tee.Pull(context.Background(), "r", digest.FromBytes(b), -1) != nil {
		t.Error("second blob teed with one worker busy")
	}
	s.Done(false)
	tee.Wait()
	if got := rec.list(); len(got) != 1 || got[0].reason != ReasonBusy {
		t.Fatalf("deferred %v", got)
	}
}

// TestCancelIdleUploads: at shutdown, a session whose client went away after
// a PATCH is cancelled (its analysis ends, Wait returns); a session with a
// request still delivering bytes is kept and commits as usual.
func TestCancelIdleUploads(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := newTeer(st, rec, analyzer.Default(analyzer.Options{}), 8<<20)
	ctx := context.Background()
	abandoned := layer(t, 100_000)
	s1 := tee.Upload(ctx, "r", "gone", 0)
	feed(s1, abandoned[:len(abandoned)/2], 4096)
	s1.Done(true)

	b := layer(t, 50_000)
	d := digest.FromBytes(b)
	s2 := tee.Upload(ctx, "r", "busy", 0)
	feed(s2, b[:len(b)/2], 4096)

	if n := tee.CancelIdleUploads(); n != 1 {
		t.Fatalf("cancelled %d sessions, want 1 (the abandoned one)", n)
	}
	feed(s2, b[len(b)/2:], 4096)
	s2.Done(true)
	tee.UploadDone(ctx, "r", "busy", d)
	tee.Wait() // returns: the abandoned session's analysis ended
	if li := st.get(d); li == nil || len(li.Packages) != 1 {
		t.Fatalf("the in-progress upload was not analysed: %+v", li)
	}
	if s := tee.Upload(ctx, "r", "gone", int64(len(abandoned)/2)); s != nil {
		t.Fatal("a cancelled session was teed again")
	}
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("deferrals %+v", got)
	}
}
