package main

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// transfers counts the blob transfers (upload requests, blob GETs) in
// progress through the proxy, teed or not, so that background analysis can
// yield the CPU to them: on a small machine a walk (gunzip, hashing, the
// analyzers) running beside an upload slows the upload itself
// (docs/performance.md). Safe for concurrent use.
type transfers struct {
	mu      sync.Mutex
	n       int
	idle    chan struct{} // closed while n == 0
	lastEnd time.Time     // when the last transfer ended
}

// transferQuiet is how long after the last transfer ended analysis still
// waits: a push's manifest PUT (no blob transfer, but its durable writes)
// follows its last blob within milliseconds.
const transferQuiet = 50 * time.Millisecond

func newTransfers() *transfers {
	c := make(chan struct{})
	close(c)
	return &transfers{idle: c}
}

func (t *transfers) begin() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

func (t *transfers) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		t.lastEnd = time.Now()
		close(t.idle)
	}
}

// idleChan is closed once no transfer is in progress.
func (t *transfers) idleChan() <-chan struct{} {
	c, _ := t.state()
	return c
}

// state is idleChan and how long ago the last transfer ended.
func (t *transfers) state() (<-chan struct{}, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle, time.Since(t.lastEnd)
}

// wait blocks until no transfer is in progress, ctx ends or max passed,
// and returns how long it waited.
func (t *transfers) wait(ctx context.Context, max time.Duration) time.Duration {
	return t.waitDone(ctx.Done(), max)
}

// waitDone is wait with a context's Done channel: it waits until no
// transfer is in progress and the last ended transferQuiet ago.
func (t *transfers) waitDone(done <-chan struct{}, max time.Duration) time.Duration {
	start := time.Now()
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		c, since := t.state()
		select {
		case <-c:
			if since >= transferQuiet {
				return time.Since(start)
			}
			q := time.NewTimer(transferQuiet - since)
			select {
			case <-q.C:
			case <-timer.C:
				q.Stop()
				return time.Since(start)
			case <-done:
				q.Stop()
				return time.Since(start)
			}
			continue // look again: another transfer may have started
		default:
		}
		select {
		case <-c:
		case <-timer.C:
			return time.Since(start)
		case <-done:
			return time.Since(start)
		}
	}
}

// yieldingReader pauses reading while transfers are in progress, for at
// most budget in all: analysis reading through it yields to transfers but
// is never held back longer than budget per blob.
type yieldingReader struct {
	done   <-chan struct{} // the fetch's context's
	r      io.Reader
	t      *transfers
	budget time.Duration
}

func (y *yieldingReader) Read(p []byte) (int, error) {
	if y.budget > 0 {
		y.budget -= y.t.waitDone(y.done, y.budget)
	}
	return y.r.Read(p)
}

// yieldingFetcher is a scan.BlobFetcher whose blobs read through a
// yieldingReader.
type yieldingFetcher struct {
	f      scan.BlobFetcher
	t      *transfers
	budget time.Duration
}

func (y yieldingFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	rc, err := y.f.Fetch(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&yieldingReader{done: ctx.Done(), r: rc, t: y.t, budget: y.budget}, rc}, nil
}

// activeTeer counts every blob transfer in transfers: each pull and each
// upload request gets a sink (a no-op one when inner tees nothing) whose
// Done ends it. The proxy ends every sink it gets.
type activeTeer struct {
	inner scan.Teer
	t     *transfers
}

func (a activeTeer) Pull(ctx context.Context, repo string, d digest.Digest, size int64) scan.BlobSink {
	a.t.begin()
	return &activeSink{inner: a.inner.Pull(ctx, repo, d, size), t: a.t}
}

func (a activeTeer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	a.t.begin()
	return &activeSink{inner: a.inner.Upload(ctx, repo, session, offset), t: a.t}
}

func (a activeTeer) UploadDone(ctx context.Context, repo, session string, d digest.Digest) {
	a.inner.UploadDone(ctx, repo, session, d)
}

type activeSink struct {
	inner scan.BlobSink // nil: nothing teed
	t     *transfers
	once  sync.Once
}

func (s *activeSink) Write(p []byte) (int, error) {
	if s.inner != nil {
		return s.inner.Write(p)
	}
	return len(p), nil
}

func (s *activeSink) Done(complete bool) {
	s.once.Do(func() {
		if s.inner != nil {
			s.inner.Done(complete)
		}
		s.t.end()
	})
}
