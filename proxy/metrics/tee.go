package metrics

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/tee"
)

// CountTee wraps t so that every blob handed to analysis counts in
// tollgate_tee_handoffs_total: each pull that gets a sink, and each upload
// session whose first request (offset 0) gets one. A nil registry or t
// returns t.
func (r *Registry) CountTee(t scan.Teer) scan.Teer {
	if r == nil || t == nil {
		return t
	}
	return countingTeer{t: t, r: r}
}

type countingTeer struct {
	t scan.Teer
	r *Registry
}

func (c countingTeer) Pull(ctx context.Context, repo string, dgst digest.Digest, size int64) scan.BlobSink {
	s := c.t.Pull(ctx, repo, dgst, size)
	if s != nil {
		c.r.TeeHandoff()
	}
	return s
}

func (c countingTeer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	s := c.t.Upload(ctx, repo, session, offset)
	if s != nil && offset == 0 {
		c.r.TeeHandoff()
	}
	return s
}

func (c countingTeer) UploadDone(ctx context.Context, repo, session string, dgst digest.Digest) {
	c.t.UploadDone(ctx, repo, session, dgst)
}

// CountDeferred wraps a tee.Options.Deferred callback (next may be nil):
// each call counts a deferred scan by reason, and, unless the blob was never
// teed because every worker was busy, a tee detach by reason.
func (r *Registry) CountDeferred(next func(ctx context.Context, repo string, d digest.Digest, reason string)) func(ctx context.Context, repo string, d digest.Digest, reason string) {
	return func(ctx context.Context, repo string, d digest.Digest, reason string) {
		r.DeferredScan(reason)
		if reason != tee.ReasonBusy {
			r.TeeDetach(reason)
		}
		if next != nil {
			next(ctx, repo, d, reason)
		}
	}
}
