package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sharedImages(t *testing.T) string {
	t.Helper()
	d := os.Getenv("TOLLGATE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "..", "shared")
	}
	d = filepath.Join(d, "images")
	if _, err := os.Stat(filepath.Join(d, "INDEX.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %s (set TOLLGATE_SHARED): %v", d, err)
		}
		t.Skipf("!!! SKIPPING: shared test material not found at %s (set TOLLGATE_SHARED) !!!", d)
	}
	return d
}

// runScan runs `tollgate scan ARGS…` in-process and returns stdout.
func runScan(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRootCmd(&out, &errw)
	root.SetArgs(append([]string{"scan", "--data-dir", t.TempDir(), "--log-level", "error"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("tollgate scan %v: %v\n%s", args, err, errw.String())
	}
	return out.Bytes()
}

type cdxBOM struct {
	SpecVersion string `json:"specVersion"`
	Components  []struct {
		Type       string `json:"type"`
		Name       string `json:"name"`
		Version    string `json:"version"`
		PURL       string `json:"purl"`
		Properties []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"properties"`
	} `json:"components"`
}

// cdxComponents returns "ecosystem name version" per library component, and
// checks each carries a purl and a layer digest property.
func cdxComponents(t *testing.T, b []byte) map[string]bool {
	t.Helper()
	var bom cdxBOM
	if err := json.Unmarshal(b, &bom); err != nil {
		t.Fatalf("cyclonedx: %v", err)
	}
	if bom.SpecVersion < "1.5" {
		t.Errorf("specVersion %s", bom.SpecVersion)
	}
	set := map[string]bool{}
	for _, c := range bom.Components {
		if c.Type != "library" {
			continue
		}
		props := map[string]string{}
		for _, p := range c.Properties {
			props[p.Name] = p.Value
		}
		if c.PURL == "" || !strings.HasPrefix(props["tollgate:layer"], "sha256:") {
			t.Errorf("component %s %s: purl %q layer %q", c.Name, c.Version, c.PURL, props["tollgate:layer"])
		}
		set[props["tollgate:ecosystem"]+" "+c.Name+" "+c.Version] = true
	}
	return set
}

func expectLines(t *testing.T, file string, f func([]string) string) []string {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 0 {
			if s := f(fs); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func assertSet(t *testing.T, what string, got map[string]bool, want []string) {
	t.Helper()
	for _, w := range want {
		if !got[w] {
			t.Errorf("%s: missing %q", what, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d components, want %d", what, len(got), len(want))
	}
}

func TestScanCycloneDXSharedImages(t *testing.T) {
	img := sharedImages(t)
	dpkg := func(file string) []string {
		return expectLines(t, filepath.Join(img, "debian12.expected", file), func(f []string) string { return "Debian:12 " + f[1] + " " + f[2] })
	}
	py := expectLines(t, filepath.Join(img, "debian12.expected", "python-dists.txt"), func(f []string) string { return "PyPI " + f[0] + " " + f[1] })

	t.Run("debian12-minbase", func(t *testing.T) {
		assertSet(t, "minbase", cdxComponents(t, runScan(t, "--format", "cyclonedx", "oci:"+filepath.Join(img, "debian12")+":debian12-minbase")), dpkg("dpkg-minbase.txt"))
	})
	t.Run("debian12-apps", func(t *testing.T) {
		got := cdxComponents(t, runScan(t, "--format", "cyclonedx", "oci:"+filepath.Join(img, "debian12")+":debian12-apps"))
		assertSet(t, "apps", got, append(dpkg("dpkg-apps.txt"), py...))
		if got["Debian:12 e2fsprogs 1.47.0-2+b2"] {
			t.Error("e2fsprogs purged in layer 2 is still listed")
		}
	})
	t.Run("debian12-node", func(t *testing.T) {
		got := cdxComponents(t, runScan(t, "--format", "cyclonedx", "oci:"+filepath.Join(img, "debian12")+":debian12-node"))
		npm := 0
		for k := range got {
			if strings.HasPrefix(k, "npm ") {
				npm++
			}
		}
		if npm != 54 || !got["npm lodash 4.17.15"] || !got["npm follow-redirects 1.16.3"] {
			t.Errorf("npm: %d packages", npm)
		}
	})
	t.Run("go-static docker-archive", func(t *testing.T) {
		got := cdxComponents(t, runScan(t, "--format", "cyclonedx", "docker-archive:"+filepath.Join(img, "go-static.docker.tar")))
		want := expectLines(t, filepath.Join(img, "go-static.expected", "go-version-m.txt"), func(f []string) string {
			if f[0] == "dep" && len(f) >= 3 {
				return "Go " + f[1] + " " + strings.TrimPrefix(f[2], "v")
			}
			return ""
		})
		assertSet(t, "go", got, append(want, "Go stdlib 1.21.0"))
	})
	t.Run("alpine index per platform", func(t *testing.T) {
		for plat, file := range map[string]string{"linux/amd64": "x86_64", "linux/arm64/v8": "aarch64"} {
			got := cdxComponents(t, runScan(t, "--format", "cyclonedx", "--platform", plat, "oci:"+filepath.Join(img, "alpine")+":alpine-3.18.9"))
			want := expectLines(t, filepath.Join(img, "alpine.expected", "apk-installed-3.18.9-"+file+".tsv"), func(f []string) string { return "Alpine:v3.18 " + f[0] + " " + f[1] })
			assertSet(t, plat, got, want)
		}
	})
}

func TestScanJSONAndOCIArchive(t *testing.T) {
	img := sharedImages(t)
	// Pack the Alpine layout into an oci-archive in a temp dir.
	arch := filepath.Join(t.TempDir(), "alpine.tar")
	f, err := os.Create(arch)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	root := filepath.Join(img, "alpine")
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	f.Close()
	var rep struct {
		Images []struct {
			Platform struct{ Architecture string }  `json:"platform"`
			OS       struct{ ID, VersionID string } `json:"os"`
			Packages []struct{ Name, Ecosystem, SourceName string }
		} `json:"images"`
	}
	if err := json.Unmarshal(runScan(t, "--format", "json", "oci-archive:"+arch+":alpine-3.18.9"), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 2 {
		t.Fatalf("%d images, want one per platform", len(rep.Images))
	}
	for _, im := range rep.Images {
		if im.OS.ID != "alpine" || len(im.Packages) != 15 {
			t.Errorf("%s: os %+v, %d packages", im.Platform.Architecture, im.OS, len(im.Packages))
		}
	}
	table := string(runScan(t, "oci:"+filepath.Join(img, "alpine")+":alpine-3.11.13"))
	if !strings.Contains(table, "libcrypto1.1") || !strings.Contains(table, "openssl") || !strings.Contains(table, "ECOSYSTEM") {
		t.Errorf("table:\n%s", table)
	}
	var spdx struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(runScan(t, "--format", "spdx", "oci:"+filepath.Join(img, "alpine")+":alpine-3.11.13"), &spdx); err != nil {
		t.Fatal(err)
	}
	if spdx.SPDXVersion != "SPDX-2.3" || len(spdx.Packages) != 15 { // the image + 14 packages
		t.Errorf("spdx %s, %d packages", spdx.SPDXVersion, len(spdx.Packages))
	}
}
