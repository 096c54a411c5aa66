package scan_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// sharedDir returns ../shared (env TOLLGATE_SHARED), skipping loudly when
// absent and failing under CI=true.
func sharedDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("TOLLGATE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "images", "INDEX.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %s (set TOLLGATE_SHARED): %v", d, err)
		}
		t.Skipf("!!! SKIPPING: shared test material not found at %s (set TOLLGATE_SHARED) !!!", d)
	}
	return d
}

// layoutFetcher reads blobs of an OCI image layout directory.
type layoutFetcher struct{ dir string }

func (l layoutFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded()))
}

// layoutRef returns the manifest bytes and media type of tag in an OCI layout.
func layoutRef(t testing.TB, dir, tag string) ([]byte, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      digest.Digest     `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			rc, err := layoutFetcher{dir}.Fetch(context.Background(), "", m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			body, _ := io.ReadAll(rc)
			return body, m.MediaType
		}
	}
	t.Fatalf("tag %s not in %s", tag, dir)
	return nil, ""
}

func newAssembler(opts scan.AssemblerOptions) *scan.Assembler {
	opts.Analyzers = analyzer.Default(analyzer.Options{})
	return scan.NewAssembler(opts)
}

func assembleLayout(t *testing.T, dir, tag string) []*scan.Inventory {
	t.Helper()
	body, mt := layoutRef(t, dir, tag)
	invs, err := newAssembler(scan.AssemblerOptions{}).Assemble(context.Background(), "test/"+tag, layoutFetcher{dir}, body, mt)
	if err != nil {
		t.Fatalf("assemble %s: %v", tag, err)
	}
	for _, inv := range invs {
		for _, e := range inv.Errors {
			t.Errorf("%s: layer error %+v", tag, e)
		}
	}
	return invs
}

func lines(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func pkgLines(inv *scan.Inventory, eco string, f func(p scan.Package) string) []string {
	var out []string
	for _, p := range inv.Packages {
		if p.Ecosystem == eco {
			out = append(out, f(p))
		}
	}
	sort.Strings(out)
	return out
}

func diff(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	for _, s := range want {
		if !g[s] {
			t.Errorf("%s: missing %q", what, s)
		}
	}
	for _, s := range got {
		if !w[s] {
			t.Errorf("%s: unexpected %q", what, s)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d packages, want %d", what, len(got), len(want))
	}
}

func dpkgLine(p scan.Package) string {
	return fmt.Sprintf("ii  %s %s %s %s %s", p.Name, p.Version, p.Arch, p.SourceName, p.SourceVersion)
}

func TestSharedDebianImages(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "images", "debian12")
	exp := filepath.Join(sharedDir(t), "images", "debian12.expected")
	pyWant := lines(t, filepath.Join(exp, "python-dists.txt"))
	npmWant := npmLs(t, filepath.Join(exp, "npm-ls.json"))
	for _, tc := range []struct {
		tag, dpkg string
		py, npm   bool
	}{
		{"debian12-minbase", "dpkg-minbase.txt", false, false},
		{"debian12-apps", "dpkg-apps.txt", true, false},
		{"debian12-node", "dpkg-apps.txt", true, true},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			invs := assembleLayout(t, dir, tc.tag)
			if len(invs) != 1 {
				t.Fatalf("%d inventories", len(invs))
			}
			inv := invs[0]
			if inv.OS == nil || inv.OS.ID != "debian" || inv.OS.VersionID != "12" {
				t.Fatalf("os %+v", inv.OS)
			}
			if inv.Platform.String() != "linux/amd64" {
				t.Errorf("platform %s", inv.Platform)
			}
			diff(t, "dpkg", pkgLines(inv, "Debian:12", dpkgLine), lines(t, filepath.Join(exp, tc.dpkg)))
			e2fs := false
			for _, p := range inv.Packages {
				e2fs = e2fs || p.Name == "e2fsprogs" && p.Kind == scan.KindOS
				if p.Kind == scan.KindOS && !strings.Contains(p.PURL, "distro=debian-12") {
					t.Errorf("purl %s", p.PURL)
				}
			}
			if want := tc.tag == "debian12-minbase"; e2fs != want {
				t.Errorf("e2fsprogs present=%v, want %v (purged in layer 2)", e2fs, want)
			}
			var pyWantHere []string
			if tc.py {
				pyWantHere = pyWant
			}
			py := pkgLines(inv, "PyPI", func(p scan.Package) string {
				if !p.OSManaged {
					t.Errorf("python %s not marked OS-managed", p.Name)
				}
				return p.Name + " " + p.Version
			})
			diff(t, "python", py, pyWantHere)
			var npmWantHere []string
			if tc.npm {
				npmWantHere = npmWant
			}
			diff(t, "npm", pkgLines(inv, "npm", func(p scan.Package) string { return p.Name + "@" + p.Version }), npmWantHere)
		})
	}
}

// npmLs flattens `npm ls --all --json` into sorted unique name@version.
func npmLs(t *testing.T, file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		Version      string           `json:"version"`
		Dependencies map[string]*node `json:"dependencies"`
	}
	var root node
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var walk func(map[string]*node)
	walk = func(m map[string]*node) {
		for n, d := range m {
			if d.Version != "" {
				set[n+"@"+d.Version] = true
			}
			walk(d.Dependencies)
		}
	}
	walk(root.Dependencies)
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSharedAlpineImages(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "images", "alpine")
	exp := filepath.Join(sharedDir(t), "images", "alpine.expected")
	apk := func(p scan.Package) string {
		return strings.Join([]string{p.Name, p.Version, p.Arch, p.SourceName}, "\t")
	}
	invs := assembleLayout(t, dir, "alpine-3.11.13")
	if len(invs) != 1 {
		t.Fatalf("%d inventories", len(invs))
	}
	diff(t, "apk 3.11", pkgLines(invs[0], "Alpine:v3.11", apk), lines(t, filepath.Join(exp, "apk-installed-3.11.13-x86_64.tsv")))

	invs = assembleLayout(t, dir, "alpine-3.18.9")
	if len(invs) != 2 {
		t.Fatalf("index gave %d inventories, want 2", len(invs))
	}
	for _, inv := range invs {
		file := map[string]string{"linux/amd64": "x86_64", "linux/arm64/v8": "aarch64"}[inv.Platform.String()]
		if file == "" {
			t.Fatalf("platform %s", inv.Platform)
		}
		diff(t, "apk 3.18 "+file, pkgLines(inv, "Alpine:v3.18", apk), lines(t, filepath.Join(exp, "apk-installed-3.18.9-"+file+".tsv")))
	}
	body, mt := layoutRef(t, dir, "alpine-3.18.9")
	one, err := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), Platform: "linux/arm64"}).
		Assemble(context.Background(), "a", layoutFetcher{dir}, body, mt)
	if err != nil || len(one) != 1 || one[0].Platform.Architecture != "arm64" {
		t.Fatalf("platform filter: %v %d", err, len(one))
	}
}

// archiveFetcher serves a docker-archive tarball's blobs.
type archiveFetcher struct{ path string }

func (a archiveFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	img, err := tarball.ImageFromPath(a.path, nil)
	if err != nil {
		return nil, err
	}
	cfgName, _ := img.ConfigName()
	if cfgName.String() == d.String() {
		b, err := img.RawConfigFile()
		return io.NopCloser(strings.NewReader(string(b))), err
	}
	h, err := v1Hash(d)
	if err != nil {
		return nil, err
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func TestSharedGoStatic(t *testing.T) {
	file := filepath.Join(sharedDir(t), "images", "go-static.docker.tar")
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := img.RawManifest()
	invs, err := newAssembler(scan.AssemblerOptions{}).Assemble(context.Background(), "go-static", archiveFetcher{file}, body, "")
	if err != nil || len(invs) != 1 {
		t.Fatalf("assemble: %v", err)
	}
	var want []string
	for _, l := range lines(t, filepath.Join(sharedDir(t), "images", "go-static.expected", "go-version-m.txt")) {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "dep" {
			want = append(want, f[1]+" "+strings.TrimPrefix(f[2], "v"))
		}
	}
	want = append(want, "stdlib 1.21.0")
	sort.Strings(want)
	got := pkgLines(invs[0], "Go", func(p scan.Package) string {
		if p.Path != "usr/local/bin/vulnapp" {
			t.Errorf("path %s", p.Path)
		}
		return p.Name + " " + p.Version
	})
	diff(t, "go", got, want)
}
