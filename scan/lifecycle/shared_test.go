package lifecycle

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// sharedDir returns the shared test material (env TOLLGATE_SHARED, default
// ../shared beside the repository), skipping loudly when absent unless CI=true.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("TOLLGATE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "images", "INDEX.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %s (set TOLLGATE_SHARED): %v", d, err)
		}
		t.Skipf("!!! SKIPPING: shared test material not found at %s (set TOLLGATE_SHARED) !!!", d)
	}
	return d
}

// layoutFetcher reads blobs and manifests from an OCI image layout, standing
// in for the registry behind the proxy.
type layoutFetcher struct{ dir string }

func (l layoutFetcher) path(d digest.Digest) string {
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func (l layoutFetcher) Fetch(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) {
	return os.Open(l.path(d))
}

func (l layoutFetcher) FetchManifest(_ context.Context, _ string, d digest.Digest) ([]byte, string, error) {
	b, err := os.ReadFile(l.path(d))
	if err != nil {
		return nil, "", err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(b, &probe)
	return b, probe.MediaType, nil
}

// TestSharedAlpineThroughRealStores runs the lifecycle over the real
// records, inventories, package index, findings, advisories and assembler
// with the shared Alpine images: push, scan (index children with their
// platforms), an advisory import whose delta rescans only the concerned
// image, then archive closing its findings.
func TestSharedAlpineThroughRealStores(t *testing.T) {
	shared := sharedDir(t)
	ctx := context.Background()
	layout := layoutFetcher{dir: filepath.Join(shared, "images", "alpine")}
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	defer db.Close()
	clock := &fakeClock{t: time.Now().UTC()}
	records := index.NewRecords(db, index.RecordsOptions{})
	invs := index.NewInventories(db)
	pix := index.NewPkgIndex(db)
	fstore := index.NewFindingStore(db)
	advs := index.NewAdvisoryStore(db, zerolog.Nop())
	rematcher := &index.Rematcher{Advisories: advs, Packages: pix, Findings: fstore, Now: clock.Now}
	asm := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), Cache: invs})
	svc := New(Options{DB: db, Logger: zerolog.Nop(), Clock: clock, Records: records, Recorder: records,
		Tags: ResolveFunc(records.Tag), Findings: Findings{Store: fstore}, Workers: 2,
		Scanner: PipelineScanner{Assembler: asm, Fetcher: layout, Inventories: invs, Rematcher: rematcher}})

	old := digest.Digest("sha256:ff0afcb6b02b7b6e23625468766153e90a107969126b55db495bc992e5625099")
	idx := digest.Digest("sha256:d3758eb1184a9cd6f7d1f35009cd1bf93e2bd446484ffb3c4fae64b2f5feab6c")
	push := func(d digest.Digest, tag string) {
		body, mt, err := layout.FetchManifest(ctx, "alpine", d)
		require.NoError(t, err)
		ev := index.Event{Kind: index.EventPush, Repository: "alpine", Digest: d, Tag: tag, MediaType: mt, Manifest: body, At: clock.Now()}
		require.NoError(t, records.Record(ctx, ev))
		require.NoError(t, svc.Observe(ctx, ev))
	}
	push(old, "3.11.13")
	idxBody, _, err := layout.FetchManifest(ctx, "alpine", idx)
	require.NoError(t, err)
	var il struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(idxBody, &il))
	for _, m := range il.Manifests {
		push(m.Digest, "")
	}
	push(idx, "3.18.9")
	require.NoError(t, svc.Drain(ctx))

	got, err := svc.Coverage(ctx, old)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, scan.ReasonSuccessful, got[0].Reason)
	assert.Equal(t, scan.Platform{OS: "linux", Architecture: "amd64"}, got[0].Platform)
	assert.Equal(t, []string{"3.11.13"}, got[0].Tags)
	scannedAt := *got[0].LastScannedAt

	children, err := svc.Coverage(ctx, idx)
	require.NoError(t, err)
	require.Len(t, children, 2, "each child of the index is covered")
	var plats []string
	for _, c := range children {
		assert.Equal(t, idx, c.Parent)
		assert.Equal(t, scan.ReasonSuccessful, c.Reason)
		plats = append(plats, c.Platform.String())
	}
	slices.Sort(plats)
	assert.Equal(t, []string{"linux/amd64", "linux/arm64/v8"}, plats)

	// Import the Alpine 3.11 secdb: its delta concerns only the 3.11 image.
	clock.Advance(time.Hour)
	up := &index.Updater{Store: advs}
	rs, _, err := up.Import(ctx, filepath.Join(shared, "vulndata", "alpine", "v3.11", "main.yaml"), true)
	require.NoError(t, err)
	var deltas []index.AdvisoryDelta
	for _, r := range rs {
		deltas = append(deltas, r.Delta)
	}
	n, err := svc.OnAdvisoryDeltas(ctx, pix, deltas...)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the 3.11 image has packages the delta names")
	j, err := svc.Queue().Get(ctx, old.String())
	require.NoError(t, err)
	assert.Equal(t, []string{TriggerDelta}, j.Triggers)
	require.NoError(t, svc.Drain(ctx))

	got, err = svc.Coverage(ctx, old)
	require.NoError(t, err)
	assert.Equal(t, scannedAt.Add(time.Hour), *got[0].LastScannedAt, "rescanned by the delta")

	// The 2020 secdb predates 3.11.13's fixes (no hits, INDEX.md says); a
	// test advisory for its musl 1.1.24-r3 gives one, through a second delta.
	clock.Advance(time.Hour)
	osv := filepath.Join(t.TempDir(), "TEST-2026-0001.json")
	require.NoError(t, os.WriteFile(osv, []byte(`{"schema_version":"1.3.1","id":"TEST-2026-0001","modified":"2026-01-01T00:00:00Z",
	 "aliases":["CVE-2026-0001"],"summary":"test advisory","affected":[{"package":{"ecosystem":"Alpine:v3.11","name":"musl"},
	 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.24-r4"}]}]}]}`), 0o600))
	rs, _, err = up.Import(ctx, osv, true)
	require.NoError(t, err)
	deltas = deltas[:0]
	for _, r := range rs {
		deltas = append(deltas, r.Delta)
	}
	n, err = svc.OnAdvisoryDeltas(ctx, pix, deltas...)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, svc.Drain(ctx))
	fs, err := fstore.ForImage(ctx, old)
	require.NoError(t, err)
	var pkgs []string
	for _, f := range fs {
		assert.Equal(t, "CVE-2026-0001", f.VulnerabilityID)
		assert.Equal(t, scan.FindingActive, f.Status)
		pkgs = append(pkgs, f.Package.Name)
	}
	slices.Sort(pkgs)
	assert.Equal(t, []string{"musl", "musl-utils"}, pkgs, "both binary packages of source musl")
	children2, err := svc.Coverage(ctx, idx)
	require.NoError(t, err)
	for i := range children2 {
		assert.Less(t, *children2[i].LastScannedAt, scannedAt.Add(time.Hour), "3.18 children not rescanned")
	}

	require.NoError(t, svc.Archive(ctx, "alpine", old))
	fs, err = fstore.ForImage(ctx, old)
	require.NoError(t, err)
	require.Len(t, fs, 2)
	for _, f := range fs {
		assert.Equal(t, scan.FindingClosed, f.Status)
	}
	rec, err := records.Image(ctx, old)
	require.NoError(t, err)
	assert.Equal(t, index.ImageArchived, rec.Repo("alpine").Status)
}
