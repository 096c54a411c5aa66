package match

import "testing"

func TestParseVersionOrder(t *testing.T) {
	// Each row: a < b in the ecosystem's order (and b > a, a == a).
	tests := []struct{ eco, a, b string }{
		// dpkg: epochs, tilde before anything, binNMU, revisions.
		{"Debian:12", "2.36-9+deb12u13", "2.36-9+deb12u14"},
		{"Debian:12", "1.2.13.dfsg-1", "1:1.2.13.dfsg-1"},
		{"Debian:12", "3.0.20-1~deb12u2", "3.0.20-1"},
		{"Debian:12", "5.2.15-2", "5.2.15-2+b13"},
		{"Debian:12", "1.0~rc1", "1.0"},
		{"Debian:12", "9:1.0", "10:0.1"},
		{"Ubuntu:22.04", "1.2-3ubuntu1", "1.2-3ubuntu1.1"},
		// apk: -rN, _p, _rc, letters.
		{"Alpine:v3.18", "1.1.1l-r0", "1.1.1m-r0"},
		{"Alpine:v3.18", "3.1.7-r0", "3.1.7-r1"},
		{"Alpine:v3.18", "1.0_rc1-r0", "1.0-r0"},
		{"Alpine:v3.18", "1.0-r0", "1.0_p1-r0"},
		{"Alpine:v3.18", "1.36.1-r7", "1.36.1-r10"},
		// RPM: epoch:version-release, tilde, caret.
		{"AlmaLinux:9", "1.0.9-1.el9", "1.0.10-1.el9"},
		{"AlmaLinux:9", "2:1.0-1.el9", "3:0.1-1.el9"},
		{"AlmaLinux:9", "1.0~beta-1", "1.0-1"},
		{"AlmaLinux:9", "1.0-1", "1.0^git1-1"},
		{"Rocky Linux:9", "3.0.7-6.el9_2", "3.0.7-16.el9_2"},
		// Go: v prefix, +incompatible, pseudo-versions, toolchain form.
		{"Go", "v0.0.0-20210226172049-e18ecbb05110", "0.7.0"},
		{"Go", "v1.6.3", "1.7.7"},
		{"Go", "v0.0.0-20201119102817-f84b799fce68", "0.0.0-20220412211240-33da011f77ad"},
		{"Go", "v2.0.0+incompatible", "2.0.1"},
		{"Go", "go1.21.0", "1.21.1"},
		{"Go", "1.21.0-0", "go1.21.0"},
		{"Go", "go1.20.14", "go1.21rc2"},
		// npm / crates semver: prerelease below release.
		{"npm", "4.17.15", "4.17.19"},
		{"npm", "1.0.0-alpha.1", "1.0.0"},
		{"npm", "1.0.0-alpha", "1.0.0-alpha.1"},
		{"crates.io", "0.9.9", "0.10.0"},
		// PEP 440.
		{"PyPI", "2.28.1", "2.31.0"},
		{"PyPI", "1.0rc1", "1.0"},
		{"PyPI", "1.0.dev1", "1.0a1"},
		{"PyPI", "1.0", "1.0.post1"},
		{"PyPI", "1!0.1", "1!0.2"},
		{"PyPI", "2022.9.24", "2022.12.7"},
		// Maven ComparableVersion.
		{"Maven", "1.0-alpha", "1.0"},
		{"Maven", "1.0-RC1", "1.0"},
		{"Maven", "1.0", "1.0-sp1"},
		{"Maven", "2.9.10.7", "2.12.0"},
		// RubyGems.
		{"RubyGems", "1.0.0.pre", "1.0.0"},
		{"RubyGems", "1.9", "1.10"},
		// NuGet.
		{"NuGet", "1.0.0-beta", "1.0.0"},
		{"NuGet", "4.5.0", "4.5.1"},
		// Packagist.
		{"Packagist", "1.0.0-RC1", "1.0.0"},
		{"Packagist", "v2.3.4", "2.10.0"},
	}
	for _, tc := range tests {
		t.Run(tc.eco+"/"+tc.a+"<"+tc.b, func(t *testing.T) {
			a, err := ParseVersion(tc.eco, tc.a)
			if err != nil {
				t.Fatalf("parse %q: %v", tc.a, err)
			}
			b, err := ParseVersion(tc.eco, tc.b)
			if err != nil {
				t.Fatalf("parse %q: %v", tc.b, err)
			}
			if c, _ := a.Compare(b); c != -1 {
				t.Errorf("%s: compare(%q, %q) = %d, want -1", tc.eco, tc.a, tc.b, c)
			}
			if c, _ := b.Compare(a); c != 1 {
				t.Errorf("%s: compare(%q, %q) = %d, want 1", tc.eco, tc.b, tc.a, c)
			}
			if c, _ := a.Compare(a); c != 0 {
				t.Errorf("%s: compare(%q, itself) = %d", tc.eco, tc.a, c)
			}
		})
	}
}

func TestParseVersionEqual(t *testing.T) {
	for _, tc := range []struct{ eco, a, b string }{
		{"Debian:12", "0:1.0-1", "1.0-1"},
		{"PyPI", "1.0", "1.0.0"},
		{"Go", "go1.21", "1.21.0"},
		{"Go", "v1.2.3", "1.2.3"},
	} {
		a, err1 := ParseVersion(tc.eco, tc.a)
		b, err2 := ParseVersion(tc.eco, tc.b)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", tc.eco, err1, err2)
		}
		if c, _ := a.Compare(b); c != 0 {
			t.Errorf("%s: %q vs %q = %d, want equal", tc.eco, tc.a, tc.b, c)
		}
	}
}

func TestUnsupportedEcosystem(t *testing.T) {
	if Supported("Nonexistent") {
		t.Error("Nonexistent ecosystem reported supported")
	}
	for _, e := range []string{"Go", "Debian:12", "Alpine:v3.18", "AlmaLinux:9", "PyPI", "npm", "Maven", "RubyGems", "crates.io", "NuGet", "Packagist"} {
		if !Supported(e) {
			t.Errorf("%s not supported", e)
		}
	}
}
