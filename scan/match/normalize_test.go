package match

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-registry/tollgate/scan"
)

func nameAdvisory(id, eco, name string) Advisory {
	return Advisory{ID: id, Modified: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Affected: []Affected{{
		Package: AffectedPackage{Ecosystem: eco, Name: name},
		Ranges:  []Range{{Type: RangeEcosystem, Events: []Event{{Introduced: "0"}, {Fixed: "99.0"}}}},
	}}}
}

// A package's name as found (dist-info `Name: Jinja2`, a poetry.lock entry)
// must find the advisories its registry files under any spelling of the
// same name: PyPI compares PEP 503-normalised names, NuGet and Packagist are
// case-insensitive; npm, Go and Maven names are case-sensitive.
func TestMatchNormalisedNames(t *testing.T) {
	tests := []struct {
		eco, advName, pkgName string
		want                  bool
	}{
		{"PyPI", "jinja2", "Jinja2", true},
		{"PyPI", "Jinja2", "jinja2", true},
		{"PyPI", "Jinja2", "Jinja2", true},
		{"PyPI", "pyyaml", "PyYAML", true},
		{"PyPI", "zope.interface", "Zope_Interface", true},
		{"PyPI", "charset-normalizer", "charset_normalizer", true},
		{"PyPI", "backports.zoneinfo", "backports--zoneinfo", true},
		{"PyPI", "jinja_2", "Jinja2", false},
		{"NuGet", "Newtonsoft.Json", "newtonsoft.json", true},
		{"Packagist", "Symfony/Http-Kernel", "symfony/http-kernel", true},
		{"npm", "lodash", "Lodash", false},
		{"Go", "github.com/BurntSushi/toml", "github.com/burntsushi/toml", false},
		{"Maven", "org.Example:lib", "org.example:lib", false},
	}
	for _, tc := range tests {
		t.Run(tc.eco+"/"+tc.advName+"~"+tc.pkgName, func(t *testing.T) {
			mem := NewMemory([]Advisory{nameAdvisory("CVE-2099-0100", tc.eco, tc.advName)})
			inv := &scan.Inventory{Image: img, Packages: []scan.Package{
				{Ecosystem: tc.eco, Name: tc.pkgName, Version: "1.0", Kind: scan.KindLang}}}
			fs, err := Match(context.Background(), inv, mem)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(fs) == 1; got != tc.want {
				t.Fatalf("advisory for %q, package %q: %d findings, want match=%v", tc.advName, tc.pkgName, len(fs), tc.want)
			}
			if tc.want && fs[0].Package.Name != tc.pkgName {
				t.Errorf("finding shows package %q, want the name as found %q", fs[0].Package.Name, tc.pkgName)
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range [][3]string{
		{"PyPI", "Jinja2", "jinja2"},
		{"PyPI", "Zope._-Interface", "zope-interface"},
		{"PyPI", "a-", "a-"},
		{"NuGet", "Newtonsoft.Json", "newtonsoft.json"},
		{"npm", "Lodash", "Lodash"},
		{"Debian:12", "Foo", "Foo"},
	} {
		if got := NormalizeName(tc[0], tc[1]); got != tc[2] {
			t.Errorf("NormalizeName(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
