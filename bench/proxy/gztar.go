package main

// The -gztar mode: peak RSS of tollgate while it proxies and scans a large
// gzip tar layer (goal < 300 MB for 5 GB). The layer is generated once as a
// stream into a temp file (so the push is a plain stream from disk and
// nothing holds it in memory), then two fresh servers run:
//
//   - direct: the layer pushed and pulled against the embedded registry's
//     loopback port, the registry's own peak for comparison (same process,
//     scanning wired but nothing to analyse);
//   - proxy: the layer, its config and a manifest pushed through the proxy
//     with the default config (tee + analysis on), pulled back, the image
//     scan waited for, and the analysis confirmed from the image's SBOM
//     (a dpkg package written as the layer's last entry, the Go binary's
//     modules) and coverage.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
)

const (
	markerPkg  = "tollgate-bench-marker" // dpkg package in the layer's last entry
	ociLayerMT = "application/vnd.oci.image.layer.v1.tar+gzip"
)

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// gzLayer is the generated layer file.
type gzLayer struct {
	path                 string
	size, uncompressed   int64
	digest, diffID       string
	entries, randomFiles int
	exe                  int64 // size of usr/bin/big
	texts                int   // small text files
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// genGzTar writes a gzip (fastest level) tar of about target compressed
// bytes to path: os-release (Debian 12), npm and Python metadata, a
// 1000 MiB (smaller layers: target/5) ELF-looking executable of text (spooled to disk by the Go binary
// analyzer), the tollgate binary itself (Go modules), 20,000 small text
// files (fewer for smaller layers), random (incompressible) files up to the target size, and last
// var/lib/dpkg/status with 300 packages including markerPkg.
func genGzTar(path string, target int64, exe string) (*gzLayer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	compressed, comp := sha256.New(), &countWriter{}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(bw, compressed, comp), gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	diff, raw := sha256.New(), &countWriter{}
	tw := tar.NewWriter(io.MultiWriter(zw, diff, raw))
	l := &gzLayer{path: path}

	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua package version install")
	var tb bytes.Buffer
	for tb.Len() < 1<<20 {
		tb.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(12) == 0 {
			tb.WriteByte('\n')
		} else {
			tb.WriteByte(' ')
		}
	}
	text := tb.Bytes()[:1<<20]
	textAt := func(n int) []byte { off := rng.IntN(len(text) - n + 1); return text[off : off+n] }
	copyBuf := make([]byte, 1<<20)
	put := func(name string, mode int64, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
			return err
		}
		l.entries++
		if _, err := io.CopyBuffer(tw, io.LimitReader(body, size), copyBuf); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	putBytes := func(name string, b []byte) error { return put(name, 0o644, int64(len(b)), bytes.NewReader(b)) }

	if err := putBytes("etc/os-release", []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n")); err != nil {
		return nil, err
	}
	for i := range 200 {
		if err := putBytes(fmt.Sprintf("app/node_modules/m%d/package.json", i), fmt.Appendf(nil, `{"name":"m%d","version":"1.0.%d"}`, i, i)); err != nil {
			return nil, err
		}
		if err := putBytes(fmt.Sprintf("usr/lib/python3/dist-packages/p%d-1.0.dist-info/METADATA", i), fmt.Appendf(nil, "Name: p%d\nVersion: 1.0\n\n", i)); err != nil {
			return nil, err
		}
	}
	big := append([]byte("\x7fELF"), text[4:]...)
	l.exe = min(1000<<20, target/5) // smaller layers (smoke runs) scale down
	if err := put("usr/bin/big", 0o755, l.exe, &repeatReader{b: big}); err != nil {
		return nil, err
	}
	ef, err := os.Open(exe)
	if err != nil {
		return nil, err
	}
	st, err := ef.Stat()
	if err == nil {
		err = put("usr/local/bin/tollgate", 0o755, st.Size(), ef)
	}
	ef.Close()
	if err != nil {
		return nil, err
	}
	l.texts = int(min(20000, target>>18))
	for i := range l.texts {
		if err := putBytes(fmt.Sprintf("usr/share/doc/bench/d%03d/f%05d.txt", i/100, i), textAt(1<<10+rng.IntN(63<<10))); err != nil {
			return nil, err
		}
	}
	src := rand.NewChaCha8([32]byte{'t', 'o', 'l', 'l', 'g', 'a', 't', 'e', 'g', 'z'})
	for i := 0; comp.n < target-(8<<20); i++ {
		n := min(int64(512<<20), target-comp.n)
		if err := put(fmt.Sprintf("data/random%02d.bin", i), 0o644, n, src); err != nil {
			return nil, err
		}
		l.randomFiles++
	}
	var status strings.Builder
	for i := range 300 {
		name := fmt.Sprintf("pkg%d", i)
		if i == 299 {
			name = markerPkg
		}
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.%d-1\nDescription: x\n %s\n\n", name, i, textAt(200))
	}
	if err := putBytes("var/lib/dpkg/status", []byte(status.String())); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	l.size, l.uncompressed = comp.n, raw.n
	l.digest, l.diffID = hexDigest(compressed), hexDigest(diff)
	return l, f.Close()
}

func hexDigest(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// repeatReader repeats b forever, its first byte only once (one ELF magic).
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off += n
	if r.off == len(r.b) {
		r.off = 0
		r.b[0] = 'x'
	}
	return n, nil
}

// openLayer opens the layer file for one push.
func (l *gzLayer) open() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{bufio.NewReaderSize(f, 1<<20), f}, nil
}

func runGzTar(ctx context.Context, bin string, target int64, out string) error {
	dir, err := os.MkdirTemp("", "tollgate-proxy-rss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "generating a gzip tar layer of about %d bytes…\n", target)
	start := time.Now()
	l, err := genGzTar(filepath.Join(dir, "layer.tar.gz"), target, bin)
	if err != nil {
		return fmt.Errorf("generate layer: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  %d bytes (%d uncompressed, %d entries) in %s\n", l.size, l.uncompressed, l.entries, time.Since(start).Round(time.Second))

	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "tollgate peak RSS proxying and scanning a large gzip tar layer (bench/proxy -gztar)\n")
	fmt.Fprintf(&b, "date:    %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %s, %s/%s, %d CPUs (%s), %s\n", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "load:    %s (shared machine)\n", strings.TrimSpace(string(la)))
	}
	fmt.Fprintf(&b, "layer:   %d bytes gzip (level 1) = %.2f GiB, %d bytes uncompressed, %d tar entries: a %d MiB ELF-looking text executable,\n", l.size, float64(l.size)/(1<<30), l.uncompressed, l.entries, l.exe>>20)
	fmt.Fprintf(&b, "         the tollgate binary, %d text files, npm/Python metadata, %d random files (incompressible), var/lib/dpkg/status last\n", l.texts, l.randomFiles)
	fmt.Fprintf(&b, "         %s (diffID %s)\n", l.digest, l.diffID)
	fmt.Fprintf(&b, "config:  default, except db.refreshInterval: 0s (no advisory download, whose import has its own peak)\n")
	noFeed := filepath.Join(dir, "nofeed.yaml")
	if err := os.WriteFile(noFeed, []byte("db:\n  refreshInterval: 0s\n"), 0o644); err != nil {
		return err
	}

	// Direct: the embedded registry's own peak, for comparison.
	fmt.Fprintln(os.Stderr, "== direct (embedded registry port)")
	direct, err := rssDirect(ctx, bin, filepath.Join(dir, "direct"), noFeed, l)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	_ = os.RemoveAll(filepath.Join(dir, "direct"))
	fmt.Fprintf(&b, "\ndirect (push + pull against the embedded registry port, no analysis): push %.1fs, pull %.1fs\n", direct.push.Seconds(), direct.pull.Seconds())
	fmt.Fprintf(&b, "  peak RSS of the tollgate process (VmHWM): %.1f MiB\n", float64(direct.rss)/(1<<20))

	fmt.Fprintln(os.Stderr, "== proxy, default config (tee + analysis on)")
	p, err := rssProxy(ctx, bin, filepath.Join(dir, "proxy"), noFeed, l)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	fmt.Fprintf(&b, "\nproxy, default config (push layer + config + manifest through the proxy, pull manifest + layer back, wait for the scan):\n")
	fmt.Fprintf(&b, "  push %.1fs, pull %.1fs, scan listed %.1fs after the manifest PUT\n", p.push.Seconds(), p.pull.Seconds(), p.scanned.Seconds())
	fmt.Fprintf(&b, "  coverage: %s\n", p.coverage)
	fmt.Fprintf(&b, "  SBOM: %d components; %s %s; Go modules of usr/local/bin/tollgate %s\n", p.components, markerPkg, found(p.marker), found(p.goMods))
	for _, m := range p.metrics {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	fmt.Fprintf(&b, "  peak RSS of the tollgate process (proxy + embedded registry + analysis, VmHWM): %.1f MiB\n", float64(p.rss)/(1<<20))
	fmt.Fprintf(&b, "goal: peak RSS < 300 MB while proxying and scanning a 5 GB layer: %s (%.0f MB)\n", verdict(p.rss < 300e6 && p.marker), float64(p.rss)/1e6)
	if err := writeResult(b.String(), out, "proxy-rss"); err != nil {
		return err
	}
	if !p.marker {
		return errors.New("the layer's last entry was not analysed (no " + markerPkg + " in the SBOM)")
	}
	return nil
}

func found(ok bool) string {
	if ok {
		return "found"
	}
	return "NOT found"
}

type rssResult struct {
	push, pull, scanned time.Duration
	rss                 int64
	coverage            string
	components          int
	marker, goMods      bool
	metrics             []string
}

func stop(s *server) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

func rssDirect(ctx context.Context, bin, dataDir, config string, l *gzLayer) (rssResult, error) {
	var r rssResult
	s, err := startServer(bin, dataDir, "--config", config)
	if err != nil {
		return r, err
	}
	defer stop(s)
	body, err := l.open()
	if err != nil {
		return r, err
	}
	defer body.Close()
	if r.push, err = push(ctx, s.registry, "bench/direct", l.digest, body); err != nil {
		return r, fmt.Errorf("push: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  push %.1fs\n", r.push.Seconds())
	if r.pull, err = pull(ctx, s.registry, "bench/direct", l.digest, l.size); err != nil {
		return r, fmt.Errorf("pull: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  pull %.1fs\n", r.pull.Seconds())
	r.rss, err = peakRSS(s.cmd.Process.Pid)
	return r, err
}

func rssProxy(ctx context.Context, bin, dataDir, config string, l *gzLayer) (rssResult, error) {
	var r rssResult
	s, err := startServer(bin, dataDir, "--config", config, "--admin-listen", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	defer stop(s)
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		return r, err
	}
	a := adminClient{base: s.admin, token: strings.TrimSpace(string(tok))}
	const repo = "bench/rss"

	body, err := l.open()
	if err != nil {
		return r, err
	}
	defer body.Close()
	if r.push, err = push(ctx, s.proxy, repo, l.digest, body); err != nil {
		return r, fmt.Errorf("push layer: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  push %.1fs\n", r.push.Seconds())
	cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%q]}}`, l.diffID)
	cfgDigest := fmt.Sprintf("sha256:%x", sha256.Sum256(cfg))
	if _, err := push(ctx, s.proxy, repo, cfgDigest, bytes.NewReader(cfg)); err != nil {
		return r, fmt.Errorf("push config: %w", err)
	}
	man := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`, cfgDigest, len(cfg), ociLayerMT, l.digest, l.size)
	manDigest := fmt.Sprintf("sha256:%x", sha256.Sum256(man))
	if err := putManifest(ctx, s.proxy, repo, "v1", man); err != nil {
		return r, err
	}
	putAt := time.Now()

	if err := getManifest(ctx, s.proxy, repo, "v1"); err != nil {
		return r, err
	}
	if r.pull, err = pull(ctx, s.proxy, repo, l.digest, l.size); err != nil {
		return r, fmt.Errorf("pull: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  pull %.1fs\n", r.pull.Seconds())

	if r.coverage, err = a.waitScanned(ctx, repo, 60*time.Minute); err != nil {
		return r, err
	}
	r.scanned = time.Since(putAt)
	fmt.Fprintf(os.Stderr, "  scanned: %s\n", r.coverage)
	if err := a.sbom(ctx, repo+"@"+manDigest, &r); err != nil {
		return r, err
	}
	r.metrics = a.metrics(ctx, "tollgate_tee_", "tollgate_deferred_scans_total")
	r.rss, err = peakRSS(s.cmd.Process.Pid)
	return r, err
}

func putManifest(ctx context.Context, base, repo, tag string, man []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(man))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT manifest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("PUT manifest: %s %s", resp.Status, b)
	}
	return nil
}

func getManifest(ctx context.Context, base, repo, ref string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET manifest: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET manifest: %s", resp.Status)
	}
	return nil
}

type adminClient struct{ base, token string }

func (a adminClient) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitScanned polls coverage until repo's image has lastScannedAt and a
// settled status, and returns that status.
func (a adminClient) waitScanned(ctx context.Context, repo string, limit time.Duration) (string, error) {
	in := map[string]any{"filterCriteria": map[string]any{
		"ecrRepositoryName": []map[string]string{{"comparison": "EQUALS", "value": repo}},
		"resourceType":      []map[string]string{{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}}}}
	deadline := time.Now().Add(limit)
	for {
		status, body, err := a.do(ctx, http.MethodPost, "/coverage/list", in)
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("ListCoverage: %d %s", status, body)
		}
		var page struct {
			CoveredResources []struct {
				LastScannedAt *float64 `json:"lastScannedAt"`
				ScanStatus    struct {
					StatusCode, Reason string
				} `json:"scanStatus"`
			} `json:"coveredResources"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return "", err
		}
		if len(page.CoveredResources) == 1 {
			c := page.CoveredResources[0]
			switch c.ScanStatus.Reason {
			case "PENDING_INITIAL_SCAN", "PENDING_REVIVAL_SCAN", "SCAN_IN_PROGRESS":
			default:
				if c.LastScannedAt != nil {
					return c.ScanStatus.StatusCode + " / " + c.ScanStatus.Reason + ", lastScannedAt set", nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s not scanned within %s: %s", repo, limit, body)
		}
		time.Sleep(time.Second)
	}
}

// sbom reads the image's CycloneDX SBOM and checks what the analysis found.
func (a adminClient) sbom(ctx context.Context, image string, r *rssResult) error {
	status, body, err := a.do(ctx, http.MethodGet, "/v1/sbom?format=cyclonedx&image="+url.QueryEscape(image), nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET /v1/sbom: %d %s", status, body)
	}
	var doc struct {
		Components []struct{ Name, Purl string }
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	r.components = len(doc.Components)
	for _, c := range doc.Components {
		r.marker = r.marker || c.Name == markerPkg
		r.goMods = r.goMods || strings.HasPrefix(c.Purl, "pkg:golang/")
	}
	return nil
}

// metrics returns the admin /metrics lines starting with one of prefixes.
func (a adminClient) metrics(ctx context.Context, prefixes ...string) []string {
	status, body, err := a.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil || status != http.StatusOK {
		return []string{fmt.Sprintf("/metrics: %d %v", status, err)}
	}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return out
}
