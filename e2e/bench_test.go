//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// BenchmarkSharedImages measures, side by side in one run, pushing and
// pulling every shared image through tollgate (scanning on, advisories
// imported) and directly against its embedded registry (the loopback
// listener behind the proxy), and the time from each manifest PUT's answer
// to the image's scan being listed as done (coverage lastScannedAt, then its
// findings listed). Each round starts a fresh server (first-time analysis
// every round) and alternates which path goes first. Results go to
// $TOLLGATE_BENCH_OUT (default ../bench/results/shared-images-<date>.txt).
//
//	go test -tags e2e -run '^$' -bench SharedImages -benchtime 1x ./e2e/
func BenchmarkSharedImages(b *testing.B) {
	shared := sharedDir(b)
	images := loadSharedImages(b, shared)
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	total := sharedBytes(b, images)
	// TOLLGATE_BENCH_SCAN=off measures the proxy alone (scan.enabled: false).
	scanOn, extraCfg, mode := true, "", "scanning on"
	if os.Getenv("TOLLGATE_BENCH_SCAN") == "off" {
		scanOn, extraCfg, mode = false, "scan:\n  enabled: false\n", "scanning off (scan.enabled: false)"
	}
	// TOLLGATE_BENCH_CONFIG: more YAML for the server's config (to compare
	// settings side by side, e.g. "scan:\n  workers: 1\n").
	if v := os.Getenv("TOLLGATE_BENCH_CONFIG"); v != "" {
		extraCfg += v
		mode += ", extra config " + strconv.Quote(v)
	}

	// [proxy, direct]; cpu: the tollgate process's user+system seconds
	// during the transfers (proxy, tee, analysis and the embedded registry
	// share it), steadier than wall time on a loaded machine.
	type sample struct{ push, pull, pushCPU, pullCPU [2]time.Duration }
	var samples []sample
	var latencies []time.Duration
	var imports []time.Duration
	perImage := map[string]*[2][]time.Duration{} // tag → push times [proxy, direct]
	for r := 0; r < rounds && !b.Failed(); r++ {
		// --embedded-listen (hidden, for benchmarks): the embedded registry
		// also on a loopback port, the direct path to compare with.
		s := startServer(b, b.TempDir(), "--config", writeConfig(b, extraCfg), "--embedded-listen", "127.0.0.1:0")
		if scanOn && !s.scanningWired(b) {
			b.Skip("!!! SKIPPING: tollgate serve does not scan (no POST /v1/db/import) !!!")
		}
		direct := s.embeddedURL(b)
		if scanOn {
			t0 := time.Now()
			s.importAdvisories(b, false, filepath.Join(shared, "vulndata"))
			imports = append(imports, time.Since(t0))
		}

		var smp sample
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, path := range order {
			host, prefix := s.Registry, fmt.Sprintf("p%d/", r)
			if path == 1 {
				host, prefix = direct, fmt.Sprintf("d%d/", r)
			}
			for _, si := range images {
				si.Repo = prefix + si.Repo
				c1, t1 := procCPU(s.cmd.Process.Pid), time.Now()
				si.push(b, host)
				answered := time.Now()
				smp.push[path] += answered.Sub(t1)
				smp.pushCPU[path] += procCPU(s.cmd.Process.Pid) - c1
				if perImage[si.Tag] == nil {
					perImage[si.Tag] = &[2][]time.Duration{}
				}
				perImage[si.Tag][path] = append(perImage[si.Tag][path], answered.Sub(t1))
				if path == 0 && scanOn {
					latencies = append(latencies, s.scanLatency(b, si.Repo, answered))
				}
			}
			for _, si := range images {
				si.Repo = prefix + si.Repo
				c1, t1 := procCPU(s.cmd.Process.Pid), time.Now()
				pullAll(b, host, si)
				smp.pull[path] += time.Since(t1)
				smp.pullCPU[path] += procCPU(s.cmd.Process.Pid) - c1
			}
		}
		samples = append(samples, smp)
		s.stop(b)
	}
	if b.Failed() {
		return
	}

	med := func(f func(sample) time.Duration) time.Duration {
		var ds []time.Duration
		for _, x := range samples {
			ds = append(ds, f(x))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	mibs := func(d time.Duration) float64 { return float64(total) / (1 << 20) / d.Seconds() }
	pushP, pushD := med(func(x sample) time.Duration { return x.push[0] }), med(func(x sample) time.Duration { return x.push[1] })
	pullP, pullD := med(func(x sample) time.Duration { return x.pull[0] }), med(func(x sample) time.Duration { return x.pull[1] })
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }

	var sb strings.Builder
	fmt.Fprintf(&sb, "tollgate shared-images benchmark (e2e BenchmarkSharedImages)\n")
	fmt.Fprintf(&sb, "date:    %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&sb, "machine: %s\n", uname())
	fmt.Fprintf(&sb, "cpus:    %d (nproc), load %s, %s\n", runtime.NumCPU(), loadavg(), runtime.Version())
	fmt.Fprintf(&sb, "images:  %d shared images (%d manifests), %.1f MiB of blobs; advisories: all of ../shared/vulndata when scanning (import %s median)\n",
		len(images), len(manifests(b, images)), float64(total)/(1<<20), medDur(imports).Round(time.Millisecond))
	fmt.Fprintf(&sb, "method:  %d rounds, fresh server each, alternating order; proxy = tollgate :5000 with %s; direct = its embedded registry's loopback listener (--embedded-listen); medians\n\n", rounds, mode)
	fmt.Fprintf(&sb, "         direct MiB/s    proxy MiB/s    ratio (goal >= 0.97)\n")
	fmt.Fprintf(&sb, "push     %12.1f   %12.1f    %.3f\n", mibs(pushD), mibs(pushP), pushD.Seconds()/pushP.Seconds())
	fmt.Fprintf(&sb, "pull     %12.1f   %12.1f    %.3f\n", mibs(pullD), mibs(pullP), pullD.Seconds()/pullP.Seconds())
	fmt.Fprintf(&sb, "tollgate CPU seconds, medians: push direct %.2f proxy %.2f, pull direct %.2f proxy %.2f\n\n",
		med(func(x sample) time.Duration { return x.pushCPU[1] }).Seconds(), med(func(x sample) time.Duration { return x.pushCPU[0] }).Seconds(),
		med(func(x sample) time.Duration { return x.pullCPU[1] }).Seconds(), med(func(x sample) time.Duration { return x.pullCPU[0] }).Seconds())
	if scanOn {
		fmt.Fprintf(&sb, "manifest PUT answered → scan listed (coverage lastScannedAt + findings), %d samples: p50 %s  p95 %s  max %s (goal p95 <= 250ms)\n",
			len(latencies), pct(0.5).Round(time.Millisecond), pct(0.95).Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(&sb, "push per image, median ms proxy/direct (ratio):")
	for _, si := range images {
		if p := perImage[si.Tag]; p != nil {
			pm, dm := medDur(p[0]), medDur(p[1])
			fmt.Fprintf(&sb, " %s %d/%d (%.2f)", si.Tag, pm.Milliseconds(), dm.Milliseconds(), dm.Seconds()/pm.Seconds())
		}
	}
	fmt.Fprintf(&sb, "\nraw push seconds proxy/direct:")
	for _, x := range samples {
		fmt.Fprintf(&sb, " %.2f/%.2f", x.push[0].Seconds(), x.push[1].Seconds())
	}
	fmt.Fprintf(&sb, "\nraw pull seconds proxy/direct:")
	for _, x := range samples {
		fmt.Fprintf(&sb, " %.2f/%.2f", x.pull[0].Seconds(), x.pull[1].Seconds())
	}
	fmt.Fprintf(&sb, "\ntollgate CPU seconds (user+sys) push proxy/direct:")
	for _, x := range samples {
		fmt.Fprintf(&sb, " %.2f/%.2f", x.pushCPU[0].Seconds(), x.pushCPU[1].Seconds())
	}
	fmt.Fprintf(&sb, "\ntollgate CPU seconds (user+sys) pull proxy/direct:")
	for _, x := range samples {
		fmt.Fprintf(&sb, " %.2f/%.2f", x.pullCPU[0].Seconds(), x.pullCPU[1].Seconds())
	}
	fmt.Fprintf(&sb, "\nraw latencies:")
	for _, l := range latencies {
		fmt.Fprintf(&sb, " %d", l.Milliseconds())
	}
	sb.WriteString(" ms\n")

	out := os.Getenv("TOLLGATE_BENCH_OUT")
	if out == "" {
		_, file, _, _ := runtime.Caller(0)
		out = filepath.Join(filepath.Dir(file), "..", "bench", "results", "shared-images-"+time.Now().UTC().Format("2006-01-02")+".txt")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	fmt.Print(sb.String())
	b.ReportMetric(pushD.Seconds()/pushP.Seconds(), "push-ratio")
	b.ReportMetric(pullD.Seconds()/pullP.Seconds(), "pull-ratio")
	if scanOn {
		b.ReportMetric(float64(pct(0.95).Milliseconds()), "p95-scan-ms")
	}
}

// scanLatency polls (every 5 ms) until every image manifest of repo has a
// settled coverage with lastScannedAt and its findings have been listed,
// and returns the time since answered.
func (s *server) scanLatency(t testing.TB, repo string, answered time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(scanWait)
	in := map[string]any{"filterCriteria": map[string]any{
		"ecrRepositoryName": []map[string]string{{"comparison": "EQUALS", "value": repo}},
		"resourceType":      []map[string]string{{"comparison": "EQUALS", "value": "AWS_ECR_CONTAINER_IMAGE"}},
	}}
	for {
		status, body := s.adminDo(t, http.MethodPost, "/coverage/list", in)
		if status != http.StatusOK {
			t.Fatalf("ListCoverage: %d %s", status, body)
		}
		var page struct {
			CoveredResources []struct {
				LastScannedAt *float64 `json:"lastScannedAt"`
				ScanStatus    struct {
					Reason string `json:"reason"`
				} `json:"scanStatus"`
			} `json:"coveredResources"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		done := len(page.CoveredResources) > 0
		for _, c := range page.CoveredResources {
			done = done && c.LastScannedAt != nil && !pendingReason(c.ScanStatus.Reason)
		}
		if done {
			status, body := s.adminDo(t, http.MethodPost, "/findings/list", map[string]any{"filterCriteria": map[string]any{
				"ecrImageRepositoryName": []map[string]string{{"comparison": "EQUALS", "value": repo}}}, "maxResults": 100})
			if status != http.StatusOK {
				t.Fatalf("ListFindings: %d %s", status, body)
			}
			return time.Since(answered)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not scanned within %s", repo, scanWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// embeddedURL reads the embedded registry's loopback address from the log.
func (s *server) embeddedURL(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open(s.logs.Name())
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Message string `json:"message"`
				URL     string `json:"url"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "embedded registry started" {
				f.Close()
				return strings.TrimPrefix(strings.TrimPrefix(l.URL, "http://"), "https://")
			}
		}
		f.Close()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no \"embedded registry started\" line in the serve log")
	return ""
}

// pullAll pulls si's manifests and blobs to EOF (no verification: the
// suite's tests do that).
func pullAll(t testing.TB, host string, si sharedImage) {
	t.Helper()
	ref, err := name.NewDigest(fmt.Sprintf("%s/%s@%s", host, si.Repo, si.Digest), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imagesOf(t, desc, si.Index) {
		if _, err := img.RawConfigFile(); err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
	}
}

// imagesOf returns the image, or the index's child images, of desc.
func imagesOf(t testing.TB, desc *remote.Descriptor, index bool) []v1.Image {
	t.Helper()
	if !index {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		return []v1.Image{img}
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Image
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img)
	}
	return out
}

// sharedBytes sums the sizes of the distinct layers of images.
func sharedBytes(t testing.TB, images []sharedImage) int64 {
	t.Helper()
	seen := map[string]bool{}
	var n int64
	for _, si := range images {
		imgs := []v1.Image{si.img}
		if si.Index {
			imgs = nil
			im, err := si.idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range im.Manifests {
				img, err := si.idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				imgs = append(imgs, img)
			}
		}
		for _, img := range imgs {
			ls, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				d, _ := l.Digest()
				sz, _ := l.Size()
				if !seen[d.String()] {
					seen[d.String()] = true
					n += sz
				}
			}
		}
	}
	return n
}

func medDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

// procCPU is process pid's user+system CPU time (/proc/<pid>/stat), 0 when unreadable.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields from 3 (state) on
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)        // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)        // stime, field 15
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func uname() string {
	out, err := exec.Command("uname", "-a").Output()
	if err != nil {
		return runtime.GOOS + "/" + runtime.GOARCH
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
