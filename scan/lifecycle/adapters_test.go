package lifecycle

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

type fakeFetcher struct {
	manifest []byte
	mt       string
	err      error
	fetches  int
}

func (f *fakeFetcher) Fetch(context.Context, string, digest.Digest) (io.ReadCloser, error) {
	f.fetches++
	return nil, errors.New("no blobs here")
}

func (f *fakeFetcher) FetchManifest(context.Context, string, digest.Digest) ([]byte, string, error) {
	f.fetches++
	return f.manifest, f.mt, f.err
}

type fakeRematcher struct{ images []digest.Digest }

func (r *fakeRematcher) Image(_ context.Context, inv *scan.Inventory) (index.ReplaceResult, error) {
	r.images = append(r.images, inv.Image)
	return index.ReplaceResult{Created: make([]scan.Finding, len(inv.Packages))}, nil
}

func TestPipelineScanner(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	invs := index.NewInventories(h.db)
	asm := scan.NewAssembler(scan.AssemblerOptions{})
	stored := dg("stored")
	require.NoError(t, invs.PutImage(ctx, &scan.Inventory{Image: stored, AnalyzersVersion: asm.AnalyzersVersion(),
		Platform: scan.Platform{OS: "linux", Architecture: "arm64"}, OS: &scan.OSRelease{ID: "alpine"},
		Packages: []scan.Package{{Name: "musl", Version: "1.2.4-r2", Ecosystem: "Alpine:v3.18"}}}))

	t.Run("stored inventory is re-matched without any fetch", func(t *testing.T) {
		f, rm := &fakeFetcher{}, &fakeRematcher{}
		res, err := PipelineScanner{Assembler: asm, Fetcher: f, Inventories: invs, Rematcher: rm}.Scan(ctx, ScanRequest{Repository: "a", Image: stored, Rescan: true})
		require.NoError(t, err)
		assert.Equal(t, Result{Reason: scan.ReasonSuccessful, Platform: scan.Platform{OS: "linux", Architecture: "arm64"}, Findings: 1}, res)
		assert.Zero(t, f.fetches)
		assert.Equal(t, []digest.Digest{stored}, rm.images)
	})
	tests := []struct {
		name       string
		f          *fakeFetcher
		denied     bool
		reason     scan.Reason
		permanent  bool
		wantResult bool
	}{
		{"upstream 5xx is transient INTERNAL_ERROR", &fakeFetcher{err: errors.New("503")}, false, scan.ReasonInternalError, false, false},
		{"refused fetch is ACCESS_DENIED", &fakeFetcher{err: errors.New("401")}, true, scan.ReasonAccessDenied, false, false},
		{"unknown manifest media type is permanent", &fakeFetcher{manifest: []byte(`{"schemaVersion":2}`), mt: "application/vnd.example.thing+json"}, false, scan.ReasonUnsupportedMediaType, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PipelineScanner{Assembler: asm, Fetcher: tt.f, Inventories: invs, Rematcher: &fakeRematcher{},
				AccessDenied: func(err error) bool { return tt.denied }}
			_, err := p.Scan(ctx, ScanRequest{Repository: "a", Image: dg(tt.name)})
			var se *ScanError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.reason, se.Reason)
			assert.Equal(t, tt.permanent, se.Permanent)
		})
	}
}

func TestFindingsAdapterClosesThenDeletes(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	store := index.NewFindingStore(h.db)
	img, other := dg("img"), dg("other")
	for _, d := range []digest.Digest{img, other} {
		_, err := store.Replace(ctx, d, []scan.Finding{{ID: d.Encoded()[:8] + "-1", VulnerabilityID: "CVE-1"}, {ID: d.Encoded()[:8] + "-2", VulnerabilityID: "CVE-2"}}, t0)
		require.NoError(t, err)
	}
	f := Findings{Store: store}
	n, err := f.CloseAll(ctx, img, t0.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = f.DeleteClosed(ctx, img)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	left, err := store.ForImage(ctx, img)
	require.NoError(t, err)
	assert.Empty(t, left)
	kept, err := store.ForImage(ctx, other)
	require.NoError(t, err)
	assert.Len(t, kept, 2, "other images untouched")
	_, err = store.Get(ctx, img.Encoded()[:8]+"-1")
	assert.Error(t, err, "id index entry deleted too")
}
