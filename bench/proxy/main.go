// Command proxy-bench measures, in one run, push and pull throughput of a
// large random layer (default 1 GiB) directly against tollgate's embedded
// registry and through the tollgate proxy in front of it, and the tollgate
// process's peak RSS (VmHWM: proxy and embedded registry share the
// process). It starts `tollgate serve` itself.
//
//	go run ./bench/proxy -bin bin/tollgate [-size 1073741824] [-rounds 3] [-out FILE]
//	go run ./bench/proxy -bin bin/tollgate -gztar [-size 5368709120] [-out FILE]
//
// With -gztar it measures peak RSS instead, with a gzip tar layer of about
// -size compressed bytes that is analysed on the way (gztar.go).
//
// The layer is generated on the fly from a seeded ChaCha8 stream (never held
// in memory); pushes are docker-style (POST, one chunked PATCH, empty PUT),
// pulls a plain GET read to the end. Rounds alternate which path goes first;
// the figures are medians.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/tollgate", "tollgate binary")
	size := flag.Int64("size", 1<<30, "layer size in bytes")
	rounds := flag.Int("rounds", 3, "rounds (medians are reported)")
	out := flag.String("out", "", "results file (default bench/results/proxy-<date>.txt, with -gztar proxy-rss-<date>.txt)")
	gz := flag.Bool("gztar", false, "peak RSS proxying and scanning a generated gzip tar layer of about -size bytes (default 5 GiB)")
	flag.Parse()
	var err error
	if *gz {
		if !isFlagSet("size") {
			*size = 5 << 30
		}
		err = runGzTar(context.Background(), *bin, *size, *out)
	} else {
		err = run(*bin, *size, *rounds, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy-bench:", err)
		os.Exit(1)
	}
}

// layer is a deterministic pseudo-random byte stream of n bytes.
type layer struct {
	src *rand.ChaCha8
	n   int64
}

func newLayer(n int64) *layer {
	return &layer{src: rand.NewChaCha8([32]byte{'t', 'o', 'l', 'l', 'g', 'a', 't', 'e'}), n: n}
}

func (l *layer) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, _ := l.src.Read(p)
	l.n -= int64(n)
	return n, nil
}

type server struct {
	cmd      *exec.Cmd
	proxy    string // http://host:port of the proxy
	registry string // http://host:port of the embedded registry
	admin    string // http://host:port of the admin listener, if any
}

func startServer(bin, dir string, extra ...string) (*server, error) {
	args := append([]string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "", "--log-level", "info",
		"--embedded-listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd}
	wantAdmin := slices.Contains(extra, "--admin-listen")
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var l struct{ Message, Addr, URL, Level string }
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Message {
			case "embedded registry started":
				s.registry = l.URL
			case "registry listening":
				s.proxy = "http://" + l.Addr
			case "admin listening":
				s.admin = "http://" + l.Addr
			}
			if l.Level == "error" {
				fmt.Fprintln(os.Stderr, "tollgate:", sc.Text())
			}
			if !sent && s.proxy != "" && s.registry != "" && (s.admin != "" || !wantAdmin) {
				ready <- nil
				sent = true
			}
		}
		if !sent {
			ready <- errors.New("tollgate exited before listening")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("tollgate did not start within 60s")
	}
	return s, nil
}

// peakRSS is the process's VmHWM in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

var client = &http.Client{Transport: &http.Transport{
	DisableCompression: true, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10, MaxIdleConnsPerHost: 4,
}}

func push(ctx context.Context, base, repo, dgst string, body io.Reader) (time.Duration, error) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST: %s", resp.Status)
	}
	loc, err := url.Parse(base)
	if err != nil {
		return 0, err
	}
	loc, err = loc.Parse(resp.Header.Get("Location"))
	if err != nil {
		return 0, err
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), io.NopCloser(body))
	req.ContentLength = -1 // chunked, as docker streams layers
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = client.Do(req); err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("PATCH: %s", resp.Status)
	}
	if loc, err = loc.Parse(resp.Header.Get("Location")); err != nil {
		return 0, err
	}
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), nil)
	if resp, err = client.Do(req); err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("PUT: %s", resp.Status)
	}
	return time.Since(start), nil
}

func pull(ctx context.Context, base, repo, dgst string, size int64) (time.Duration, error) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+dgst, nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET: %s", resp.Status)
	}
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("GET: %d bytes, want %d", n, size)
	}
	return time.Since(start), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mibps(size int64, d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }

// result is one configuration's medians.
type result struct {
	name                       string
	pushD, pushP, pullD, pullP []time.Duration
	rss                        int64
}

func (r result) ratios(size int64) (push, pull float64) {
	return mibps(size, median(r.pushP)) / mibps(size, median(r.pushD)),
		mibps(size, median(r.pullP)) / mibps(size, median(r.pullD))
}

func run(bin string, size int64, rounds int, out string) error {
	dir, err := os.MkdirTemp("", "tollgate-proxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(os.Stderr, "hashing the %d-byte layer…\n", size)
	h := sha256.New()
	if _, err := io.CopyBuffer(h, newLayer(size), make([]byte, 1<<20)); err != nil {
		return err
	}
	dgst := "sha256:" + hex.EncodeToString(h.Sum(nil))

	noScan := filepath.Join(dir, "noscan.yaml")
	if err := os.WriteFile(noScan, []byte("scan:\n  enabled: false\n"), 0o644); err != nil {
		return err
	}
	var results []result
	for i, c := range []struct {
		name string
		args []string
	}{
		{"proxy alone (scan.enabled: false)", []string{"--config", noScan}},
		{"default config (tee + analysis on)", nil},
	} {
		fmt.Fprintf(os.Stderr, "== %s\n", c.name)
		res, err := measure(bin, filepath.Join(dir, fmt.Sprint("data", i)), c.args, dgst, size, rounds)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		res.name = c.name
		results = append(results, res)
	}

	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "tollgate proxy throughput benchmark (bench/proxy)\n")
	fmt.Fprintf(&b, "date:    %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "machine: %s, %s/%s, %d CPUs (%s), %s\n", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "load:    %s (shared machine; figures are noisy)\n", strings.TrimSpace(string(la)))
	}
	fmt.Fprintf(&b, "layer:   %d bytes random (ChaCha8), %s\n", size, dgst)
	fmt.Fprintf(&b, "method:  %d rounds, alternating order; push = POST + one chunked PATCH + PUT; pull = GET to EOF; medians\n", rounds)
	fmt.Fprintf(&b, "         direct = tollgate's embedded registry on its loopback port; proxy = tollgate's registry listener in front of it\n")
	for _, r := range results {
		pr, lr := r.ratios(size)
		fmt.Fprintf(&b, "\n%s\n", r.name)
		fmt.Fprintf(&b, "%-6s %14s %14s %8s\n", "", "direct MiB/s", "proxy MiB/s", "ratio")
		fmt.Fprintf(&b, "%-6s %14.1f %14.1f %8.3f\n", "push", mibps(size, median(r.pushD)), mibps(size, median(r.pushP)), pr)
		fmt.Fprintf(&b, "%-6s %14.1f %14.1f %8.3f\n", "pull", mibps(size, median(r.pullD)), mibps(size, median(r.pullP)), lr)
		fmt.Fprintf(&b, "peak RSS of the tollgate process (proxy + embedded registry, VmHWM): %.1f MiB\n", float64(r.rss)/(1<<20))
		fmt.Fprintf(&b, "goals: ratio >= 0.97 (push %s, pull %s); peak RSS < 150 MB (%s)\n",
			verdict(pr >= 0.97), verdict(lr >= 0.97), verdict(r.rss < 150e6))
		fmt.Fprintf(&b, "raw seconds: push direct %v proxy %v; pull direct %v proxy %v\n",
			secs(r.pushD), secs(r.pushP), secs(r.pullD), secs(r.pullP))
	}
	return writeResult(b.String(), out, "proxy")
}

// writeResult prints a result and writes it to out, by default
// bench/results/<name>-<UTC date>.txt.
func writeResult(text, out, name string) error {
	fmt.Print(text)
	if out == "" {
		out = filepath.Join("bench", "results", name+"-"+time.Now().UTC().Format("2006-01-02")+".txt")
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", out)
	return nil
}

// measure starts tollgate with args and runs the rounds against it.
func measure(bin, dataDir string, args []string, dgst string, size int64, rounds int) (result, error) {
	ctx := context.Background()
	var res result
	s, err := startServer(bin, dataDir, args...)
	if err != nil {
		return res, err
	}
	defer func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_ = s.cmd.Wait()
	}()
	step := func(name string, d *[]time.Duration, f func() (time.Duration, error)) error {
		t, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*d = append(*d, t)
		fmt.Fprintf(os.Stderr, "  %-12s %6.2fs %8.1f MiB/s\n", name, t.Seconds(), mibps(size, t))
		return nil
	}
	for i := range rounds {
		fmt.Fprintf(os.Stderr, "round %d\n", i+1)
		direct := func() error {
			repo := fmt.Sprintf("bench/direct%d", i)
			if err := step("push direct", &res.pushD, func() (time.Duration, error) { return push(ctx, s.registry, repo, dgst, newLayer(size)) }); err != nil {
				return err
			}
			return step("pull direct", &res.pullD, func() (time.Duration, error) { return pull(ctx, s.registry, repo, dgst, size) })
		}
		proxied := func() error {
			repo := fmt.Sprintf("bench/proxy%d", i)
			if err := step("push proxy", &res.pushP, func() (time.Duration, error) { return push(ctx, s.proxy, repo, dgst, newLayer(size)) }); err != nil {
				return err
			}
			return step("pull proxy", &res.pullP, func() (time.Duration, error) { return pull(ctx, s.proxy, repo, dgst, size) })
		}
		first, second := direct, proxied
		if i%2 == 1 {
			first, second = proxied, direct
		}
		if err := first(); err != nil {
			return res, err
		}
		if err := second(); err != nil {
			return res, err
		}
	}
	res.rss, err = peakRSS(s.cmd.Process.Pid)
	return res, err
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func secs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
