package lifecycle

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// blobFetcher serves the manifests and blobs of in-memory images, as the
// registry does for PipelineScanner.
type blobFetcher struct {
	manifests map[digest.Digest][]byte
	blobs     map[digest.Digest][]byte
}

func (f *blobFetcher) Fetch(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) {
	b, ok := f.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, index.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (f *blobFetcher) FetchManifest(_ context.Context, _ string, d digest.Digest) ([]byte, string, error) {
	b, ok := f.manifests[d]
	if !ok {
		return nil, "", fmt.Errorf("manifest %s: %w", d, index.ErrNotFound)
	}
	return b, string(types.OCIManifestSchema1), nil
}

// add stores img's manifest, config and layers and returns its digest.
func (f *blobFetcher) add(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	raw, err := img.RawManifest()
	require.NoError(t, err)
	d := digest.FromBytes(raw)
	f.manifests[d] = raw
	cfg, err := img.RawConfigFile()
	require.NoError(t, err)
	f.blobs[digest.FromBytes(cfg)] = cfg
	layers, err := img.Layers()
	require.NoError(t, err)
	for _, l := range layers {
		rc, err := l.Compressed()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		f.blobs[digest.FromBytes(b)] = b
	}
	return d
}

// tarLayer is a gzip OCI layer holding files (path → content).
func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	require.NoError(t, err)
	return l
}

func ociImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	require.NoError(t, err)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64",
		RootFS: mustConfig(t, img).RootFS})
	require.NoError(t, err)
	return img
}

func mustConfig(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	c, err := img.ConfigFile()
	require.NoError(t, err)
	return c
}

const lodash = `{"name":"lodash","version":"4.17.15"}`

// pipelineHarness is a Service whose scanner is the real pipeline (analyzers,
// Assembler, stored inventories, Rematcher and findings in Badger), with one
// npm advisory for lodash < 4.17.19.
func pipelineHarness(t *testing.T) (*harness, *blobFetcher, *index.FindingStore) {
	t.Helper()
	f := &blobFetcher{manifests: map[digest.Digest][]byte{}, blobs: map[digest.Digest][]byte{}}
	var store *index.FindingStore
	h := newHarness(t, nil, func(o *Options) {
		ctx := context.Background()
		adv := index.NewAdvisoryStore(o.DB, zerolog.Nop())
		_, err := adv.Import(ctx, "npm", []match.Advisory{{ID: "GHSA-lodash", Modified: t0, Aliases: []string{"CVE-2020-8203"},
			Affected: []match.Affected{{Package: match.AffectedPackage{Ecosystem: "npm", Name: "lodash"},
				Ranges: []match.Range{{Type: match.RangeEcosystem, Events: []match.Event{{Introduced: "0"}, {Fixed: "4.17.19"}}}}}}}},
			index.ImportOptions{Now: t0})
		require.NoError(t, err)
		store = index.NewFindingStore(o.DB)
		invs := index.NewInventories(o.DB)
		o.Findings = Findings{Store: store}
		o.Scanner = PipelineScanner{
			Assembler: scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), Cache: invs}),
			Fetcher:   f, Inventories: invs,
			Rematcher: &index.Rematcher{Advisories: adv, Packages: index.NewPkgIndex(o.DB), Findings: store},
		}
	})
	return h, f, store
}

func activeFindings(t *testing.T, store *index.FindingStore, d digest.Digest) []string {
	t.Helper()
	fs, err := store.ForImage(context.Background(), d)
	require.NoError(t, err)
	var out []string
	for _, f := range fs {
		if f.Status == scan.FindingActive {
			out = append(out, f.Package.Name+" "+f.VulnerabilityID)
		}
	}
	return out
}

// A corrupt layer never shows as a clean scan: the image stays ACTIVE
// (monitored; the readable layers' findings stand) with reason CORRUPT_LAYER
// and a message naming the layer and what failed — also after a rescan.
func TestPipelineCorruptLayerIsReportedNotSuccessful(t *testing.T) {
	h, f, store := pipelineHarness(t)
	garbage := static.NewLayer([]byte("this is not a gzip stream, nor a tar archive: just garbage bytes"), types.OCILayer)
	bad, err := garbage.Digest()
	require.NoError(t, err)
	d := f.add(t, ociImage(t, tarLayer(t, map[string]string{"app/node_modules/lodash/package.json": lodash}), garbage))

	h.push("app", d)
	h.drain()
	cov := h.cov(d)
	assert.Equal(t, "ACTIVE/CORRUPT_LAYER", h.status(d))
	assert.Contains(t, cov.Message, bad.String(), "the message names the layer")
	assert.Contains(t, cov.Message, bad.String()+": CORRUPT_LAYER: ", "the message says what failed")
	assert.NotNil(t, cov.LastScannedAt, "the readable layers were scanned")
	assert.Equal(t, []string{"lodash CVE-2020-8203"}, activeFindings(t, store, d), "findings from readable layers stand")

	n, err := h.svc.OnAdvisoryDelta(h.ctx, []digest.Digest{d})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "still monitored: advisory deltas rescan it")
	h.drain()
	assert.Equal(t, "ACTIVE/CORRUPT_LAYER", h.status(d), "a rescan of the stored inventory keeps the reason")
	assert.Contains(t, h.cov(d).Message, bad.String())
}

// An OS without an advisory source is UNSUPPORTED_OS (INACTIVE, as
// Inspector shows it), its language packages still matched; a supported OS
// and an image without os-release are SUCCESSFUL.
func TestPipelineUnsupportedOS(t *testing.T) {
	tests := []struct {
		name      string
		osRelease string // "" = no os-release
		want      string
		message   string
	}{
		{"arch linux", "ID=arch\nNAME=\"Arch Linux\"\nPRETTY_NAME=\"Arch Linux\"\n", "INACTIVE/UNSUPPORTED_OS", "Arch Linux"},
		{"alpine 3.18.9", "ID=alpine\nVERSION_ID=3.18.9\nPRETTY_NAME=\"Alpine Linux v3.18\"\n", "ACTIVE/SUCCESSFUL", ""},
		{"no os-release (static)", "", "ACTIVE/SUCCESSFUL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, store := pipelineHarness(t)
			files := map[string]string{"app/node_modules/lodash/package.json": lodash}
			if tt.osRelease != "" {
				files["etc/os-release"] = tt.osRelease
			}
			d := f.add(t, ociImage(t, tarLayer(t, files)))
			h.push("app", d)
			h.drain()
			assert.Equal(t, tt.want, h.status(d))
			cov := h.cov(d)
			if tt.message == "" {
				assert.Empty(t, cov.Message)
			} else {
				assert.Contains(t, cov.Message, tt.message)
			}
			assert.NotNil(t, cov.LastScannedAt, "its findings are those of a scan")
			assert.Equal(t, []string{"lodash CVE-2020-8203"}, activeFindings(t, store, d), "language packages are matched")
		})
	}
}

// An UNSUPPORTED_OS image's language findings follow the eligibility
// windows like any monitored image's: closed when they lapse.
func TestUnsupportedOSFindingsExpire(t *testing.T) {
	h, f, store := pipelineHarness(t)
	d := f.add(t, ociImage(t, tarLayer(t, map[string]string{"etc/os-release": "ID=arch\n",
		"app/node_modules/lodash/package.json": lodash})))
	h.push("app", d)
	h.drain()
	require.Equal(t, "INACTIVE/UNSUPPORTED_OS", h.status(d))
	require.Len(t, activeFindings(t, store, d), 1)
	h.clock.Advance(15 * day)
	h.sweep()
	assert.Equal(t, "INACTIVE/SCAN_ELIGIBILITY_EXPIRED", h.status(d))
	assert.Empty(t, activeFindings(t, store, d), "findings closed")
}

// A partly scanned image keeps its reason and message when its repository
// moves from CONTINUOUS_SCAN to SCAN_ON_PUSH; only the frequency changes.
func TestPartialScanFollowsFrequencyChange(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("partial")
	msg := "layer sha256:0123: CORRUPT_LAYER: unexpected EOF"
	h.scanner.result[d] = Result{Reason: scan.ReasonCorruptLayer, Message: msg}
	h.push("app", d)
	h.drain()
	require.Equal(t, "ACTIVE/CORRUPT_LAYER", h.status(d))
	_, err := h.svc.PutRegistryScanningConfiguration(h.ctx, RegistryScanningConfiguration{ScanType: ScanTypeEnhanced,
		Rules: []index.ScanningRule{rule(FreqScanOnPush, "*")}})
	require.NoError(t, err)
	h.sweep()
	assert.Equal(t, "ACTIVE/CORRUPT_LAYER", h.status(d))
	assert.Equal(t, FreqScanOnPush, h.cov(d).ScanFrequency)
	assert.Equal(t, msg, h.cov(d).Message)
}
