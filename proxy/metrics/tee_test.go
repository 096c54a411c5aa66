package metrics

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/tee"
)

type sink struct{}

func (sink) Write(p []byte) (int, error) { return len(p), nil }
func (sink) Done(bool)                   {}

// fakeTeer tees only blobs named "yes".
type fakeTeer struct{ done int }

func (f *fakeTeer) Pull(_ context.Context, repo string, _ digest.Digest, _ int64) scan.BlobSink {
	if repo == "yes" {
		return sink{}
	}
	return nil
}

func (f *fakeTeer) Upload(_ context.Context, repo, _ string, _ int64) scan.BlobSink {
	if repo == "yes" {
		return sink{}
	}
	return nil
}

func (f *fakeTeer) UploadDone(context.Context, string, string, digest.Digest) { f.done++ }

func TestTeeCounters(t *testing.T) {
	ctx := context.Background()
	r := New()
	inner := &fakeTeer{}
	ct := r.CountTee(inner)
	require.NotNil(t, ct.Pull(ctx, "yes", "", 1))
	require.Nil(t, ct.Pull(ctx, "no", "", 1))
	require.NotNil(t, ct.Upload(ctx, "yes", "s1", 0))
	require.NotNil(t, ct.Upload(ctx, "yes", "s1", 100), "later requests of the session are the same hand-off")
	require.Nil(t, ct.Upload(ctx, "no", "s2", 0))
	ct.UploadDone(ctx, "yes", "s1", "")
	require.Equal(t, 1, inner.done)

	var got []string
	d := r.CountDeferred(func(_ context.Context, _ string, _ digest.Digest, reason string) { got = append(got, reason) })
	d(ctx, "r", "", tee.ReasonBehind)
	d(ctx, "r", "", tee.ReasonBusy)
	require.Equal(t, []string{tee.ReasonBehind, tee.ReasonBusy}, got)

	out := scrape(t, r.Handler())
	require.Contains(t, out, "tollgate_tee_handoffs_total 2")
	require.Contains(t, out, `tollgate_deferred_scans_total{reason="`+tee.ReasonBusy+`"} 1`)
	require.Contains(t, out, `tollgate_deferred_scans_total{reason="`+tee.ReasonBehind+`"} 1`)
	require.Contains(t, out, `tollgate_tee_detaches_total{reason="`+tee.ReasonBehind+`"} 1`)
	require.NotContains(t, out, `tollgate_tee_detaches_total{reason="`+tee.ReasonBusy+`"}`)

	var none *Registry
	require.Equal(t, scan.Teer(inner), none.CountTee(inner))
}
