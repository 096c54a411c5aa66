package analyzer

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Fuzz targets for every parser of untrusted bytes in this package; seeds
// live in testdata/fuzz/<FuzzName>/. The property checked beyond "no panic,
// no hang": every package reported has a name and a version.

func checkPkgs(t *testing.T, names ...[2]string) {
	for _, n := range names {
		if n[0] == "" || n[1] == "" {
			t.Fatalf("package without name or version: %q", n)
		}
	}
}

func FuzzParseDpkgStatus(f *testing.F) {
	f.Add([]byte("Package: a\nStatus: install ok installed\nVersion: 1:2-3\nSource: b (4)\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParseDpkgStatus(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParseApkInstalled(f *testing.F) {
	f.Add([]byte("P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nF:usr/lib\nR:x\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, _ := ParseApkInstalled(bytes.NewReader(b))
		for _, p := range res.Packages {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("ID=\"alpine\"\nVERSION_ID=3.18.9\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = ParseOSRelease(bytes.NewReader(b)) })
}

func FuzzParsePackageJSON(f *testing.F) {
	f.Add([]byte(`{"name":"@s/x","version":"1.0.0","license":"MIT"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParsePackageJSON(bytes.NewReader(b)); err == nil && p != nil {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParsePackageLock(f *testing.F) {
	f.Add([]byte(`{"packages":{"node_modules/a":{"version":"1.0.0"}}}`))
	f.Add([]byte(`{"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2"}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParsePackageLock(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParsePythonMetadata(f *testing.F) {
	f.Add([]byte("Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, _ := ParsePythonMetadata(bytes.NewReader(b)); p != nil {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParseManifests(f *testing.F) {
	f.Add([]byte(`{"packages":[{"name":"a/b","version":"v1"}],"libraries":{"X/1.0":{"type":"package"}}}`))
	f.Add([]byte("s.name = \"rake\"\ns.version = \"1\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _ := ParseComposerInstalled(bytes.NewReader(b))
		d, _ := ParseDepsJSON(bytes.NewReader(b))
		for _, p := range append(c, d...) {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
		if g := ParseGemspec(bytes.NewReader(b)); g != nil {
			checkPkgs(t, [2]string{g.Name, g.Version})
		}
	})
}

func FuzzParseCargoAuditable(f *testing.F) {
	f.Add([]byte("x\x9c\xab\xae\x05\x00\x01u\x00\xf9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParseCargoAuditable(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParseJar(f *testing.F) {
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParseJar(context.Background(), "x.jar", bytes.NewReader(b), int64(len(b)), 3)
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzBinary(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte("MZ\x90\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, _ := Binary{}.AnalyzeAt(context.Background(), hdr("x", 0o755), bytes.NewReader(b), int64(len(b)))
		for _, p := range res.Packages {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParseYarnLock(f *testing.F) {
	f.Add([]byte("# yarn lockfile v1\n\n\"@a/b@^1.0.0\", \"@a/b@^1.1.0\":\n  version \"1.2.0\"\n  dependencies:\n    c \"^2\"\n"))
	f.Add([]byte("__metadata:\n  version: 8\n\n\"a@npm:^1.0.0\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0\"\n\n\"w@workspace:.\":\n  version: 0.0.0-use.local\n  resolution: \"w@workspace:.\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParseYarnLock(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParsePNPMLock(f *testing.F) {
	f.Add([]byte("lockfileVersion: 5.4\npackages:\n  /@a/b/1.0.0_c@2.0.0:\n    dev: false\n  /d/3.0.0:\n    dev: true\n"))
	f.Add([]byte("lockfileVersion: '6.0'\npackages:\n  /@a/b@1.0.0(c@2.0.0):\n    dev: false\n"))
	f.Add([]byte("lockfileVersion: '9.0'\npackages:\n  '@a/b@1.0.0':\n    resolution: {integrity: x}\n  g@https://x/y.tgz:\n    name: g\n    version: 1.0.0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParsePNPMLock(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParsePoetryLock(f *testing.F) {
	f.Add([]byte("[[package]]\nname = \"a\"\nversion = \"1.0\"\n\n[package.dependencies]\nb = \">=1\"\n\n[[package]]\nname = \"c\"\nversion = \"2\"\n[package.source]\ntype = \"git\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParsePoetryLock(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}

func FuzzParsePipfileLock(f *testing.F) {
	f.Add([]byte(`{"default":{"a":{"version":"==1.0"},"b":{"path":"."}},"develop":{"c":{"version":"==2"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, _ := ParsePipfileLock(bytes.NewReader(b))
		for _, p := range pkgs {
			checkPkgs(t, [2]string{p.Name, p.Version})
		}
	})
}
