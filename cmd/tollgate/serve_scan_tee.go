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

// trackedTeer marks the blobs handed to the tee in teeWaits. It marks
// before the inner call: UploadDone may report a deferred blob at once.
type trackedTeer struct {
	inner scan.Teer
	waits *teeWaits
}

func (t trackedTeer) Pull(ctx context.Context, repo string, d digest.Digest, size int64) scan.BlobSink {
	s := t.inner.Pull(ctx, repo, d, size)
	if s != nil {
		t.waits.start(d) // callbacks come only after the sink's Done
	}
	return s
}

func (t trackedTeer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	return t.inner.Upload(ctx, repo, session, offset)
}

func (t trackedTeer) UploadDone(ctx context.Context, repo, session string, d digest.Digest) {
	if d != "" {
		t.waits.start(d)
	}
	t.inner.UploadDone(ctx, repo, session, d)
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
