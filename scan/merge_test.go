package scan_test

import (
	"archive/tar"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func pkg(name, version, path, eco string, kind scan.PackageKind) scan.Package {
	return scan.Package{Name: name, Version: version, Path: path, Ecosystem: eco, Kind: kind, Analyzer: "a"}
}

func lay(n string, pkgs []scan.Package, paths []string, mod func(*scan.LayerInventory)) *scan.LayerInventory {
	d := digest.FromString(n)
	for i := range pkgs {
		pkgs[i].Layer = d
	}
	li := &scan.LayerInventory{Digest: d, Packages: pkgs, Paths: paths}
	if mod != nil {
		mod(li)
	}
	return li
}

func TestMerge(t *testing.T) {
	status := "var/lib/dpkg/status"
	debianOS := func(li *scan.LayerInventory) {
		li.OS = &scan.OSRelease{ID: "debian", VersionID: "12", Path: "etc/os-release"}
	}
	base := func() *scan.LayerInventory {
		return lay("base", []scan.Package{
			pkg("bash", "5.2", status, "Debian", scan.KindOS),
			pkg("e2fsprogs", "1.47", status, "Debian", scan.KindOS),
			pkg("lodash", "4.17.15", "app/node_modules/lodash/package.json", "npm", scan.KindLang),
			pkg("minimist", "1.2.0", "app/node_modules/minimist/package.json", "npm", scan.KindLang),
			pkg("requests", "2.28.1", "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO", "PyPI", scan.KindLang),
			pkg("six", "1.16.0", "usr/local/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA", "PyPI", scan.KindLang),
		}, []string{status}, func(li *scan.LayerInventory) {
			debianOS(li)
			li.OSOwned = []string{"usr/lib/python3/dist-packages/requests-2.28.1.egg-info"}
		})
	}
	for _, tc := range []struct {
		name  string
		upper *scan.LayerInventory
		want  []string // name@version@layer-name, in merge order
	}{
		{"no upper layer", nil,
			[]string{"bash@5.2@base", "e2fsprogs@1.47@base", "lodash@4.17.15@base", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"apt-get purge rewrites the status file", lay("purge", []scan.Package{
			pkg("bash", "5.2", status, "Debian", scan.KindOS),
		}, []string{status}, func(li *scan.LayerInventory) { li.Whiteouts = []string{"sbin/mke2fs"} }),
			[]string{"bash@5.2@base", "lodash@4.17.15@base", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"package database replaced with an upgrade", lay("upgrade", []scan.Package{
			pkg("bash", "5.3", status, "Debian", scan.KindOS),
			pkg("e2fsprogs", "1.47", status, "Debian", scan.KindOS),
		}, []string{status}, nil),
			[]string{"bash@5.3@upgrade", "e2fsprogs@1.47@base", "lodash@4.17.15@base", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"file replaced", lay("replace", []scan.Package{
			pkg("lodash", "4.17.21", "app/node_modules/lodash/package.json", "npm", scan.KindLang),
		}, []string{"app/node_modules/lodash/package.json"}, nil),
			[]string{"bash@5.2@base", "e2fsprogs@1.47@base", "lodash@4.17.21@replace", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"whited-out directory removes the package", lay("rm", nil, nil, func(li *scan.LayerInventory) {
			li.Whiteouts = []string{"app/node_modules/minimist"}
		}),
			[]string{"bash@5.2@base", "e2fsprogs@1.47@base", "lodash@4.17.15@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"whiteout of a sibling prefix keeps the package", lay("rm", nil, nil, func(li *scan.LayerInventory) {
			li.Whiteouts = []string{"app/node_modules/minimis"}
		}),
			[]string{"bash@5.2@base", "e2fsprogs@1.47@base", "lodash@4.17.15@base", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"opaque directory hides lower content", lay("opq", []scan.Package{
			pkg("axios", "0.21.0", "app/node_modules/axios/package.json", "npm", scan.KindLang),
		}, []string{"app/node_modules/axios/package.json"}, func(li *scan.LayerInventory) {
			li.OpaqueDirs = []string{"app"}
		}),
			[]string{"bash@5.2@base", "e2fsprogs@1.47@base", "axios@0.21.0@opq", "requests@2.28.1@base", "six@1.16.0@base"}},
		{"status file whited out", lay("nodpkg", nil, nil, func(li *scan.LayerInventory) {
			li.Whiteouts = []string{"var/lib/dpkg"}
		}),
			[]string{"lodash@4.17.15@base", "minimist@1.2.0@base", "requests@2.28.1@base", "six@1.16.0@base"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layers := []*scan.LayerInventory{base(), tc.upper}
			inv := scan.Merge(layers)
			lname := map[digest.Digest]string{}
			for _, n := range []string{"base", "purge", "upgrade", "replace", "rm", "opq", "nodpkg"} {
				lname[digest.FromString(n)] = n
			}
			got := map[string]bool{}
			for _, p := range inv.Packages {
				got[p.Name+"@"+p.Version+"@"+lname[p.Layer]] = true
				if p.Kind == scan.KindOS && p.Ecosystem != "Debian:12" {
					t.Errorf("%s ecosystem %s, want Debian:12", p.Name, p.Ecosystem)
				}
				if p.Name == "requests" && !p.OSManaged || p.Name == "six" && p.OSManaged {
					t.Errorf("%s OSManaged=%v", p.Name, p.OSManaged)
				}
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("missing %s", w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if base().Packages[0].Ecosystem != "Debian" {
				t.Error("Merge modified its input")
			}
		})
	}
}

func TestWalkLinkSupersedesForMerge(t *testing.T) {
	lower, err := walk(t, mkTar(t, entry{name: "app/node_modules/x/package.json", body: `{"name":"x","version":"1.0.0"}`}), scan.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	upper, err := walk(t, mkTar(t, entry{name: "app/node_modules/x/package.json", typ: tar.TypeSymlink}), scan.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if inv := scan.Merge([]*scan.LayerInventory{lower, upper}); len(inv.Packages) != 0 {
		t.Errorf("package file replaced by a symlink still listed: %+v", inv.Packages)
	}
}

func TestMergeLockfileDuplicates(t *testing.T) {
	lock := pkg("lodash", "4.17.15", "app/package-lock.json", "npm", scan.KindLang)
	lock.Metadata = map[string]string{"lockfile": "true"}
	only := pkg("left-pad", "1.0.0", "app/package-lock.json", "npm", scan.KindLang)
	only.Metadata = map[string]string{"lockfile": "true"}
	inv := scan.Merge([]*scan.LayerInventory{lay("l", []scan.Package{
		lock, only, pkg("lodash", "4.17.15", "app/node_modules/lodash/package.json", "npm", scan.KindLang),
	}, nil, nil)})
	if len(inv.Packages) != 2 {
		t.Fatalf("packages %+v", inv.Packages)
	}
}

func TestOSVEcosystem(t *testing.T) {
	for _, tc := range []struct {
		id, version, want string
	}{
		{"debian", "12", "Debian:12"},
		{"ubuntu", "22.04", "Ubuntu:22.04:LTS"},
		{"ubuntu", "23.10", "Ubuntu:23.10"},
		{"alpine", "3.18.9", "Alpine:v3.18"},
		{"alpine", "3.11.13", "Alpine:v3.11"},
		{"almalinux", "9.4", "AlmaLinux:9"},
		{"rocky", "9.3", "Rocky Linux:9"},
		{"rhel", "8.9", "Red Hat:enterprise_linux:8"},
		{"wolfi", "20230201", "Wolfi"},
		{"chainguard", "", "Chainguard"},
		{"sles", "15.5", "SUSE:Linux Enterprise Server 15 SP5"},
		{"opensuse-leap", "15.5", "openSUSE:Leap 15.5"},
		{"mariner", "2.0", "Mariner:2.0"},
	} {
		if got := scan.OSVEcosystem(&scan.OSRelease{ID: tc.id, VersionID: tc.version}); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.id, tc.version, got, tc.want)
		}
	}
	if scan.OSVEcosystem(nil) != "" {
		t.Error("nil OS named an ecosystem")
	}
}

// A later layer that puts an entry of another kind where an earlier layer
// had a package (a file or link over a package directory or one of its
// parents, a directory over a package file) hides the earlier package, as
// the overlay filesystem would; same-kind entries elsewhere do not.
func TestMergeReplacedByOtherKind(t *testing.T) {
	pj := func(name, v string) string { return `{"name":"` + name + `","version":"` + v + `"}` }
	npmLower := []entry{
		{name: "app/node_modules/x/", typ: tar.TypeDir},
		{name: "app/node_modules/x/package.json", body: pj("x", "1.0.0")},
		{name: "app/node_modules/@s/y/package.json", body: pj("@s/y", "2.0.0")},
		{name: "app/node_modules/z/package.json", body: pj("z", "3.0.0")},
	}
	status := "Package: bash\nStatus: install ok installed\nVersion: 5.2\n\n"
	for _, tc := range []struct {
		name         string
		lower, upper []entry
		want         []string // name@version remaining
	}{
		{"regular file at the package directory", npmLower,
			[]entry{{name: "app/node_modules/x", body: "not a package"}},
			[]string{"@s/y@2.0.0", "z@3.0.0"}},
		{"symlink at the package directory", npmLower,
			[]entry{{name: "app/node_modules/x", typ: tar.TypeSymlink}},
			[]string{"@s/y@2.0.0", "z@3.0.0"}},
		{"symlink at the scope directory", npmLower,
			[]entry{{name: "app/node_modules/@s", typ: tar.TypeSymlink}},
			[]string{"x@1.0.0", "z@3.0.0"}},
		{"symlink at node_modules", npmLower,
			[]entry{{name: "app/node_modules", typ: tar.TypeSymlink}},
			nil},
		{"symlink at a higher parent", npmLower,
			[]entry{{name: "app", typ: tar.TypeSymlink}},
			nil},
		{"hard link at the package directory", npmLower,
			[]entry{{name: "app/node_modules/z", typ: tar.TypeLink}},
			[]string{"x@1.0.0", "@s/y@2.0.0"}},
		{"symlink at a sibling with a common prefix keeps the package", npmLower,
			[]entry{{name: "app/node_modules/x2", typ: tar.TypeSymlink}, {name: "app/node_modules/z.txt", body: "x"}},
			[]string{"x@1.0.0", "@s/y@2.0.0", "z@3.0.0"}},
		{"directory over a directory keeps the package", npmLower,
			[]entry{{name: "app/node_modules/x/", typ: tar.TypeDir}, {name: "app/", typ: tar.TypeDir}},
			[]string{"x@1.0.0", "@s/y@2.0.0", "z@3.0.0"}},
		{"directory at a package file", npmLower,
			[]entry{{name: "app/node_modules/z/package.json/", typ: tar.TypeDir}},
			[]string{"x@1.0.0", "@s/y@2.0.0"}},
		{"directory at the package database", []entry{{name: "var/lib/dpkg/status", body: status}},
			[]entry{{name: "var/lib/dpkg/status/", typ: tar.TypeDir}},
			nil},
		{"symlink at the package database's directory", []entry{{name: "var/lib/dpkg/status", body: status}},
			[]entry{{name: "var/lib/dpkg", typ: tar.TypeSymlink}},
			nil},
		{"file at a dist-info directory", []entry{{name: "usr/lib/python3/site-packages/six-1.16.0.dist-info/METADATA",
			body: "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\n"}},
			[]entry{{name: "usr/lib/python3/site-packages/six-1.16.0.dist-info", body: "x"}},
			nil},
		{"package directory over an earlier symlink adds the package", []entry{{name: "app/node_modules/x", typ: tar.TypeSymlink}},
			[]entry{{name: "app/node_modules/x/", typ: tar.TypeDir}, {name: "app/node_modules/x/package.json", body: pj("x", "1.0.1")}},
			[]string{"x@1.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lower, err := walk(t, mkTar(t, tc.lower...), scan.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			upper, err := walk(t, mkTar(t, tc.upper...), scan.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			upper.Digest = digest.FromString("upper")
			inv := scan.Merge([]*scan.LayerInventory{lower, upper})
			got := map[string]bool{}
			for _, p := range inv.Packages {
				got[p.Name+"@"+p.Version] = true
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("missing %s", w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
