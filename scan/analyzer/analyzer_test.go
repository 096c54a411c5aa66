package analyzer

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/tollgate-registry/tollgate/scan"
)

func hdr(name string, mode int64) *tar.Header {
	return &tar.Header{Name: name, Mode: mode, Typeflag: tar.TypeReg, Size: 100}
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		a    scan.Analyzer
		path string
		mode int64
		want bool
	}{
		{Dpkg{}, "var/lib/dpkg/status", 0o644, true},
		{Dpkg{}, "var/lib/dpkg/status-old", 0o644, false},
		{Dpkg{}, "var/lib/dpkg/status.d/libc6", 0o644, true},
		{Dpkg{}, "var/lib/dpkg/status.d/libc6.md5sums", 0o644, false},
		{Dpkg{}, "var/lib/dpkg/info/python3-requests.list", 0o644, true},
		{Dpkg{}, "var/lib/dpkg/info/x.md5sums", 0o644, false},
		{Apk{}, "lib/apk/db/installed", 0o644, true},
		{OSRelease{}, "etc/os-release", 0o644, true},
		{OSRelease{}, "usr/lib/os-release", 0o644, true},
		{NPM{}, "app/node_modules/lodash/package.json", 0o644, true},
		{NPM{}, "app/node_modules/@babel/core/package.json", 0o644, true},
		{NPM{}, "app/node_modules/a/node_modules/b/package.json", 0o644, true},
		{NPM{}, "app/node_modules/lodash/fp/package.json", 0o644, false},
		{NPM{}, "app/package.json", 0o644, false},
		{NPM{}, "app/node_modules/@babel/package.json", 0o644, false},
		{NPMLock{}, "app/package-lock.json", 0o644, true},
		{NPMLock{}, "app/node_modules/x/package-lock.json", 0o644, false},
		{Python{}, "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO", 0o644, true},
		{Python{}, "usr/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA", 0o644, true},
		{Python{}, "usr/lib/python3/dist-packages/six-1.16.0.egg-info", 0o644, true},
		{Python{}, "usr/lib/python3/dist-packages/six.py", 0o644, false},
		{Composer{}, "var/www/vendor/composer/installed.json", 0o644, true},
		{DotNet{}, "app/web.deps.json", 0o644, true},
		{Gemspec{}, "usr/lib/ruby/gems/3.1.0/specifications/rake-13.0.6.gemspec", 0o644, true},
		{Gemspec{}, "src/rake.gemspec", 0o644, false},
		{Java{}, "opt/app/lib/log4j-core-2.14.1.jar", 0o644, true},
		{Java{}, "opt/app/app.WAR", 0o644, true},
		{Binary{}, "usr/local/bin/app", 0o755, true},
		{Binary{}, "usr/local/bin/app", 0o644, false},
	} {
		if got := tc.a.Wants(hdr(tc.path, tc.mode)); got != tc.want {
			t.Errorf("%s.Wants(%s) = %v, want %v", tc.a.Name(), tc.path, got, tc.want)
		}
	}
}

func TestDpkg(t *testing.T) {
	const status = `Package: bash
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Source: bash (5.2.15-2)
Version: 5.2.15-2+b13
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 More text: with a colon

Package: e2fsprogs
Status: purge ok not-installed
Version: 1.47.0-2+b2

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
`
	pkgs, err := ParseDpkgStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("packages %+v", pkgs)
	}
	b, z := pkgs[0], pkgs[1]
	if b.Name != "bash" || b.Version != "5.2.15-2+b13" || b.SourceName != "bash" || b.SourceVersion != "5.2.15-2" || b.Arch != "amd64" {
		t.Errorf("bash %+v", b)
	}
	if z.SourceName != "zlib" || z.SourceVersion != "1:1.2.13.dfsg-1" || z.Ecosystem != "Debian" || z.Kind != scan.KindOS {
		t.Errorf("zlib1g %+v", z)
	}
	if z.PURL != "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib" {
		t.Errorf("purl %s", z.PURL)
	}
	// Distroless status.d paragraphs have no Status field.
	pkgs, _ = ParseDpkgStatus(strings.NewReader("Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\nSource: glibc\n"))
	if len(pkgs) != 1 || pkgs[0].SourceName != "glibc" {
		t.Errorf("status.d %+v", pkgs)
	}
	res, err := Dpkg{}.AnalyzeEntry(context.Background(), hdr("var/lib/dpkg/info/python3-six.list", 0o644), strings.NewReader(
		"/.\n/usr\n/usr/lib/python3/dist-packages\n/usr/lib/python3/dist-packages/six-1.16.0.egg-info\n/usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO\n/usr/lib/python3/dist-packages/six.py\n"))
	if err != nil || len(res.OSOwned) != 2 || res.OSOwned[0] != "usr/lib/python3/dist-packages/six-1.16.0.egg-info" {
		t.Errorf("owned %v %v", res.OSOwned, err)
	}
}

func TestApk(t *testing.T) {
	db := `C:Q1abc=
P:libcrypto3
V:3.1.7-r0
A:x86_64
L:Apache-2.0
o:openssl
F:usr/lib/python3.11/site-packages/six-1.16.0.dist-info
R:METADATA

P:musl
V:1.2.4-r2
A:x86_64
o:musl
`
	res, err := ParseApkInstalled(strings.NewReader(db))
	if err != nil || len(res.Packages) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	p := res.Packages[0]
	if p.Name != "libcrypto3" || p.Version != "3.1.7-r0" || p.SourceName != "openssl" || p.Arch != "x86_64" || p.Ecosystem != "Alpine" {
		t.Errorf("%+v", p)
	}
	if p.PURL != "pkg:apk/alpine/libcrypto3@3.1.7-r0?arch=x86_64&upstream=openssl" {
		t.Errorf("purl %s", p.PURL)
	}
	if len(res.OSOwned) != 1 || res.OSOwned[0] != "usr/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA" {
		t.Errorf("owned %v", res.OSOwned)
	}
}

func TestOSReleaseParse(t *testing.T) {
	os := ParseOSRelease(strings.NewReader("# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID='12'\nVERSION_CODENAME=bookworm\nID_LIKE=\"rhel fedora\"\n"))
	if os.ID != "debian" || os.VersionID != "12" || os.Codename != "bookworm" || os.PrettyName != "Debian GNU/Linux 12 (bookworm)" || os.IDLike != "rhel fedora" {
		t.Errorf("%+v", os)
	}
}

func TestNPM(t *testing.T) {
	p, err := ParsePackageJSON(strings.NewReader(`{"name":"@babel/core","version":"7.1.0","license":{"type":"MIT"}}`))
	if err != nil || p == nil || p.PURL != "pkg:npm/%40babel/core@7.1.0" || p.Licenses[0] != "MIT" {
		t.Fatalf("%v %+v", err, p)
	}
	if p, _ := ParsePackageJSON(strings.NewReader(`{"private":true}`)); p != nil {
		t.Errorf("nameless package.json gave %+v", p)
	}
	v3 := `{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/lodash":{"version":"4.17.15"},"node_modules/a/node_modules/@s/b":{"version":"1.0.0"},"node_modules/linked":{"link":true}}}`
	v1 := `{"lockfileVersion":1,"dependencies":{"lodash":{"version":"4.17.15","dependencies":{"x":{"version":"2.0.0"}}}}}`
	for name, doc := range map[string]string{"v3": v3, "v1": v1} {
		pkgs, err := ParsePackageLock(strings.NewReader(doc))
		if err != nil || len(pkgs) != 2 {
			t.Errorf("%s: %v %+v", name, err, pkgs)
		}
		for _, p := range pkgs {
			if p.Metadata["lockfile"] != "true" {
				t.Errorf("%s: %s not marked lockfile", name, p.Name)
			}
		}
	}
}

func TestPython(t *testing.T) {
	p, err := ParsePythonMetadata(strings.NewReader("Metadata-Version: 2.1\nName: Jinja2\nVersion: 3.1.2\nLicense: BSD-3-Clause\n\nName: not-this\n"))
	if err != nil || p.Name != "Jinja2" || p.Version != "3.1.2" || p.PURL != "pkg:pypi/jinja2@3.1.2" || p.Ecosystem != "PyPI" {
		t.Fatalf("%v %+v", err, p)
	}
	if PyPINormalize("charset_normalizer") != "charset-normalizer" {
		t.Error("PEP 503")
	}
}

func TestPythonArchive(t *testing.T) {
	whl := mkZip(t, map[string][]byte{
		"requests/__init__.py":               []byte("x"),
		"requests-2.31.0.dist-info/METADATA": []byte("Name: requests\nVersion: 2.31.0\n\n"),
		"vendored/x-1.0.dist-info/METADATA":  []byte("Name: x\nVersion: 1.0\n\n"),
	})
	a := PythonArchive{}
	if !a.Wants(hdr("root/.cache/pip/wheels/requests-2.31.0-py3-none-any.whl", 0o644)) || !a.WantsHead(nil, whl) {
		t.Fatal("wheel not wanted")
	}
	res, err := a.AnalyzeAt(context.Background(), hdr("x.whl", 0o644), bytes.NewReader(whl), int64(len(whl)))
	if err != nil || len(res.Packages) != 1 || res.Packages[0].Name != "requests" || res.Packages[0].Version != "2.31.0" {
		t.Fatalf("%v %+v", err, res.Packages)
	}
	egg := mkZip(t, map[string][]byte{"EGG-INFO/PKG-INFO": []byte("Name: six\nVersion: 1.16.0\n\n")})
	res, err = a.AnalyzeAt(context.Background(), hdr("six.egg", 0o644), bytes.NewReader(egg), int64(len(egg)))
	if err != nil || len(res.Packages) != 1 || res.Packages[0].Name != "six" {
		t.Fatalf("egg: %v %+v", err, res.Packages)
	}
	if !(Python{}).Wants(hdr("usr/lib/python3/site-packages/six-1.16.0-py3.11.egg/EGG-INFO/PKG-INFO", 0o644)) {
		t.Error("egg directory metadata not wanted")
	}
}

func TestManifests(t *testing.T) {
	for name, doc := range map[string]string{
		"v1": `[{"name":"monolog/monolog","version":"v2.9.1","license":["MIT"]}]`,
		"v2": `{"packages":[{"name":"monolog/monolog","version":"2.9.1"}]}`,
	} {
		pkgs, err := ParseComposerInstalled(strings.NewReader(doc))
		if err != nil || len(pkgs) != 1 || pkgs[0].Version != "2.9.1" || pkgs[0].PURL != "pkg:composer/monolog/monolog@2.9.1" {
			t.Errorf("composer %s: %v %+v", name, err, pkgs)
		}
	}
	pkgs, err := ParseDepsJSON(strings.NewReader(`{"libraries":{"app/1.0.0":{"type":"project"},"Newtonsoft.Json/13.0.1":{"type":"package"}}}`))
	if err != nil || len(pkgs) != 1 || pkgs[0].Name != "Newtonsoft.Json" || pkgs[0].Ecosystem != "NuGet" {
		t.Errorf("deps.json %v %+v", err, pkgs)
	}
	g := ParseGemspec(strings.NewReader("Gem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.6\"\n  s.licenses = [\"MIT\".freeze]\nend\n"))
	if g == nil || g.Name != "rake" || g.Version != "13.0.6" || g.Ecosystem != "RubyGems" || len(g.Licenses) != 1 {
		t.Errorf("gemspec %+v", g)
	}
}

func mkZip(t *testing.T, files map[string][]byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, b := range files {
		w, _ := zw.Create(n)
		w.Write(b)
	}
	zw.Close()
	return buf.Bytes()
}

func TestJava(t *testing.T) {
	inner := mkZip(t, map[string][]byte{
		"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": []byte("groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n"),
	})
	manifestOnly := mkZip(t, map[string][]byte{
		"META-INF/MANIFEST.MF": []byte("Manifest-Version: 1.0\nImplementation-Title: guava\nImplementation-Version: 31.1\nImplementation-Vendor-Id: com.google.guava\n"),
	})
	war := mkZip(t, map[string][]byte{"WEB-INF/lib/log4j-core-2.14.1.jar": inner, "WEB-INF/lib/guava.jar": manifestOnly})
	j := Java{MaxDepth: 8}
	if !j.WantsHead(nil, war) {
		t.Fatal("zip magic not recognised")
	}
	res, err := j.AnalyzeAt(context.Background(), hdr("app.war", 0o644), bytes.NewReader(war), int64(len(war)))
	if err != nil || len(res.Packages) != 2 {
		t.Fatalf("%v %+v", err, res.Packages)
	}
	got := map[string]string{}
	for _, p := range res.Packages {
		got[p.Name+"@"+p.Version] = p.Path
	}
	if got["org.apache.logging.log4j:log4j-core@2.14.1"] != "app.war!/WEB-INF/lib/log4j-core-2.14.1.jar" || got["com.google.guava:guava@31.1"] == "" {
		t.Errorf("%v", got)
	}
	_, err = Java{MaxDepth: 1}.AnalyzeAt(context.Background(), hdr("app.war", 0o644), bytes.NewReader(war), int64(len(war)))
	var le *scan.LimitError
	if !errors.As(err, &le) || le.Limit != "MaxNestingDepth" {
		t.Errorf("depth limit: %v", err)
	}
}

func TestBinaryGo(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Skip(err)
	}
	if !IsExecutable(b[:4]) || IsExecutable([]byte("#!/bin/sh\n")) {
		t.Fatal("magic check")
	}
	res, err := Binary{}.AnalyzeAt(context.Background(), hdr("usr/bin/x", 0o755), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(strings.Fields(runtime.Version())[0], "go")
	found := false
	for _, p := range res.Packages {
		if p.Name == "stdlib" && p.Version == want && p.Ecosystem == "Go" {
			found = true
		}
	}
	if !found {
		t.Errorf("stdlib %s not found in %+v", want, res.Packages)
	}
}

func TestCargoAuditable(t *testing.T) {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write([]byte(`{"packages":[{"name":"app","version":"0.1.0","source":"local","kind":"runtime"},{"name":"serde","version":"1.0.130","source":"crates.io","kind":"runtime"},{"name":"cc","version":"1.0","source":"crates.io","kind":"build"}]}`))
	zw.Close()
	pkgs, err := ParseCargoAuditable(&buf)
	if err != nil || len(pkgs) != 1 || pkgs[0].Name != "serde" || pkgs[0].Ecosystem != "crates.io" {
		t.Errorf("%v %+v", err, pkgs)
	}
}
