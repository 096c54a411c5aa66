//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// scanWait bounds every wait for scans: generous, the CI machine has 2
// shared cores and the suite pushes ~60 MB of real images.
const scanWait = 8 * time.Minute

// scanned is one shared image manifest (an index child is its own) as the
// suite expects it covered.
type scanned struct {
	Repo, Tag, Digest string
	Platform          string // index children only
	Layers            []string
}

func (s scanned) ref() string { return s.Repo + "@" + s.Digest }

// manifests lists the image manifests of the shared images (index children
// included) with their layer digests.
func manifests(t testing.TB, images []sharedImage) []scanned {
	t.Helper()
	var out []scanned
	for _, si := range images {
		if !si.Index {
			out = append(out, scanned{Repo: si.Repo, Tag: si.Tag, Digest: si.Digest.String(), Layers: layerDigests(t, si.img)})
			continue
		}
		im, err := si.idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			img, err := si.idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			pl := ""
			if d.Platform != nil {
				pl = d.Platform.String()
			}
			out = append(out, scanned{Repo: si.Repo, Tag: si.Tag, Digest: d.Digest.String(), Platform: pl, Layers: layerDigests(t, img)})
		}
	}
	return out
}

// TestScanSharedImages is the product's proof on real input: import
// ../shared/vulndata into a running `tollgate serve`, push every shared
// image, wait for the scans, and check coverage, inventories, the layer
// that introduced packages and findings through the CLI; then an advisory
// delta rescans only the image it concerns.
func TestScanSharedImages(t *testing.T) {
	shared := sharedDir(t)
	s := startServer(t, t.TempDir(), "--config", writeConfig(t, ""))
	skipUnlessScanning(t, s)

	// Advisories first: every set of ../shared/vulndata that is OSV or secdb.
	res := s.importAdvisories(t, false, filepath.Join(shared, "vulndata"))
	got := map[string]int{}
	for _, r := range res {
		if r.Err != "" {
			t.Errorf("import %s: %s", r.Source, r.Err)
		}
		got[r.Source] = r.Count
	}
	for _, src := range []string{"Go", "PyPI", "Alpine", "AlmaLinux"} {
		if got[src] == 0 {
			t.Errorf("import of ../shared/vulndata: no %s advisories (results %v)", src, got)
		}
	}
	t.Logf("imported advisories: %v", got)

	images := loadSharedImages(t, shared)
	for _, si := range images {
		si.push(t, s.Registry)
	}
	// An image with no OS and no packages: UNSUPPORTED_OS, a reason instead of silence.
	rnd, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	rndDigest, _ := rnd.Digest()
	rndTag, _ := name.NewTag(s.Registry+"/e2e/random:v1", name.Insecure)
	if err := remote.Write(rndTag, rnd); err != nil {
		t.Fatal(err)
	}
	rndRef := "e2e/random@" + rndDigest.String()

	want := manifests(t, images)
	if len(want) != 7 {
		t.Fatalf("%d shared image manifests, want 7 (3 Debian, Alpine 3.11, 2 Alpine 3.18 children, go-static)", len(want))
	}
	var refs []string
	byTag := map[string]scanned{}
	for _, m := range want {
		refs = append(refs, m.ref())
		byTag[m.Tag+"|"+m.Platform] = m
	}
	cov := s.waitCoverage(t, append(refs, rndRef), scanWait, func(coveredImage) bool { return true })

	t.Run("coverage", func(t *testing.T) {
		for _, m := range want {
			ci := cov[m.ref()]
			if ci.StatusCode != "ACTIVE" || ci.Reason != "SUCCESSFUL" || ci.LastScannedAt == 0 {
				t.Errorf("%s (%s %s): coverage %s/%s lastScannedAt %v, want ACTIVE/SUCCESSFUL with a time", m.ref(), m.Tag, m.Platform, ci.StatusCode, ci.Reason, ci.LastScannedAt)
			}
			if ci.Frequency != "CONTINUOUS_SCAN" {
				t.Errorf("%s: scan frequency %q, want the default CONTINUOUS_SCAN", m.ref(), ci.Frequency)
			}
		}
		if ci := cov[rndRef]; ci.Reason != "UNSUPPORTED_OS" || ci.StatusCode != "INACTIVE" {
			t.Errorf("random image without OS or packages: coverage %s/%s, want INACTIVE/UNSUPPORTED_OS", ci.StatusCode, ci.Reason)
		}
	})

	exp := func(parts ...string) string { return filepath.Join(append([]string{shared, "images"}, parts...)...) }

	t.Run("debian12", func(t *testing.T) {
		minbase := fileLines(t, exp("debian12.expected", "dpkg-minbase.txt"))
		apps := fileLines(t, exp("debian12.expected", "dpkg-apps.txt"))
		py := fileLines(t, exp("debian12.expected", "python-dists.txt"))
		npm := npmLs(t, exp("debian12.expected", "npm-ls.json"))
		inMinbase := map[string]bool{}
		for _, l := range minbase {
			inMinbase[l] = true
		}
		for _, tc := range []struct {
			tag      string
			dpkg     []string
			py, npm  bool
			e2fsprog bool
		}{
			{"debian12-minbase", minbase, false, false, true},
			{"debian12-apps", apps, true, false, false},
			{"debian12-node", apps, true, true, false},
		} {
			m := byTag[tc.tag+"|"]
			cs := s.sbom(t, m.ref())
			var dpkg, pyGot, npmGot []string
			e2fs := false
			for _, c := range cs {
				switch c.Ecosystem {
				case "Debian:12":
					src, srcVer, _ := strings.Cut(c.Source, "@")
					line := fmt.Sprintf("ii  %s %s %s %s %s", c.Name, c.Version, purlQualifier(c.PURL, "arch"), src, srcVer)
					dpkg = append(dpkg, line)
					e2fs = e2fs || c.Name == "e2fsprogs"
					wantLayer := m.Layers[0]
					if !inMinbase[line] {
						wantLayer = m.Layers[1]
					}
					if c.Layer != wantLayer {
						t.Errorf("%s: dpkg %s %s introduced by layer %s, want %s", tc.tag, c.Name, c.Version, short(c.Layer), short(wantLayer))
					}
				case "PyPI":
					pyGot = append(pyGot, c.Name+" "+c.Version)
					if !c.OSManaged {
						t.Errorf("%s: Python %s not marked OS-managed (Debian's python3-* owns it)", tc.tag, c.Name)
					}
					if c.Layer != m.Layers[1] {
						t.Errorf("%s: Python %s introduced by layer %s, want layer 2 %s", tc.tag, c.Name, short(c.Layer), short(m.Layers[1]))
					}
				case "npm":
					npmGot = append(npmGot, c.Name+"@"+c.Version)
					if c.Layer != m.Layers[2] {
						t.Errorf("%s: npm %s introduced by layer %s, want layer 3 %s", tc.tag, c.Name, short(c.Layer), short(m.Layers[2]))
					}
				default:
					t.Errorf("%s: unexpected %s component %s %s", tc.tag, c.Ecosystem, c.Name, c.Version)
				}
			}
			sameSet(t, tc.tag+" dpkg", dpkg, tc.dpkg)
			if e2fs != tc.e2fsprog {
				t.Errorf("%s: e2fsprogs present=%v, want %v (purged in layer 2 of debian12-apps)", tc.tag, e2fs, tc.e2fsprog)
			}
			sameSet(t, tc.tag+" python", pyGot, pick(tc.py, py))
			sameSet(t, tc.tag+" npm", npmGot, pick(tc.npm, npm))
		}
		// pypi-matches.tsv: upstream-version matches of Python dists Debian
		// ships and patches; they are OS-managed, so no PyPI finding.
		for _, tag := range []string{"debian12-apps", "debian12-node"} {
			for _, f := range s.findings(t, byTag[tag+"|"].ref()) {
				for _, id := range f.ids() {
					if strings.HasPrefix(id, "PYSEC-") {
						t.Errorf("%s: PyPI finding %s on an OS-managed Python package (%v)", tag, id, f.PackageVulnerabilityDetails.VulnerablePackages)
					}
				}
			}
		}
	})

	t.Run("alpine", func(t *testing.T) {
		for key, file := range map[string]string{
			"alpine-3.11.13|":              "apk-installed-3.11.13-x86_64.tsv",
			"alpine-3.18.9|linux/amd64":    "apk-installed-3.18.9-x86_64.tsv",
			"alpine-3.18.9|linux/arm64/v8": "apk-installed-3.18.9-aarch64.tsv",
		} {
			m, ok := byTag[key]
			if !ok {
				t.Errorf("no shared manifest %s", key)
				continue
			}
			var got []string
			for _, c := range s.sbom(t, m.ref()) {
				if !strings.HasPrefix(c.Ecosystem, "Alpine:v3.") {
					t.Errorf("%s: unexpected %s component %s", key, c.Ecosystem, c.Name)
					continue
				}
				origin, _, _ := strings.Cut(c.Source, "@")
				got = append(got, strings.Join([]string{c.Name, c.Version, purlQualifier(c.PURL, "arch"), origin}, "\t"))
				if c.Layer != m.Layers[0] {
					t.Errorf("%s: apk %s layer %s, want %s", key, c.Name, short(c.Layer), short(m.Layers[0]))
				}
			}
			sameSet(t, key+" apk", got, fileLines(t, exp("alpine.expected", file)))
		}
	})

	goStatic := byTag["gin-1.6.3|"]
	t.Run("go-static", func(t *testing.T) {
		var wantMods []string
		for _, l := range fileLines(t, exp("go-static.expected", "go-version-m.txt")) {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "dep" {
				wantMods = append(wantMods, f[1]+" "+strings.TrimPrefix(f[2], "v"))
			}
		}
		wantMods = append(wantMods, "stdlib 1.21.0")
		var mods []string
		for _, c := range s.sbom(t, goStatic.ref()) {
			if c.Ecosystem != "Go" {
				t.Errorf("go-static: unexpected %s component %s", c.Ecosystem, c.Name)
				continue
			}
			mods = append(mods, c.Name+" "+c.Version)
			if c.Layer != goStatic.Layers[1] {
				t.Errorf("go-static: module %s layer %s, want layer 2 %s", c.Name, short(c.Layer), short(goStatic.Layers[1]))
			}
		}
		sameSet(t, "go-static modules", mods, wantMods)

		wantIDs := osvMatches(t, exp("go-static.expected", "osv-matches.tsv"))
		gotIDs := map[string]bool{}
		for _, f := range s.findings(t, goStatic.ref()) {
			for _, id := range f.ids() {
				if strings.HasPrefix(id, "GO-") {
					gotIDs[id] = true
				}
			}
			for _, p := range f.PackageVulnerabilityDetails.VulnerablePackages {
				if p.SourceLayerHash != goStatic.Layers[1] {
					t.Errorf("finding %s on %s: sourceLayerHash %s, want %s", f.PackageVulnerabilityDetails.VulnerabilityID, p.Name, short(p.SourceLayerHash), short(goStatic.Layers[1]))
				}
			}
		}
		sameSet(t, "go-static Go advisory ids", keys(gotIDs), wantIDs)
	})

	// An advisory delta: two shared gin advisories with a new modified time,
	// one range widened to contain gin 1.6.3. Only go-static holds gin.
	t.Run("advisory delta", func(t *testing.T) {
		before := s.coverage(t)
		deltaDir := t.TempDir()
		modified := time.Now().UTC().Format(time.RFC3339)
		writeDelta(t, filepath.Join(shared, "vulndata", "go", "osv", "GO-2020-0001.json"), filepath.Join(deltaDir, "GO-2020-0001.json"), modified, "1.7.0")
		writeDelta(t, filepath.Join(shared, "vulndata", "go", "osv", "GO-2021-0052.json"), filepath.Join(deltaDir, "GO-2021-0052.json"), modified, "")
		time.Sleep(1100 * time.Millisecond) // lastScannedAt has second resolution on the wire
		// The CLI a user runs beside a live server: it imports through POST
		// /v1/db/import (the server holds Badger's directory lock).
		out := s.cli(t, "db", "import", "--merge", deltaDir)
		if !strings.Contains(out, "Go") {
			t.Errorf("tollgate db import --admin-url: unexpected answer\n%s", out)
		}
		after := s.waitCoverage(t, append(refs, rndRef), scanWait, func(ci coveredImage) bool {
			return ci.Repo+"@"+ci.Digest != goStatic.ref() || ci.LastScannedAt > before[goStatic.ref()].LastScannedAt
		})
		// The rescans of that delta are queued before the import answers;
		// wait for the queue to drain, then nothing else may have moved.
		deadline := time.Now().Add(scanWait)
		for {
			d, ok := s.metric(t, "tollgate_scan_queue_depth")
			if !ok {
				t.Fatal("GET /metrics has no tollgate_scan_queue_depth")
			}
			if d == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("scan queue did not drain")
			}
			time.Sleep(time.Second)
		}
		after = s.coverage(t)
		for _, r := range append(refs, rndRef) {
			b, a := before[r], after[r]
			if r == goStatic.ref() {
				if a.LastScannedAt <= b.LastScannedAt || a.Reason != "SUCCESSFUL" {
					t.Errorf("go-static after the delta: lastScannedAt %v → %v, reason %s; want it rescanned", b.LastScannedAt, a.LastScannedAt, a.Reason)
				}
				continue
			}
			if a.LastScannedAt != b.LastScannedAt || a.Reason != b.Reason {
				t.Errorf("%s was rescanned by a delta that does not concern it: lastScannedAt %v → %v, reason %s → %s", r, b.LastScannedAt, a.LastScannedAt, b.Reason, a.Reason)
			}
		}
		found := false
		for _, f := range s.findings(t, goStatic.ref()) {
			for _, id := range f.ids() {
				found = found || id == "GO-2020-0001"
			}
		}
		if !found {
			t.Errorf("go-static: no finding for GO-2020-0001 after its range was widened to contain gin 1.6.3")
		}
	})

	// Archive (ECR's archive storage class): unpullable, findings closed;
	// restore: pullable again and rescanned.
	t.Run("archive and restore", func(t *testing.T) {
		before := s.coverage(t)[goStatic.ref()]
		s.cli(t, "archive", goStatic.ref())
		ref, err := name.NewDigest(s.Registry+"/"+goStatic.ref(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		var te *transport.Error
		if _, err := remote.Get(ref); !errors.As(err, &te) || te.StatusCode != 404 || len(te.Errors) == 0 || te.Errors[0].Code != transport.ManifestUnknownErrorCode {
			t.Errorf("pull of an archived image: %v, want 404 MANIFEST_UNKNOWN", err)
		}
		if n := len(s.findings(t, goStatic.ref())); n != 0 {
			t.Errorf("archived go-static still has %d ACTIVE findings", n)
		}
		if n := len(s.findingsStatus(t, goStatic.ref(), "CLOSED")); n == 0 {
			t.Errorf("archived go-static has no CLOSED findings")
		}
		if ci := s.coverage(t)[goStatic.ref()]; ci.Reason != "IMAGE_ARCHIVED" {
			t.Errorf("archived go-static coverage reason %s, want IMAGE_ARCHIVED", ci.Reason)
		}
		time.Sleep(1100 * time.Millisecond) // lastScannedAt has second resolution on the wire
		s.cli(t, "restore", goStatic.ref())
		s.waitCoverage(t, []string{goStatic.ref()}, scanWait, func(ci coveredImage) bool {
			return ci.Reason == "SUCCESSFUL" && ci.LastScannedAt > before.LastScannedAt
		})
		if _, err := remote.Get(ref); err != nil {
			t.Errorf("pull of a restored image: %v", err)
		}
		if n := len(s.findings(t, goStatic.ref())); n == 0 {
			t.Errorf("restored go-static has no ACTIVE findings after its rescan")
		}
	})
}

// writeDelta copies an OSV record with a new modified time and, when
// fixed is set, the first range's fixed event moved to it.
func writeDelta(t testing.TB, src, dst, modified, fixed string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["modified"] = modified
	if fixed != "" {
		aff := rec["affected"].([]any)[0].(map[string]any)
		rng := aff["ranges"].([]any)[0].(map[string]any)
		for _, e := range rng["events"].([]any) {
			if ev := e.(map[string]any); ev["fixed"] != nil {
				ev["fixed"] = fixed
			}
		}
	}
	out, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// osvMatches reads the advisory ids (third column) of an *-matches.tsv.
func osvMatches(t testing.TB, file string) []string {
	t.Helper()
	set := map[string]bool{}
	for _, l := range fileLines(t, file) {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if f := strings.Split(l, "\t"); len(f) >= 3 {
			set[f[2]] = true
		}
	}
	return keys(set)
}

// purlQualifier returns qualifier q of a purl ("" when absent).
func purlQualifier(purl, q string) string {
	_, qs, ok := strings.Cut(purl, "?")
	if !ok {
		return ""
	}
	v, _ := url.ParseQuery(qs)
	return v.Get(q)
}

func pick(ok bool, v []string) []string {
	if ok {
		return v
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func short(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// sameSet reports the differences between got and want as errors.
func sameSet(t testing.TB, what string, got, want []string) {
	t.Helper()
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	n := 0
	for _, s := range want {
		if !g[s] && n < 20 {
			t.Errorf("%s: missing %q", what, s)
			n++
		}
	}
	for _, s := range got {
		if !w[s] && n < 40 {
			t.Errorf("%s: unexpected %q", what, s)
			n++
		}
	}
	if len(g) != len(w) {
		t.Errorf("%s: %d distinct, want %d", what, len(g), len(w))
	}
}

// layerDigests lists img's layer digests, bottom first.
func layerDigests(t testing.TB, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// fileLines reads the non-empty trimmed lines of file.
func fileLines(t testing.TB, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// npmLs flattens `npm ls --all --json` into name@version.
func npmLs(t testing.TB, file string) []string {
	t.Helper()
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
	return keys(set)
}
