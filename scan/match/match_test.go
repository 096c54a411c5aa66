package match

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func loadFixtures(t testing.TB) *Memory {
	t.Helper()
	var all []Advisory
	paths, _ := filepath.Glob("testdata/osv/*")
	paths = append(paths, "testdata/secdb-v3.11.yaml")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		advs, err := Parse(p, b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		all = append(all, advs...)
	}
	return NewMemory(all)
}

const img = digest.Digest("sha256:1111111111111111111111111111111111111111111111111111111111111111")

func TestMatchFixtures(t *testing.T) {
	mem := loadFixtures(t)
	tests := []struct {
		name     string
		pkg      scan.Package
		want     []string // vulnerability ids
		fix      string   // FixAvailable of the first finding
		fixed    []string
		severity scan.Severity
	}{
		{name: "go module below first fix", pkg: scan.Package{Ecosystem: "Go", Name: "example.com/mod", Version: "v1.1.9", Kind: scan.KindLang},
			want: []string{"CVE-2099-0001"}, fix: "YES", fixed: []string{"1.2.0"}, severity: scan.SeverityCritical},
		{name: "go module at fix", pkg: scan.Package{Ecosystem: "Go", Name: "example.com/mod", Version: "v1.2.0", Kind: scan.KindLang}},
		{name: "go module between ranges", pkg: scan.Package{Ecosystem: "Go", Name: "example.com/mod", Version: "v1.2.9", Kind: scan.KindLang}},
		{name: "go module second range", pkg: scan.Package{Ecosystem: "Go", Name: "example.com/mod", Version: "v1.3.4", Kind: scan.KindLang},
			want: []string{"CVE-2099-0001"}, fix: "YES", fixed: []string{"1.3.5"}, severity: scan.SeverityCritical},
		{name: "go pseudo-version below fix", pkg: scan.Package{Ecosystem: "Go", Name: "example.com/mod", Version: "v0.0.0-20210226172049-e18ecbb05110", Kind: scan.KindLang},
			want: []string{"CVE-2099-0001"}, fix: "YES", fixed: []string{"1.2.0"}, severity: scan.SeverityCritical},
		{name: "stdlib toolchain form", pkg: scan.Package{Ecosystem: "Go", Name: "stdlib", Version: "go1.21.0", Kind: scan.KindLang},
			want: []string{"CVE-2099-0001"}, fix: "YES", fixed: []string{"1.21.1"}, severity: scan.SeverityCritical},
		{name: "stdlib fixed", pkg: scan.Package{Ecosystem: "Go", Name: "stdlib", Version: "go1.21.1", Kind: scan.KindLang}},
		{name: "pypi explicit version and range; GIT ignored", pkg: scan.Package{Ecosystem: "PyPI", Name: "urllib3", Version: "1.26.12", Kind: scan.KindLang},
			want: []string{"CVE-2099-1111"}, fix: "YES", fixed: []string{"1.26.18"}, severity: scan.SeverityMedium},
		{name: "pypi yaml 1.10 is not 1.1", pkg: scan.Package{Ecosystem: "PyPI", Name: "urllib3", Version: "1.9", Kind: scan.KindLang}},
		{name: "pypi os-managed not matched", pkg: scan.Package{Ecosystem: "PyPI", Name: "urllib3", Version: "1.26.12", Kind: scan.KindLang, OSManaged: true}},
		{name: "rpm binary name with epoch", pkg: scan.Package{Ecosystem: "AlmaLinux:9", Name: "openssl-libs", Version: "1:3.0.7-6.el9_2", SourceName: "openssl", Kind: scan.KindOS},
			want: []string{"CVE-2099-2222"}, fix: "YES", fixed: []string{"1:3.0.7-16.el9_2"}, severity: scan.SeverityHigh},
		{name: "rpm release 8 never matches 9", pkg: scan.Package{Ecosystem: "AlmaLinux:8", Name: "openssl-libs", Version: "1:1.0-1.el8", Kind: scan.KindOS}},
		{name: "debian by source package", pkg: scan.Package{Ecosystem: "Debian:12", Name: "libssl3", Version: "3.0.20-1~deb12u2", SourceName: "openssl", Kind: scan.KindOS},
			want: []string{"CVE-2099-3333"}, fix: "YES", fixed: []string{"3.0.20-1~deb12u3"}, severity: scan.SeverityUntriaged},
		{name: "debian binNMU uses source version", pkg: scan.Package{Ecosystem: "Debian:12", Name: "libssl3", Version: "3.0.20-1~deb12u3+b1", SourceName: "openssl", SourceVersion: "3.0.20-1~deb12u3", Kind: scan.KindOS}},
		{name: "debian 12 range never matches debian 11", pkg: scan.Package{Ecosystem: "Debian:11", Name: "libssl1.1", Version: "1.1.1w-0+deb11u5", SourceName: "openssl", Kind: scan.KindOS}},
		{name: "npm last_affected inclusive, withdrawn skipped", pkg: scan.Package{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Kind: scan.KindLang},
			want: []string{"CVE-2099-4444"}, fix: "NO", severity: scan.SeverityHigh},
		{name: "npm above last_affected", pkg: scan.Package{Ecosystem: "npm", Name: "lodash", Version: "4.17.16", Kind: scan.KindLang}},
		{name: "alpine secdb by origin", pkg: scan.Package{Ecosystem: "Alpine:v3.11", Name: "libcrypto1.1", Version: "1.1.1d-r2", SourceName: "openssl", Kind: scan.KindOS},
			want: []string{"CVE-2019-1551", "CVE-2020-1967"}, fix: "YES", severity: scan.SeverityUntriaged},
		{name: "alpine secdb fixed", pkg: scan.Package{Ecosystem: "Alpine:v3.11", Name: "libcrypto1.1", Version: "1.1.1l-r0", SourceName: "openssl", Kind: scan.KindOS}},
		{name: "alpine secdb other branch", pkg: scan.Package{Ecosystem: "Alpine:v3.18", Name: "libcrypto3", Version: "1.0.0-r0", SourceName: "openssl", Kind: scan.KindOS}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := &scan.Inventory{Image: img, Packages: []scan.Package{tc.pkg}}
			fs, err := Match(context.Background(), inv, mem)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.VulnerabilityID)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if len(fs) == 0 {
				return
			}
			f := fs[0]
			if f.FixAvailable != tc.fix {
				t.Errorf("FixAvailable %s, want %s", f.FixAvailable, tc.fix)
			}
			if tc.fixed != nil && !slices.Equal(f.FixedVersions, tc.fixed) {
				t.Errorf("FixedVersions %v, want %v", f.FixedVersions, tc.fixed)
			}
			if f.Severity != tc.severity {
				t.Errorf("Severity %s, want %s", f.Severity, tc.severity)
			}
			if f.ID != FindingID(img, &tc.pkg, f.VulnerabilityID) || f.Status != scan.FindingActive || f.Package.Name != tc.pkg.Name {
				t.Errorf("finding identity wrong: %+v", f)
			}
		})
	}
}

func TestVulnerabilityIDAndRelated(t *testing.T) {
	mem := loadFixtures(t)
	inv := &scan.Inventory{Image: img, Packages: []scan.Package{{Ecosystem: "Go", Name: "example.com/mod", Version: "v1.0.0"}}}
	fs, err := Match(context.Background(), inv, mem)
	if err != nil || len(fs) != 1 {
		t.Fatalf("%v %v", fs, err)
	}
	f := fs[0]
	if f.VulnerabilityID != "CVE-2099-0001" || f.AdvisoryID != "GO-2099-0001" {
		t.Errorf("ids %s %s", f.VulnerabilityID, f.AdvisoryID)
	}
	if !slices.Equal(f.RelatedIDs, []string{"GHSA-aaaa-bbbb-cccc", "GO-2099-0001"}) {
		t.Errorf("related %v", f.RelatedIDs)
	}
	if len(f.CVSS) != 1 || f.CVSS[0].BaseScore != 9.8 || f.CVSS[0].Version != "3.1" {
		t.Errorf("cvss %+v", f.CVSS)
	}
	if f.SourceURL != "https://example.com/GO-2099-0001" || f.Title != "Test flaw in example.com/mod" {
		t.Errorf("source %q title %q", f.SourceURL, f.Title)
	}
}

func TestDuplicateCVEAcrossAdvisoriesGivesOneFinding(t *testing.T) {
	mk := func(id string, fixed string) Advisory {
		return Advisory{ID: id, Aliases: []string{"CVE-2099-7777"}, Affected: []Affected{{
			Package: AffectedPackage{Ecosystem: "PyPI", Name: "x"},
			Ranges:  []Range{{Type: RangeEcosystem, Events: []Event{{Introduced: "0"}, {Fixed: fixed}}}},
		}}}
	}
	mem := NewMemory([]Advisory{mk("PYSEC-1", "2.0"), mk("GHSA-1", "2.1")})
	inv := &scan.Inventory{Image: img, Packages: []scan.Package{{Ecosystem: "PyPI", Name: "x", Version: "1.0"}}}
	fs, _ := Match(context.Background(), inv, mem)
	if len(fs) != 1 {
		t.Fatalf("want 1 finding, got %d", len(fs))
	}
	if !slices.Equal(fs[0].FixedVersions, []string{"2.0", "2.1"}) || !slices.Contains(fs[0].RelatedIDs, "GHSA-1") {
		t.Errorf("merge: %+v", fs[0])
	}
}

func TestRangeRules(t *testing.T) {
	ev := func(kv ...string) []Event {
		var out []Event
		for i := 0; i < len(kv); i += 2 {
			switch kv[i] {
			case "i":
				out = append(out, Event{Introduced: kv[i+1]})
			case "f":
				out = append(out, Event{Fixed: kv[i+1]})
			case "l":
				out = append(out, Event{LastAffected: kv[i+1]})
			case "x":
				out = append(out, Event{Limit: kv[i+1]})
			}
		}
		return out
	}
	tests := []struct {
		name    string
		typ     string
		events  []Event
		version string
		want    bool
		unfixed bool
	}{
		{"introduced only", RangeSemver, ev("i", "1.0.0"), "2.0.0", true, true},
		{"below introduced", RangeSemver, ev("i", "1.0.0"), "0.9.0", false, false},
		{"fixed exclusive", RangeSemver, ev("i", "0", "f", "1.0.0"), "1.0.0", false, false},
		{"last_affected inclusive", RangeSemver, ev("i", "0", "l", "1.0.0"), "1.0.0", true, true},
		{"limit bounds", RangeSemver, ev("i", "0", "x", "2.0.0"), "2.0.0", false, false},
		{"limit star", RangeSemver, ev("i", "0", "x", "*"), "9.0.0", true, true},
		{"unsorted events", RangeSemver, ev("f", "1.5.0", "i", "1.0.0", "i", "2.0.0", "f", "2.5.0"), "2.1.0", true, false},
		{"unsorted events gap", RangeSemver, ev("f", "1.5.0", "i", "1.0.0", "i", "2.0.0", "f", "2.5.0"), "1.7.0", false, false},
		{"ecosystem dpkg epoch", RangeEcosystem, ev("i", "0", "f", "1:1.2.13.dfsg-1"), "1.2.13.dfsg-9", true, false},
		{"git ignored", RangeGit, ev("i", "0", "f", "abc"), "1.0", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eco := "npm"
			if tc.typ == RangeEcosystem {
				eco = "Debian:12"
			}
			af := Affected{Package: AffectedPackage{Ecosystem: eco, Name: "p"}, Ranges: []Range{{Type: tc.typ, Events: tc.events}}}
			vd := af.Evaluate(eco, tc.version)
			if vd.Affected != tc.want || vd.Unfixed != tc.unfixed {
				t.Errorf("got affected=%v unfixed=%v, want %v %v (%+v)", vd.Affected, vd.Unfixed, tc.want, tc.unfixed, vd)
			}
			if tc.typ == RangeGit && (len(vd.Ignored) == 0 || !strings.Contains(vd.Ignored[0], "GIT")) {
				t.Errorf("GIT range not reported ignored: %v", vd.Ignored)
			}
		})
	}
}

func TestSupportedOS(t *testing.T) {
	for id, want := range map[string]bool{"debian": true, "alpine": true, "almalinux": true, "ubuntu": true, "arch": false, "gentoo": false,
		// every ID scan resolves into a SUSE feed ecosystem; none for Amazon Linux in tollgate's feeds
		"sles": true, "sled": true, "sle-micro": true, "sles_sap": true, "opensuse-leap": true, "amzn": false} {
		if got := SupportedOS(&scan.OSRelease{ID: id}); got != want {
			t.Errorf("%s: %v", id, got)
		}
	}
	if !SupportedOS(nil) {
		t.Error("no os-release must be supported (language packages)")
	}
}

func TestSeverityMapping(t *testing.T) {
	for _, tc := range []struct {
		score float64
		want  scan.Severity
	}{{9.8, scan.SeverityCritical}, {9.0, scan.SeverityCritical}, {8.9, scan.SeverityHigh}, {7.0, scan.SeverityHigh}, {6.9, scan.SeverityMedium}, {4.0, scan.SeverityMedium}, {3.9, scan.SeverityLow}, {0.1, scan.SeverityLow}, {0, scan.SeverityInformational}} {
		if got := scan.SeverityFromScore(tc.score); got != tc.want {
			t.Errorf("%v → %s, want %s", tc.score, got, tc.want)
		}
	}
	cv := CVSSScores([]SeverityScore{{Type: "CVSS_V4", Score: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}, {Type: "CVSS_V3", Score: "garbage"}})
	if len(cv) != 1 || cv[0].Version != "4.0" || cv[0].BaseScore != 9.3 {
		t.Errorf("v4: %+v", cv)
	}
}

func TestFindingIDStable(t *testing.T) {
	p := scan.Package{Ecosystem: "Go", Name: "a", Version: "v1", Path: "usr/bin/x"}
	id1 := FindingID(img, &p, "CVE-1")
	if id1 != FindingID(img, &p, "CVE-1") || len(id1) != 32 {
		t.Fatal("unstable id")
	}
	p2 := p
	p2.Path = "usr/bin/y"
	if FindingID(img, &p2, "CVE-1") == id1 || FindingID(img, &p, "CVE-2") == id1 {
		t.Fatal("ids collide")
	}
}

func TestParseSecDB(t *testing.T) {
	b, _ := os.ReadFile("testdata/secdb-v3.11.yaml")
	advs, err := ParseSecDB(b)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range advs {
		ids = append(ids, a.ID)
		if a.Affected[0].Package.Ecosystem != "Alpine:v3.11" {
			t.Errorf("ecosystem %s", a.Affected[0].Package.Ecosystem)
		}
	}
	want := []string{"ALPINE-CVE-2019-1551", "ALPINE-CVE-2020-1967", "ALPINE-CVE-2020-28928"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v (key 0 must give nothing)", ids, want)
	}
	// JSON form, same keys.
	j := `{"distroversion":"v3.20","reponame":"main","packages":[{"pkg":{"name":"zlib","secfixes":{"1.2.12-r0":["CVE-2018-25032"],"0":["CVE-2022-0001"]}}}]}`
	advs, err = ParseSecDB([]byte(j))
	if err != nil || len(advs) != 1 || advs[0].Affected[0].Package.Ecosystem != "Alpine:v3.20" || advs[0].Affected[0].Ranges[0].Events[1].Fixed != "1.2.12-r0" {
		t.Fatalf("json secdb: %+v %v", advs, err)
	}
	if _, err := ParseSecDB([]byte("distroversion: edge\npackages: []\n")); err == nil {
		t.Error("unknown distroversion accepted")
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{`{}`, `{"id":"a/b"}`, `{"id":"X","affected":[{"package":{"name":"n"}}]}`, `not: [valid`} {
		if _, err := Parse("x", []byte(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}

func TestMatcherReuseAcrossImages(t *testing.T) {
	key := PackageKey{Ecosystem: "npm", Name: "lodash"}
	advs := []Advisory{{ID: "GHSA-1", Aliases: []string{"CVE-1"}, Affected: []Affected{{Package: AffectedPackage{Ecosystem: "npm", Name: "lodash"},
		Ranges: []Range{{Type: RangeSemver, Events: []Event{{Introduced: "0"}, {Fixed: "4.17.21"}}}}}}}}
	m := NewMatcher(key, advs)
	p1 := scan.Package{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Path: "a"}
	p2 := scan.Package{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Path: "b"}
	f1 := m.Match("sha256:01", &p1, p1.Version)
	f1[0].FixedVersions[0] = "mutated"
	f2 := m.Match("sha256:02", &p2, p2.Version)
	if len(f1) != 1 || len(f2) != 1 {
		t.Fatalf("%d %d findings", len(f1), len(f2))
	}
	if f2[0].Image != "sha256:02" || f2[0].Package.Path != "b" || f2[0].ID == f1[0].ID || f2[0].FixedVersions[0] != "4.17.21" {
		t.Errorf("matcher leaks state between images: %+v", f2[0])
	}
	if got := m.Match("sha256:03", &p1, "4.17.21"); len(got) != 0 {
		t.Errorf("fixed version matched: %+v", got)
	}
}
