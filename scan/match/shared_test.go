package match

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-registry/tollgate/scan"
)

// sharedDir returns ../shared (or $TOLLGATE_SHARED); it skips loudly when
// absent, and fails under CI=true.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TOLLGATE_SHARED")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; d != "/"; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "..", "shared")
				break
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "vulndata")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %q (TOLLGATE_SHARED): %v", dir, err)
		}
		t.Skipf("SKIPPING: shared test material missing at %q (set TOLLGATE_SHARED): %v", dir, err)
	}
	return dir
}

// goStaticInventory builds go-static's inventory from go-version-m.txt, as
// the Go binary analyzer reports it: main module, deps, stdlib go1.21.0.
func goStaticInventory(t testing.TB, shared string) *scan.Inventory {
	f, err := os.Open(filepath.Join(shared, "images/go-static.expected/go-version-m.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inv := &scan.Inventory{Image: "sha256:0000000000000000000000000000000000000000000000000000000000000001"}
	add := func(name, ver string) {
		inv.Packages = append(inv.Packages, scan.Package{Ecosystem: "Go", Name: name, Version: ver, Kind: scan.KindLang, Path: "usr/local/bin/vulnapp"})
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 2 && strings.HasSuffix(fs[0], ":"):
			add("stdlib", fs[1])
		case len(fs) >= 3 && fs[0] == "dep":
			add(fs[1], fs[2])
		}
	}
	if len(inv.Packages) != 14 {
		t.Fatalf("parsed %d packages from go-version-m.txt, want 14", len(inv.Packages))
	}
	return inv
}

func TestGoStaticAgainstSharedGoAdvisories(t *testing.T) {
	shared := sharedDir(t)
	ld, err := LoadPath(context.Background(), filepath.Join(shared, "vulndata/go/osv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ld.Sources["Go"]); n < 4000 {
		t.Fatalf("loaded %d Go advisories, want > 4000 (skipped %d)", n, len(ld.Skipped))
	}
	inv := goStaticInventory(t, shared)
	fs, err := Match(context.Background(), inv, NewMemory(ld.Sources["Go"]))
	if err != nil {
		t.Fatal(err)
	}
	// osv-matches.tsv names each record once, with one of its packages
	// (GO-2023-2102 hits both stdlib and x/net but is listed under stdlib),
	// so ids are compared; each reported (package, id) pair must still be in
	// the tsv or concern a record the tsv lists.
	got := map[string]bool{}
	pairs := map[string]bool{}
	for _, f := range fs {
		got[f.AdvisoryID] = true
		pairs[f.Package.Name+"\t"+f.AdvisoryID] = true
	}
	want := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(shared, "images/go-static.expected/osv-matches.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		c := strings.Split(line, "\t")
		if len(c) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		want[c[2]] = true
		if !pairs[c[0]+"\t"+c[2]] {
			t.Errorf("%s %s: not reported for this package", c[0], c[2])
		}
	}
	if len(want) != 116 {
		t.Fatalf("osv-matches.tsv has %d rows, want 116", len(want))
	}
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing) > 0 {
		t.Errorf("%d expected advisories not reported: %v", len(missing), missing)
	}
	if len(extra) > 0 {
		t.Errorf("%d advisories reported outside any range: %v", len(extra), extra)
	}
}

func TestDebianPythonOSManaged(t *testing.T) {
	shared := sharedDir(t)
	ld, err := LoadPath(context.Background(), filepath.Join(shared, "vulndata/pypi"))
	if err != nil {
		t.Fatal(err)
	}
	mem := NewMemory(ld.Sources["PyPI"])
	b, err := os.ReadFile(filepath.Join(shared, "images/debian12.expected/pypi-matches.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		c := strings.Split(line, "\t")
		if len(c) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		p := scan.Package{Ecosystem: "PyPI", Name: c[0], Version: c[1], Kind: scan.KindLang, Path: "usr/lib/python3/dist-packages/x.dist-info/METADATA"}
		// As a pip-installed package the upstream range applies...
		fs, _ := Match(context.Background(), &scan.Inventory{Packages: []scan.Package{p}}, mem)
		found := false
		for _, f := range fs {
			found = found || f.AdvisoryID == c[2]
		}
		if !found {
			t.Errorf("%s %s: %s not reported for a pip-installed package", c[0], c[1], c[2])
		}
		// ...but Debian's copy is matched only through the OS package.
		p.OSManaged = true
		fs, _ = Match(context.Background(), &scan.Inventory{Packages: []scan.Package{p}}, mem)
		if len(fs) != 0 {
			t.Errorf("%s %s: OS-managed package matched against PyPI: %d findings", c[0], c[1], len(fs))
		}
	}
}

// TestAlpineSecDBOnAlpine311 matches alpine-3.11.13's packages (by origin)
// against the shared v3.11 secdb: every fix it lists is older than what the
// image ships, so nothing may be reported — and a downgraded openssl must be.
func TestAlpineSecDBOnAlpine311(t *testing.T) {
	shared := sharedDir(t)
	ld, err := LoadPath(context.Background(), filepath.Join(shared, "vulndata/alpine/v3.11"))
	if err != nil {
		t.Fatal(err)
	}
	mem := NewMemory(ld.Sources["Alpine"])
	b, err := os.ReadFile(filepath.Join(shared, "images/alpine.expected/apk-installed-3.11.13-x86_64.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	inv := &scan.Inventory{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		c := strings.Split(line, "\t")
		if len(c) < 4 {
			continue
		}
		inv.Packages = append(inv.Packages, scan.Package{Ecosystem: "Alpine:v3.11", Name: c[0], Version: c[1], SourceName: c[3], Kind: scan.KindOS})
	}
	fs, err := Match(context.Background(), inv, mem)
	if err != nil || len(fs) != 0 {
		t.Fatalf("alpine 3.11.13 against its 2020 secdb: %d findings (%v), want none: %+v", len(fs), err, fs)
	}
	old := &scan.Inventory{Packages: []scan.Package{{Ecosystem: "Alpine:v3.11", Name: "libssl1.1", Version: "1.1.1d-r2", SourceName: "openssl", Kind: scan.KindOS}}}
	fs, _ = Match(context.Background(), old, mem)
	ids := map[string]bool{}
	for _, f := range fs {
		ids[f.VulnerabilityID] = true
	}
	if !ids["CVE-2019-1551"] {
		t.Errorf("openssl 1.1.1d-r2 (libssl1.1): CVE-2019-1551 (fixed 1.1.1d-r3) not reported: %v", ids)
	}
}
