// Command match benchmarks tollgate's advisory database and matcher:
//
//   - import time and on-disk size for all of ../shared/vulndata;
//   - match time for one image (go-static's Go modules + stdlib, from the
//     store just imported);
//   - re-match after a synthetic advisory delta touching 1 % of the package
//     names across 10,000 and 100,000 synthetic stored images;
//
// each scenario in a child process so its peak RSS (getrusage maxrss) is its
// own. Results go to stdout and to bench/results/match-<date>.txt.
//
//	go run ./bench/match [-shared ../shared] [-images 10000,100000] [-out bench/results]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// Synthetic images: pkgsPerImage npm packages drawn uniformly from
// poolSize names (so each name is in images*pkgsPerImage/poolSize images).
const (
	poolSize     = 3000
	pkgsPerImage = 30
)

type result struct {
	Scenario string            `json:"scenario"`
	Metrics  map[string]string `json:"metrics"`
	MaxRSS   int64             `json:"maxRssKiB"`
}

func main() {
	shared := flag.String("shared", envOr("TOLLGATE_SHARED", "../shared"), "shared test material")
	imgs := flag.String("images", "10000,100000", "synthetic image counts for the re-match scenario")
	out := flag.String("out", "bench/results", "results directory")
	scenario := flag.String("scenario", "", "internal: run one scenario in this process")
	n := flag.Int("n", 0, "internal: image count")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the re-match phases to this file (with -scenario)")
	flag.Parse()
	ctx := context.Background()

	if *scenario != "" {
		m, err := run(ctx, *scenario, *shared, *n, *profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(m)
		return
	}

	var results []result
	scenarios := [][2]string{{"import", "0"}, {"match-one-image", "0"}}
	for _, s := range strings.Split(*imgs, ",") {
		scenarios = append(scenarios, [2]string{"rematch-delta", strings.TrimSpace(s)})
	}
	for _, sc := range scenarios {
		fmt.Fprintf(os.Stderr, "running %s %s...\n", sc[0], sc[1])
		cmd := exec.Command(os.Args[0], "-scenario", sc[0], "-n", sc[1], "-shared", *shared)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", sc, err)
			os.Exit(1)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		r := result{Scenario: sc[0], Metrics: m}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = ru.Maxrss
		}
		if sc[1] != "0" {
			r.Scenario += " images=" + sc[1]
		}
		results = append(results, r)
	}
	report := render(results)
	fmt.Print(report)
	if err := os.MkdirAll(*out, 0o755); err == nil {
		p := filepath.Join(*out, "match-"+time.Now().UTC().Format("2006-01-02")+".txt")
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		fmt.Fprintln(os.Stderr, "wrote", p)
	}
}

func render(rs []result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# tollgate match benchmarks — %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# machine: %s, %d cores (shared with other work), %s %s/%s, %s\n", host, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, memTotal())
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "# load average at the end: %s# (other engineers' builds share the 2 cores: wall times are inflated accordingly)\n", la)
	}
	fmt.Fprintf(&b, "# synthetic images: %d npm packages each from a pool of %d names; delta = new advisories for 1%% of the names\n\n", pkgsPerImage, poolSize)
	for _, r := range rs {
		fmt.Fprintf(&b, "%s\n", r.Scenario)
		keys := make([]string, 0, len(r.Metrics))
		for k := range r.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %-28s %s\n", k, r.Metrics[k])
		}
		fmt.Fprintf(&b, "  %-28s %.1f MiB\n\n", "peak RSS", float64(r.MaxRSS)/1024)
	}
	return b.String()
}

func run(ctx context.Context, scenario, shared string, n int, profile string) (map[string]string, error) {
	dir, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	db, err := index.Open(dir, index.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	log := zerolog.Nop()
	adv := index.NewAdvisoryStore(db, log)
	m := map[string]string{}
	switch scenario {
	case "import", "match-one-image":
		u := &index.Updater{Store: adv, Log: log}
		t0 := time.Now()
		rs, ld, err := u.Import(ctx, filepath.Join(shared, "vulndata"), false)
		if err != nil {
			return nil, err
		}
		m["import time"] = time.Since(t0).Round(time.Millisecond).String()
		total := 0
		for _, r := range rs {
			total += r.Count
			m["advisories "+r.Source] = strconv.Itoa(r.Count)
		}
		m["advisories total"] = strconv.Itoa(total)
		m["files skipped"] = strconv.Itoa(len(ld.Skipped))
		if scenario == "import" {
			m["on-disk (du)"] = mib(duBytes(dir))
			return m, nil
		}
		inv, err := goStatic(shared)
		if err != nil {
			return nil, err
		}
		const reps = 200
		var fs []scan.Finding
		t0 = time.Now()
		for range reps {
			if fs, err = match.Match(ctx, inv, adv); err != nil {
				return nil, err
			}
		}
		m["match go-static (14 pkgs)"] = (time.Since(t0) / reps).Round(time.Microsecond).String() + " per image"
		m["findings"] = strconv.Itoa(len(fs))
		return m, nil
	case "rematch-delta":
		return rematch(ctx, db, adv, n, m, profile)
	}
	return nil, fmt.Errorf("unknown scenario %q", scenario)
}

func rematch(ctx context.Context, db *index.DB, adv *index.AdvisoryStore, n int, m map[string]string, profile string) (map[string]string, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	pix := index.NewPkgIndex(db)
	t0 := time.Now()
	const chunk = 5000
	for start := 0; start < n; start += chunk {
		var invs []*scan.Inventory
		for i := start; i < min(n, start+chunk); i++ {
			inv := &scan.Inventory{Image: digest.FromString("image-" + strconv.Itoa(i))}
			seen := map[int]bool{}
			for len(inv.Packages) < pkgsPerImage {
				p := rng.IntN(poolSize)
				if seen[p] {
					continue
				}
				seen[p] = true
				inv.Packages = append(inv.Packages, scan.Package{Ecosystem: "npm", Name: "pkg-" + strconv.Itoa(p),
					Version: "1." + strconv.Itoa(rng.IntN(10)) + ".0", Kind: scan.KindLang, Path: "app/node_modules/pkg-" + strconv.Itoa(p) + "/package.json"})
			}
			invs = append(invs, inv)
		}
		if err := pix.IndexNewImages(ctx, invs); err != nil {
			return nil, err
		}
	}
	m["setup: index images"] = time.Since(t0).Round(time.Millisecond).String()
	// Measure the steady state, not the bulk load's compaction backlog.
	if err := db.Badger().Flatten(2); err != nil {
		return nil, err
	}
	// Baseline advisories for other names, so the store is not empty.
	var base []match.Advisory
	for p := poolSize / 100; p < poolSize; p += 7 {
		base = append(base, benchAdv(fmt.Sprintf("BASE-%d", p), p, "1.0.0"))
	}
	// Delta 1: new advisories for 1 % of the names (pkg-0 … pkg-29), fixed in 1.5.0.
	next := append([]match.Advisory{}, base...)
	for p := 0; p < poolSize/100; p++ {
		next = append(next, benchAdv(fmt.Sprintf("NEW-%d", p), p, "1.5.0"))
	}
	if _, err := adv.Import(ctx, "npm", base, index.ImportOptions{}); err != nil {
		return nil, err
	}
	rm := &index.Rematcher{Advisories: adv, Packages: pix, Findings: index.NewFindingStore(db), Log: zerolog.Nop()}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	t0 = time.Now()
	d, err := adv.Import(ctx, "npm", next, index.ImportOptions{})
	if err != nil {
		return nil, err
	}
	m["delta import"] = time.Since(t0).Round(time.Millisecond).String()
	t0 = time.Now()
	res, err := rm.ApplyDelta(ctx, d)
	if err != nil {
		return nil, err
	}
	m["delta 1 (new advisories)"] = fmt.Sprintf("%s: %d packages, %d images examined, %d changed, %d findings created",
		time.Since(t0).Round(time.Millisecond), len(d.Packages), res.Examined, len(res.Changed), res.Created)
	// Delta 2: the same advisories now fixed in 1.3.0: findings on 1.3–1.4 close.
	for i := range next[len(base):] {
		a := &next[len(base)+i]
		a.Affected[0].Ranges[0].Events[1].Fixed = "1.3.0"
		a.Modified = a.Modified.Add(time.Hour)
	}
	d, err = adv.Import(ctx, "npm", next, index.ImportOptions{})
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	res, err = rm.ApplyDelta(ctx, d)
	if err != nil {
		return nil, err
	}
	m["delta 2 (changed ranges)"] = fmt.Sprintf("%s: %d images examined, %d changed, %d updated, %d closed",
		time.Since(t0).Round(time.Millisecond), res.Examined, len(res.Changed), res.Updated, res.Closed)
	return m, nil
}

func benchAdv(id string, p int, fixed string) match.Advisory {
	return match.Advisory{ID: id, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Aliases: []string{"CVE-2099-" + strconv.Itoa(10000+p)},
		Severity: []match.SeverityScore{{Type: "CVSS_V3", Score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}},
		Affected: []match.Affected{{Package: match.AffectedPackage{Ecosystem: "npm", Name: "pkg-" + strconv.Itoa(p)},
			Ranges: []match.Range{{Type: match.RangeSemver, Events: []match.Event{{Introduced: "0"}, {Fixed: fixed}}}}}}}
}

// goStatic is go-static's inventory from go-version-m.txt (module versions
// and the go1.21.0 stdlib), as the Go binary analyzer reports it.
func goStatic(shared string) (*scan.Inventory, error) {
	f, err := os.Open(filepath.Join(shared, "images/go-static.expected/go-version-m.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	inv := &scan.Inventory{Image: digest.FromString("go-static")}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 2 && strings.HasSuffix(fs[0], ":"):
			inv.Packages = append(inv.Packages, scan.Package{Ecosystem: "Go", Name: "stdlib", Version: fs[1], Kind: scan.KindLang})
		case len(fs) >= 3 && fs[0] == "dep":
			inv.Packages = append(inv.Packages, scan.Package{Ecosystem: "Go", Name: fs[1], Version: fs[2], Kind: scan.KindLang})
		}
	}
	return inv, sc.Err()
}

func duBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.Join(strings.Fields(line), " ")
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
