package main

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/scan"
)

// TestServeScanEndToEnd: with serve's wiring, the background advisory
// refresh imports a feed, a push through the proxy is scanned from the
// layers the tee analysed (no registry read of the layer, no pull
// recorded), a pull does not re-read the layer, an imported delta rescans
// only the affected image, and archiving closes the findings and makes
// the image unpullable.
func TestServeScanEndToEnd(t *testing.T) {
	// An osv.dev-layout feed: Alpine/all.zip holds the advisory, the rest 404.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("TEST-2026-0101.json")
	_, _ = w.Write([]byte(osvAdvisory("2026-01-01T00:00:00Z", "musl test advisory")))
	_ = zw.Close()
	feed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/Alpine/all.zip" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(zb.Bytes())
	}))
	defer feed.Close()
	e := startScanEnv(t, func(c *config.Config) {
		c.DB.BaseURL = feed.URL
		c.DB.Ecosystems = []string{"Alpine", "Go"} // Go 404s: a failed source only logs
		c.DB.RefreshInterval = time.Hour
	})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Second)

	imgA, layerA := apkImage(t, "musl 1.2.4-r1", "busybox 1.36.1-r2")
	imgB, _ := apkImage(t, "zlib 1.2.13-r1")
	dA := e.push(t, "team/alpine:a", imgA)
	dB := e.push(t, "team/alpine:b", imgB)

	// The refresh may land before or after the first scan: either way the
	// finding appears (a delta rescans an indexed image).
	eventually(t, "finding from the refreshed feed", func() (bool, string) {
		fs := e.findings(t, dA)
		return hasFinding(fs, "CVE-2026-0101", scan.FindingActive), fmt.Sprintf("%+v", fs)
	})
	covA := e.scanned(t, dA, t0)
	covB := e.scanned(t, dB, t0)
	if fs := e.findings(t, dB); len(fs) != 0 {
		t.Fatalf("image without musl has findings: %+v", fs)
	}
	if covA.ScanFrequency != "CONTINUOUS_SCAN" || covA.Repository != "team/alpine" || covA.Platform.String() != "linux/amd64" {
		t.Fatalf("coverage %+v", covA)
	}
	if n := e.fetches.reads(layerA); n != 0 {
		t.Fatalf("the layer the tee analysed was read %d times from the registry", n)
	}
	rec, err := e.s.records.Image(ctx, dA)
	if err != nil || rec.Repo("team/alpine").PullCount != 0 {
		t.Fatalf("the scan's registry reads were recorded as pulls: %+v %v", rec, err)
	}

	// The admin API lists the finding (Inspector's ListFindings).
	ic := inspector2.New(inspector2.Options{BaseEndpoint: aws.String(e.adm.URL), Region: "us-east-1",
		HTTPClient: &http.Client{Transport: tokenTransport{tok: "t0ken"}}, RetryMaxAttempts: 1, Credentials: aws.AnonymousCredentials{}})
	lf, err := ic.ListFindings(ctx, &inspector2.ListFindingsInput{})
	if err != nil || len(lf.Findings) != 1 || aws.ToString(lf.Findings[0].PackageVulnerabilityDetails.VulnerabilityId) != "CVE-2026-0101" {
		t.Fatalf("ListFindings: %+v %v", lf, err)
	}

	// A pull through the proxy: served, recorded, and the layer not re-read
	// (the tee knows it; the image is already scanned).
	ref, _ := name.ParseReference(e.host+"/team/alpine:a", name.Insecure)
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := pulled.Layers()
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if n := e.fetches.reads(layerA); n != 0 {
		t.Fatalf("layer read %d times from the registry after a pull", n)
	}
	if rec, _ := e.s.records.Image(ctx, dA); rec.Repo("team/alpine").PullCount != 1 {
		t.Fatalf("pull count %d, want 1", rec.Repo("team/alpine").PullCount)
	}

	// A delta (new modified) through the admin endpoint: only A is rescanned.
	covA = e.coverage(t, dA)
	delta := filepath.Join(t.TempDir(), "TEST-2026-0101.json")
	if err := os.WriteFile(delta, []byte(osvAdvisory("2026-02-01T00:00:00Z", "musl test advisory, revised")), 0o600); err != nil {
		t.Fatal(err)
	}
	res := e.dbImport(t, delta)
	if len(res.Results) != 1 || len(res.Results[0].Delta.Changed) != 1 {
		t.Fatalf("import results %+v", res.Results)
	}
	e.scanned(t, dA, *covA.LastScannedAt)
	eventually(t, "queue drained", func() (bool, string) {
		n, err := e.s.lifecycle.Queue().Len(ctx)
		return err == nil && n == 0, fmt.Sprintf("%d jobs %v", n, err)
	})
	if got := e.coverage(t, dB); !got.LastScannedAt.Equal(*covB.LastScannedAt) {
		t.Fatalf("image B rescanned by a delta that does not concern it: %v → %v", covB.LastScannedAt, got.LastScannedAt)
	}
	if n := e.fetches.reads(layerA); n != 0 {
		t.Fatalf("the rescan read the layer %d times", n)
	}

	// Archive through the lifecycle: unpullable, findings closed.
	if err := e.s.lifecycle.Archive(ctx, "team/alpine", dA); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.reg.URL + "/v2/team/alpine/manifests/a")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !bytes.Contains(body, []byte("MANIFEST_UNKNOWN")) {
		t.Fatalf("archived manifest GET: %d %s", resp.StatusCode, body)
	}
	fs := e.findings(t, dA)
	if len(fs) == 0 || !hasFinding(fs, "CVE-2026-0101", scan.FindingClosed) || hasFinding(fs, "CVE-2026-0101", scan.FindingActive) {
		t.Fatalf("findings after archive: %+v", fs)
	}
	if c := e.coverage(t, dA); c.StatusCode != "INACTIVE" || c.Reason != scan.ReasonImageArchived {
		t.Fatalf("coverage after archive: %+v", c)
	}
}

// TestServeScanTeeDetached: when the tee detaches every blob (a one-byte
// buffer), the image is still scanned, its layer read from the registry.
func TestServeScanTeeDetached(t *testing.T) {
	e := startScanEnv(t, func(c *config.Config) { c.Scan.TeeBufferBytes = 1 })
	dir := t.TempDir()
	adv := filepath.Join(dir, "TEST-2026-0101.json")
	if err := os.WriteFile(adv, []byte(osvAdvisory("2026-01-01T00:00:00Z", "musl")), 0o600); err != nil {
		t.Fatal(err)
	}
	// `tollgate db import` against the running server's data directory
	// fails on Badger's directory lock; --admin-url imports through it.
	if _, err := runClient(t, "db", "import", "--data-dir", e.s.cfg.DataDir, adv); err == nil || !strings.Contains(err.Error(), "--admin-url") {
		t.Fatalf("local import while serving: %v", err)
	}
	out, err := runClient(t, "db", "import", "--admin-url", e.adm.URL, "--token", "t0ken", "--format", "json", adv)
	if err != nil || !strings.Contains(out, `"source": "Alpine"`) {
		t.Fatalf("db import --admin-url: %v\n%s", err, out)
	}
	// Through the server, as locally: files that are not advisories are
	// counted on stderr.
	if err := os.WriteFile(filepath.Join(dir, "NOTES.txt"), []byte("not an advisory"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runClientStderr(t, "db", "import", "--admin-url", e.adm.URL, "--token", "t0ken", dir)
	if err != nil || !strings.Contains(out, "Alpine") || !strings.Contains(stderr, dir+": 1 files skipped (not OSV or secdb)") {
		t.Fatalf("db import --admin-url DIR: %v\n%s\nstderr: %s", err, out, stderr)
	}
	img, layer := apkImage(t, "musl 1.2.4-r1")
	d := e.push(t, "detached/alpine:1", img)
	e.scanned(t, d, time.Time{})
	if !hasFinding(e.findings(t, d), "CVE-2026-0101", scan.FindingActive) {
		t.Fatalf("findings %+v", e.findings(t, d))
	}
	if n := e.fetches.reads(layer); n != 1 {
		t.Fatalf("detached layer read %d times from the registry, want 1", n)
	}
}

// TestServeScanDisabled: scan.enabled false wires no tee and no lifecycle,
// and pushes work.
func TestServeScanDisabled(t *testing.T) {
	f := false
	e := startScanEnv(t, func(c *config.Config) { c.Scan.Enabled = &f })
	if e.s.proxy.Teer != nil || e.s.lifecycle != nil || e.s.imageScanner != nil {
		t.Fatal("scanning wired while disabled")
	}
	img, _ := apkImage(t, "musl 1.2.4-r1")
	e.push(t, "off/alpine:1", img)
}

// TestServeComponentsOrder: wireScan runs before the components that read
// s.imageScanner and s.lifecycle.
func TestServeComponentsOrder(t *testing.T) {
	pos := map[uintptr]int{}
	for i, c := range components() {
		pos[reflect.ValueOf(c).Pointer()] = i + 1
	}
	scanAt := pos[reflect.ValueOf(component(wireScan)).Pointer()]
	if scanAt == 0 || scanAt > pos[reflect.ValueOf(component(wirePolicy)).Pointer()] ||
		scanAt > pos[reflect.ValueOf(component(wireAdminAPI)).Pointer()] || scanAt < pos[reflect.ValueOf(component(wireEvents)).Pointer()] {
		t.Fatalf("component order: %v", pos)
	}
}

// TestScanFetcherAccessDenied: an upstream that refuses gives an error the
// scanner maps to ACCESS_DENIED.
func TestScanFetcherAccessDenied(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"no"}]}`))
	}))
	defer up.Close()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Upstream.URL = up.URL
	cfg.Upstream.Username, cfg.Upstream.Password = "u", "p"
	s := &server{cfg: cfg, log: zerolog.Nop()}
	defer func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			_ = s.closers[i](context.Background())
		}
	}()
	if err := wireCore(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	f, err := s.newImageFetcher()
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("x")
	_, _, err = f.FetchManifest(context.Background(), "team/app", d)
	if err == nil || !accessDenied(err) {
		t.Fatalf("manifest: %v (access denied: %v)", err, accessDenied(err))
	}
	_, err = f.Fetch(context.Background(), "team/app", d)
	if err == nil || !accessDenied(err) {
		t.Fatalf("blob: %v", err)
	}
}

// TestServeScanMirrorUpstreamAuth: in mirror mode the first pull of an
// image scans it, the fetcher reading the upstream with the configured
// credentials (the upstream refuses anonymous reads).
func TestServeScanMirrorUpstreamAuth(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "puller" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer up.Close()
	img, _ := apkImage(t, "musl 1.2.4-r1")
	upRef, _ := name.ParseReference(strings.TrimPrefix(up.URL, "http://")+"/team/alpine:a", name.Insecure)
	if err := remote.Write(upRef, img, remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	e := startScanEnv(t, func(c *config.Config) {
		c.Upstream.URL, c.Upstream.Mirror = up.URL, true
		c.Upstream.Username, c.Upstream.Password = "puller", "s3cret"
	})
	adv := filepath.Join(t.TempDir(), "TEST-2026-0101.json")
	if err := os.WriteFile(adv, []byte(osvAdvisory("2026-01-01T00:00:00Z", "musl")), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	ref, _ := name.ParseReference(e.host+"/team/alpine:a", name.Insecure)
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest(desc.Digest.String())
	e.scanned(t, d, time.Time{})
	if !hasFinding(e.findings(t, d), "CVE-2026-0101", scan.FindingActive) {
		t.Fatalf("findings %+v", e.findings(t, d))
	}
	if rec, err := e.s.records.Image(context.Background(), d); err != nil || rec.Repo("team/alpine").PullCount != 1 {
		t.Fatalf("record %+v %v: the scan's reads must not count as pulls", rec, err)
	}
}

// TestServeScanTeeWaitsSettle: only blobs the tee reports on are waited
// for — a config or a blob that is not a tar never leaves a scan waiting —
// and every wait ends once the tee is done.
func TestServeScanTeeWaitsSettle(t *testing.T) {
	e := startScanEnv(t, nil)
	pushImage(t, e.reg.URL, "plain/app", "v1", "not a tar at all") // config + a non-tar "layer"
	if n := e.parts.waits.len(); n != 0 {
		t.Fatalf("%d blobs waited for after pushing blobs the tee drops", n)
	}
	img, _ := apkImage(t, "musl 1.2.4-r1")
	d := e.push(t, "settle/alpine:1", img)
	e.scanned(t, d, time.Time{})
	e.parts.teer.Wait()
	if n := e.parts.waits.len(); n != 0 {
		t.Fatalf("%d waits left after the tee finished", n)
	}
}

// TestServeScanUpstreamIndex: in --upstream mode an image index pushed
// through the proxy has each child scanned (read from the upstream for
// what the tee did not keep), coverage asked by the index digest.
func TestServeScanUpstreamIndex(t *testing.T) {
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer up.Close()
	e := startScanEnv(t, func(c *config.Config) { c.Upstream.URL = up.URL })
	adv := filepath.Join(t.TempDir(), "TEST-2026-0101.json")
	if err := os.WriteFile(adv, []byte(osvAdvisory("2026-01-01T00:00:00Z", "musl")), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	amd, _ := apkImage(t, "musl 1.2.4-r1")
	arm, _ := apkImage(t, "musl 1.2.4-r2") // fixed
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	ref, _ := name.ParseReference(e.host+"/multi/alpine:3.18", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	dAmd, _ := amd.Digest()
	dArm, _ := arm.Digest()
	for _, d := range []v1.Hash{dAmd, dArm} {
		e.scanned(t, digest.Digest(d.String()), time.Time{})
	}
	cs, err := e.s.lifecycle.Coverage(context.Background(), digest.Digest(id.String()))
	if err != nil || len(cs) != 2 {
		t.Fatalf("coverage by index digest: %+v %v", cs, err)
	}
	if !hasFinding(e.findings(t, digest.Digest(dAmd.String())), "CVE-2026-0101", scan.FindingActive) ||
		len(e.findings(t, digest.Digest(dArm.String()))) != 0 {
		t.Fatalf("findings amd64 %+v arm64 %+v", e.findings(t, digest.Digest(dAmd.String())), e.findings(t, digest.Digest(dArm.String())))
	}
}
