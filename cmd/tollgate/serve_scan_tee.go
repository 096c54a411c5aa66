package main

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// teeWaits tracks layers whose analysis in the tee is still running after
// their transfer ended: the manifest PUT (and with it the image scan) often
// arrives while the last layer's walk finishes. The image scan waits for it
// (waitingCache) instead of reading the layer again from the registry, so
// each layer is read once (DESIGN.md rule 2).
type teeWaits struct {
	mu      sync.Mutex
	pending map[digest.Digest]*teeWait
}

type teeWait struct {
	done  chan struct{}
	since time.Time
}

// teeWaitsStale drops entries nobody finished (blobs that were not layers:
// configs, signatures; the tee drops those without a callback).
const teeWaitsStale = 15 * time.Minute

func newTeeWaits() *teeWaits { return &teeWaits{pending: map[digest.Digest]*teeWait{}} }

// start marks d as being analysed.
func (w *teeWaits) start(d digest.Digest) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[d]; ok {
		return
	}
	if len(w.pending) >= 1024 {
		for k, p := range w.pending {
			if now.Sub(p.since) > teeWaitsStale {
				close(p.done)
				delete(w.pending, k)
			}
		}
	}
	w.pending[d] = &teeWait{done: make(chan struct{}), since: now}
}

// finish ends d's analysis (stored, or deferred to a registry read).
func (w *teeWaits) finish(d digest.Digest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p, ok := w.pending[d]; ok {
		close(p.done)
		delete(w.pending, d)
	}
}

// len is the number of layers being waited for.
func (w *teeWaits) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// wait blocks while d is being analysed, at most max; it reports whether
// it waited for an analysis that ended.
func (w *teeWaits) wait(ctx context.Context, d digest.Digest, max time.Duration) bool {
	w.mu.Lock()
	p, ok := w.pending[d]
	w.mu.Unlock()
	if !ok {
		return false
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// trackedTeer marks in teeWaits the blobs the tee will report on: those
// whose first bytes look like a layer (scan.LooksLikeLayer, the tee's own
// test; other blobs — configs, signatures — it drops without a callback).
// It marks before the tee can report: at UploadDone (which may report a
// detached blob at once) and before a pull sink's Done. The tee reports a
// digest's deferral once: an upload of a digest whose deferral stands
// (reporter) is not marked, as no report would end the mark; its image
// scan reads the layer from the registry (or the tee's store, if this
// upload's analysis commits first).
type trackedTeer struct {
	inner scan.Teer
	waits *teeWaits

	heads uploadSessions[*headSink] // each open session's first bytes
}

// reporter is tee.Teer's Reported: whether d's deferral was reported and
// stands, so the tee will not report d again for now.
type reporter interface {
	Reported(d digest.Digest) bool
}

// reported is whether inner will not report d (its deferral stands).
func (t *trackedTeer) reported(d digest.Digest) bool {
	r, ok := t.inner.(reporter)
	return ok && r.Reported(d)
}

func newTrackedTeer(inner scan.Teer, waits *teeWaits) *trackedTeer {
	return &trackedTeer{inner: inner, waits: waits}
}

// maxTrackedSessions bounds the upload sessions a Teer wrapper tracks
// (abandoned ones are dropped wholesale past it; their layers are then only
// read again).
const maxTrackedSessions = 4096

// uploadSessions holds a value per open upload session (repository and
// session id) from its first request to its end, at most maxTrackedSessions
// of them. Safe for concurrent use; the zero value is ready.
type uploadSessions[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

func (u *uploadSessions[T]) put(repo, session string, v T) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil || len(u.m) >= maxTrackedSessions {
		u.m = map[string]T{}
	}
	u.m[repo+"\x00"+session] = v
}

// take removes and returns the session's value.
func (u *uploadSessions[T]) take(repo, session string) (T, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := repo + "\x00" + session
	v, ok := u.m[k]
	delete(u.m, k)
	return v, ok
}

func (t *trackedTeer) Pull(ctx context.Context, repo string, d digest.Digest, size int64) scan.BlobSink {
	s := t.inner.Pull(ctx, repo, d, size)
	if s == nil {
		return nil
	}
	return &headSink{inner: s, onDone: func(h *headSink, complete bool) {
		if complete && h.layer() {
			t.waits.start(d)
		}
	}}
}

func (t *trackedTeer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	s := t.inner.Upload(ctx, repo, session, offset)
	if s == nil || offset != 0 {
		return s
	}
	h := &headSink{inner: s}
	t.heads.put(repo, session, h)
	return h
}

func (t *trackedTeer) UploadDone(ctx context.Context, repo, session string, d digest.Digest) {
	h, _ := t.heads.take(repo, session)
	if d != "" && h != nil && h.layer() && !t.reported(d) {
		t.waits.start(d)
	}
	t.inner.UploadDone(ctx, repo, session, d)
}

// headSink keeps the first bytes written to a sink.
type headSink struct {
	inner  scan.BlobSink
	onDone func(h *headSink, complete bool)

	mu   sync.Mutex
	head []byte
}

const headBytes = 262 // what scan.LooksLikeLayer looks at (tar magic at 257)

func (h *headSink) Write(p []byte) (int, error) {
	h.mu.Lock()
	if n := headBytes - len(h.head); n > 0 {
		h.head = append(h.head, p[:min(n, len(p))]...)
	}
	h.mu.Unlock()
	return h.inner.Write(p)
}

func (h *headSink) Done(complete bool) {
	if h.onDone != nil {
		h.onDone(h, complete)
	}
	h.inner.Done(complete)
}

func (h *headSink) layer() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return scan.LooksLikeLayer(h.head)
}

// waitingCache is the Assembler's layer cache: on a miss for a layer the
// tee is still analysing it waits for that analysis and looks again.
type waitingCache struct {
	*index.Inventories
	waits *teeWaits
	max   time.Duration
}

func (c waitingCache) GetLayer(ctx context.Context, d digest.Digest, av string) (*scan.LayerInventory, error) {
	li, err := c.Inventories.GetLayer(ctx, d, av)
	if err == nil && li != nil {
		return li, nil
	}
	if c.waits.wait(ctx, d, c.max) {
		return c.Inventories.GetLayer(ctx, d, av)
	}
	return li, err
}
