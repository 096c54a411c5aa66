package tee

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// plainLayer is an uncompressed tar layer with one file, which no
// analyzer here wants.
func plainLayer(t testing.TB, name string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	b := []byte("payload of " + name)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(b)
	tw.Close()
	return buf.Bytes()
}

// ignoresCtx blocks on the dpkg status until release is closed, ignoring
// its context: an ill-behaved analyzer, stuck "forever".
type ignoresCtx struct{ release chan struct{} }

func (ignoresCtx) Name() string             { return "ignores-ctx" }
func (ignoresCtx) Version() string          { return "1" }
func (ignoresCtx) Wants(h *tar.Header) bool { return h.Name == "var/lib/dpkg/status" }
func (a ignoresCtx) Analyze(context.Context, *tar.Header, io.Reader) ([]scan.Package, error) {
	<-a.release
	return nil, nil
}

// honoursCtx blocks on the dpkg status until its context ends.
type honoursCtx struct{}

func (honoursCtx) Name() string             { return "honours-ctx" }
func (honoursCtx) Version() string          { return "1" }
func (honoursCtx) Wants(h *tar.Header) bool { return h.Name == "var/lib/dpkg/status" }
func (honoursCtx) Analyze(ctx context.Context, _ *tar.Header, _ io.Reader) ([]scan.Package, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// waitAll fails the test when the tee's analyses do not all end within a
// generous bound (a liveness check: before the analysis deadline existed,
// Wait never returned with a stuck analyzer).
func waitAll(t *testing.T, tee *Teer) {
	t.Helper()
	done := make(chan struct{})
	go func() { tee.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("an analysis still holds its worker: no analysis deadline")
	}
}

// TestStuckAnalyzerFreesWorker: an analyzer that ignores its context and
// never returns holds its worker only until the analysis deadline; the
// layer is deferred as timed out, nothing is committed, the walk is
// counted as abandoned, and the freed worker analyses the next blob.
func TestStuckAnalyzerFreesWorker(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	an := ignoresCtx{release: make(chan struct{})}
	tee := New(Options{Analyzers: []scan.Analyzer{an}, Store: st, Deferred: rec.fn, Workers: 1,
		AnalysisTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { close(an.release) })
	ctx := context.Background()
	b := layer(t, 1000)
	d := digest.FromBytes(b)
	s := tee.Pull(ctx, "r", d, int64(len(b)))
	if s == nil {
		t.Fatal("nil sink for a new blob")
	}
	feed(s, b, 512)
	s.Done(true)
	waitAll(t, tee)
	if st.get(d) != nil {
		t.Error("a layer whose analysis never finished was committed")
	}
	if got := rec.list(); len(got) != 1 || got[0].d != d || got[0].reason != ReasonTimeout {
		t.Fatalf("deferred %v, want %s %q", got, d, ReasonTimeout)
	}
	if n := tee.Abandoned(); n != 1 {
		t.Errorf("Abandoned() = %d, want 1", n)
	}
	// The only worker is free again.
	next := plainLayer(t, "usr/share/next")
	nd := digest.FromBytes(next)
	s2 := tee.Pull(ctx, "r", nd, int64(len(next)))
	if s2 == nil {
		t.Fatal("the stuck analysis still holds the only worker")
	}
	feed(s2, next, 512)
	s2.Done(true)
	waitAll(t, tee)
	if st.get(nd) == nil {
		t.Error("the next blob was not analysed")
	}
}

// TestAnalyzerGetsCancelled: a well-behaved analyzer sees its context end
// at the deadline and returns; nothing is committed, nothing abandoned.
func TestAnalyzerGetsCancelled(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := New(Options{Analyzers: []scan.Analyzer{honoursCtx{}}, Store: st, Deferred: rec.fn, Workers: 1,
		AnalysisTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	b := layer(t, 1000)
	d := digest.FromBytes(b)
	s := tee.Upload(ctx, "r", "sess", 0)
	feed(s, b, 512)
	s.Done(true)
	tee.UploadDone(ctx, "r", "sess", d)
	waitAll(t, tee)
	if st.get(d) != nil {
		t.Error("a cancelled analysis was committed")
	}
	if got := rec.list(); len(got) != 1 || got[0].reason != ReasonTimeout {
		t.Fatalf("deferred %v, want %q", got, ReasonTimeout)
	}
	for i := 0; tee.Abandoned() != 0; i++ { // a bounded liveness wait, not a timing assertion
		if i == 600 {
			t.Fatalf("Abandoned() = %d for an analyzer that returns on cancellation", tee.Abandoned())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countingStore counts PutLayer calls and fails them while full is set.
type countingStore struct {
	memStore
	mu   sync.Mutex
	puts map[digest.Digest]int
	full bool
}

var errNoSpace = &fsError{syscall.ENOSPC}

type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return "write index/000001.vlog: " + e.errno.Error() }
func (e *fsError) Unwrap() error { return e.errno }

func (s *countingStore) PutLayer(ctx context.Context, li *scan.LayerInventory) error {
	s.mu.Lock()
	full := s.full
	if s.puts == nil {
		s.puts = map[digest.Digest]int{}
	}
	s.puts[li.Digest]++
	s.mu.Unlock()
	if full {
		return errNoSpace
	}
	return s.memStore.PutLayer(ctx, li)
}

func (s *countingStore) putsOf(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts[d]
}

// TestPullDuringPushAnalysisCoalesced: a pull of a blob whose push is
// still being analysed takes no second worker and is not analysed again;
// the push's result serves both. Also the other way round: an upload that
// turns out to carry the digest of a pull in flight is dropped.
func TestPullDuringPushAnalysisCoalesced(t *testing.T) {
	for _, pullFirst := range []bool{false, true} {
		name := "push then pull"
		if pullFirst {
			name = "pull then push"
		}
		t.Run(name, func(t *testing.T) {
			st, rec := &countingStore{}, &recorder{}
			bl := blocking{release: make(chan struct{})}
			tee := New(Options{Analyzers: []scan.Analyzer{bl, analyzer.Dpkg{}}, Store: st, Deferred: rec.fn, Workers: 2})
			ctx := context.Background()
			b := layer(t, 1000)
			d := digest.FromBytes(b)
			push := func() {
				s := tee.Upload(ctx, "push", "sess", 0)
				if s == nil {
					t.Fatal("upload not teed")
				}
				feed(s, b, 512)
				s.Done(true)
				tee.UploadDone(ctx, "push", "sess", d)
			}
			var ps scan.BlobSink
			if pullFirst {
				if ps = tee.Pull(ctx, "pull", d, int64(len(b))); ps == nil {
					t.Fatal("first pull not teed")
				}
				feed(ps, b, 512)
				push()
				if !tee.InFlight(d) {
					t.Error("InFlight false while the pull's analysis runs")
				}
				ps.Done(true)
			} else {
				push()
				if !tee.InFlight(d) {
					t.Error("InFlight false while the push's analysis runs")
				}
				if s := tee.Pull(ctx, "pull", d, int64(len(b))); s != nil {
					t.Error("a pull of a blob being analysed from a push was teed again")
					feed(s, b, 512)
					s.Done(true)
				}
			}
			close(bl.release)
			waitAll(t, tee)
			if n := st.putsOf(d); n != 1 {
				t.Errorf("layer stored %d times, want once", n)
			}
			if li := st.get(d); li == nil || len(li.Packages) != 1 {
				t.Errorf("stored %+v", li)
			}
			if got := rec.list(); len(got) != 0 {
				t.Errorf("deferred %v", got)
			}
			if tee.InFlight(d) {
				t.Error("InFlight after the analysis ended")
			}
		})
	}
}

// TestBusyDeferredOnce: pulls of one blob while every worker is busy
// defer it once, not once per pull.
func TestBusyDeferredOnce(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tee := New(Options{Store: st, Deferred: rec.fn, Workers: 1})
	ctx := context.Background()
	a, b := layer(t, 1), layer(t, 2)
	s := tee.Pull(ctx, "r", digest.FromBytes(a), -1)
	db := digest.FromBytes(b)
	for _, repo := range []string{"r", "r2", "r"} {
		if tee.Pull(ctx, repo, db, -1) != nil {
			t.Fatal("teed with the only worker busy")
		}
	}
	s.Done(false)
	tee.Wait()
	if got := rec.list(); len(got) != 1 || got[0].d != db || got[0].reason != ReasonBusy {
		t.Fatalf("deferred %v, want %s once", got, db)
	}
}

// TestSameDigestConcurrently pushes and pulls one blob from many
// goroutines at once (run with -race): at most one analysis stores it,
// and the digest is never deferred twice.
func TestSameDigestConcurrently(t *testing.T) {
	st, rec := &countingStore{}, &recorder{}
	tee := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn,
		Workers: 3, BufferBytes: 16 << 10})
	ctx := context.Background()
	b := layer(t, 64<<10) // larger than the buffer: some tees detach
	d := digest.FromBytes(b)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				sess := string(rune('a' + i))
				if s := tee.Upload(ctx, "push", sess, 0); s != nil {
					feed(s, b, 4096)
					s.Done(true)
				}
				tee.UploadDone(ctx, "push", sess, d)
				return
			}
			if s := tee.Pull(ctx, "pull", d, int64(len(b))); s != nil {
				feed(s, b, 4096)
				s.Done(true)
			}
		}()
	}
	wg.Wait()
	waitAll(t, tee)
	if n := st.putsOf(d); n > 1 {
		t.Errorf("layer stored %d times", n)
	}
	seen := map[digest.Digest]int{}
	for _, r := range rec.list() {
		seen[r.d]++
	}
	if seen[d] > 1 {
		t.Errorf("digest deferred %d times: %v", seen[d], rec.list())
	}
	if st.putsOf(d) == 0 && seen[d] == 0 {
		t.Error("the blob was neither stored nor deferred: it would never be scanned")
	}
}

// TestStoreFullDefersThenRecovers: a layer inventory that cannot be
// written (ENOSPC from the store) is not lost silently: the layer is
// deferred with a reason (its image scan reads it again; a pull of it
// meanwhile is not teed, and it is not deferred twice), and once space
// returns the next layer is analysed and stored.
func TestStoreFullDefersThenRecovers(t *testing.T) {
	st, rec := &countingStore{full: true}, &recorder{}
	tee := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn, Workers: 1})
	ctx := context.Background()
	pull := func(b []byte) {
		t.Helper()
		s := tee.Pull(ctx, "r", digest.FromBytes(b), int64(len(b)))
		if s == nil {
			t.Fatal("blob not teed")
		}
		feed(s, b, 512)
		s.Done(true)
		waitAll(t, tee)
	}
	b := layer(t, 1000)
	d := digest.FromBytes(b)
	pull(b)
	if got := rec.list(); len(got) != 1 || got[0].reason != ReasonNotStored {
		t.Fatalf("deferred %v, want %q", got, ReasonNotStored)
	}
	if !errors.Is(errNoSpace, syscall.ENOSPC) {
		t.Fatal("test error is not ENOSPC")
	}
	if !tee.Reported(d) {
		t.Error("Reported false for the deferred layer")
	}
	if tee.Pull(ctx, "r", d, int64(len(b))) != nil {
		t.Error("a deferred layer was teed again")
	}
	st.mu.Lock()
	st.full = false
	st.mu.Unlock()
	next := layer(t, 2000)
	pull(next)
	if li := st.get(digest.FromBytes(next)); li == nil || len(li.Packages) != 1 {
		t.Fatalf("after space returned: stored %+v", li)
	}
	if got := rec.list(); len(got) != 1 {
		t.Errorf("deferrals %v, want only the first", got)
	}
}
