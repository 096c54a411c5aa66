package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// countingFetcher counts the registry reads of the scan's fetcher by digest.
type countingFetcher struct {
	inner imageFetcher
	mu    sync.Mutex
	blobs map[digest.Digest]int
}

func (c *countingFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	c.mu.Lock()
	c.blobs[d]++
	c.mu.Unlock()
	return c.inner.Fetch(ctx, repo, d)
}

func (c *countingFetcher) FetchManifest(ctx context.Context, repo string, d digest.Digest) ([]byte, string, error) {
	return c.inner.FetchManifest(ctx, repo, d)
}

func (c *countingFetcher) reads(d digest.Digest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[d]
}

// scanEnv is `tollgate serve` wired in-process (wireCore + the components
// in serve's order, background tasks running) with its listeners on
// httptest servers.
type scanEnv struct {
	s        *server
	reg, adm *httptest.Server
	host     string // registry host:port for image references
	parts    *scanParts
	fetches  *countingFetcher
	logs     *syncBuffer
}

func startScanEnv(t *testing.T, mut func(*config.Config)) *scanEnv {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Admin.Token = "t0ken"
	cfg.Scan.Workers = 4
	cfg.DB.RefreshInterval = 0
	if mut != nil {
		mut(&cfg)
	}
	e := &scanEnv{logs: &syncBuffer{}}
	s := &server{cfg: cfg, log: zerolog.New(e.logs)}
	e.s = s
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for i := len(s.closers) - 1; i >= 0; i-- {
			_ = s.closers[i](context.Background())
		}
	})
	if err := wireCore(ctx, s); err != nil {
		t.Fatal(err)
	}
	hooks := scanHooks{
		wrapFetcher: func(f imageFetcher) imageFetcher {
			e.fetches = &countingFetcher{inner: f, blobs: map[digest.Digest]int{}}
			return e.fetches
		},
		wired: func(p *scanParts) { e.parts = p },
	}
	wireScanHooked := func(ctx context.Context, s *server) error { return wireScanWith(ctx, s, hooks) }
	for _, c := range []component{wireAdminAuth, wireMetrics, wireEvents, wireScanHooked, wirePolicy, wireAdminAPI} {
		if err := c(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, task := range s.background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = task(ctx)
		}()
	}
	e.reg = httptest.NewServer(s.proxy)
	t.Cleanup(e.reg.Close)
	e.adm = httptest.NewServer(s.admin)
	t.Cleanup(e.adm.Close)
	e.host = strings.TrimPrefix(e.reg.URL, "http://")
	return e
}

// apkImage builds a one-layer Alpine v3.18 image whose apk database lists
// pkgs ("name version" pairs, origin = name).
func apkImage(t *testing.T, pkgs ...string) (v1.Image, digest.Digest) {
	t.Helper()
	var db strings.Builder
	for _, p := range pkgs {
		n, v, _ := strings.Cut(p, " ")
		fmt.Fprintf(&db, "P:%s\nV:%s\nA:x86_64\no:%s\n\n", n, v, n)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"etc/os-release", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\n"},
		{"lib/apk/db/installed", db.String()},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ld, err := layer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, digest.Digest(ld.String())
}

func (e *scanEnv) push(t *testing.T, repoTag string, img v1.Image) digest.Digest {
	t.Helper()
	ref, err := name.ParseReference(e.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, _ := img.Digest()
	return digest.Digest(d.String())
}

// eventually polls cond until it holds; the deadline only bounds a hang.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *scanEnv) coverage(t *testing.T, d digest.Digest) lifecycle.CoveredImage {
	t.Helper()
	cs, err := e.s.lifecycle.Coverage(context.Background(), d)
	if err != nil || len(cs) != 1 {
		return lifecycle.CoveredImage{Reason: scan.Reason(fmt.Sprintf("coverage: %d entries, %v", len(cs), err))}
	}
	return cs[0]
}

// scanned waits until d's coverage is ACTIVE / SUCCESSFUL with lastScannedAt
// after since, and returns it.
func (e *scanEnv) scanned(t *testing.T, d digest.Digest, since time.Time) lifecycle.CoveredImage {
	t.Helper()
	var c lifecycle.CoveredImage
	eventually(t, "scan of "+d.String(), func() (bool, string) {
		c = e.coverage(t, d)
		ok := c.StatusCode == "ACTIVE" && c.Reason == scan.ReasonSuccessful && c.LastScannedAt != nil && c.LastScannedAt.After(since)
		return ok, fmt.Sprintf("%s/%s %s lastScannedAt=%v", c.StatusCode, c.Reason, c.Message, c.LastScannedAt)
	})
	return c
}

func (e *scanEnv) findings(t *testing.T, d digest.Digest) []scan.Finding {
	t.Helper()
	fs, err := index.NewFindingStore(e.s.db).ForImage(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func osvAdvisory(modified, summary string) string {
	return `{"schema_version":"1.6.0","id":"TEST-2026-0101","modified":"` + modified + `","aliases":["CVE-2026-0101"],
	 "summary":"` + summary + `","affected":[{"package":{"ecosystem":"Alpine:v3.18","name":"musl"},
	 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2.4-r2"}]}]}]}`
}

// dbImport posts paths to the admin API's POST /v1/db/import.
func (e *scanEnv) dbImport(t *testing.T, paths ...string) admin.DBImportResponse {
	t.Helper()
	body, _ := json.Marshal(admin.DBImportRequest{Paths: paths})
	req, _ := http.NewRequest(http.MethodPost, e.adm.URL+"/v1/db/import", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/db/import: %d %s", resp.StatusCode, b)
	}
	var out admin.DBImportResponse
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func hasFinding(fs []scan.Finding, vuln string, st scan.FindingStatus) bool {
	for _, f := range fs {
		if f.VulnerabilityID == vuln && f.Status == st {
			return true
		}
	}
	return false
}
