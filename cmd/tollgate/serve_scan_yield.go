package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/proxy"
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
	return t.waitQuiet(done, max, transferQuiet)
}

func (t *transfers) waitQuiet(done <-chan struct{}, max, quiet time.Duration) time.Duration {
	start := time.Now()
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		c, since := t.state()
		select {
		case <-c:
			if since >= quiet {
				return time.Since(start)
			}
			q := time.NewTimer(quiet - since)
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

// middleware counts each registry request as a transfer while it is served.
func (t *transfers) middleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.begin()
		defer t.end()
		h.ServeHTTP(w, r)
	})
}

// idleWhileGated is the pull policy's gate with its request not counted as
// a transfer while it decides: a pull waiting for the scan of its image
// must not hold that very scan's analysis back (the tee's Yield).
type idleWhileGated struct {
	inner proxy.Gate
	t     *transfers
}

func (g idleWhileGated) Admit(ctx context.Context, repo string, desc proxy.ManifestInfo) error {
	g.t.end() // the middleware counted this request
	defer g.t.begin()
	return g.inner.Admit(ctx, repo, desc)
}

// waitIdle blocks until no registry request has been in flight for
// analysisQuiet, at most max or until stop is closed, and returns how long
// it waited (0 at once when the registry is quiet). The tee's analysis
// calls it before every read of a layer (tee.Options.Yield) on machines
// without a spare core, so it pauses again as soon as a request arrives.
func (t *transfers) waitIdle(stop <-chan struct{}, max time.Duration) time.Duration {
	if c, since := t.state(); isClosed(c) && since >= analysisQuiet {
		return 0
	}
	return t.waitQuiet(stop, max, analysisQuiet)
}

// analysisQuiet is how long the registry must have been idle before the
// tee's analysis goes on: the requests of one push follow each other
// within a few milliseconds, and an analysis resuming in those gaps slowed
// the small ones (commit, manifest PUT) by several milliseconds each on 2
// cores. 25 ms brought the shared images' push from 0.87 to 0.96 of direct
// (docs/performance.md); it delays each layer's findings by as much.
const analysisQuiet = 25 * time.Millisecond

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
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
