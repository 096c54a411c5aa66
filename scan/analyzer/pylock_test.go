package analyzer

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestPyLockfiles(t *testing.T) {
	for file, want := range map[string][]string{
		"poetry.lock":  {"jinja2@3.1.2 pkg:pypi/jinja2@3.1.2", "requests@2.28.1 pkg:pypi/requests@2.28.1"},
		"Pipfile.lock": {"jinja2@3.1.2 pkg:pypi/jinja2@3.1.2", "pytest@7.4.0 pkg:pypi/pytest@7.4.0", "requests@2.28.1 pkg:pypi/requests@2.28.1"},
	} {
		f, err := os.Open("testdata/pylock/" + file)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := PyLock{}.Analyze(context.Background(), hdr("app/"+file, 0o644), f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got []string
		for _, p := range pkgs {
			got = append(got, p.Name+"@"+p.Version+" "+p.PURL)
			if p.Ecosystem != "PyPI" || p.Metadata["lockfile"] != "true" {
				t.Errorf("%s: %s ecosystem %q metadata %v", file, p.Name, p.Ecosystem, p.Metadata)
			}
		}
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: got\n%s\nwant\n%s", file, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if (PyLock{}).Wants(hdr("usr/lib/python3/site-packages/x/poetry.lock", 0o644)) || !(PyLock{}).Wants(hdr("srv/Pipfile.lock", 0o644)) {
		t.Error("Wants")
	}
}

// An installed distribution (METADATA says "Jinja2") and the lockfile's
// PEP 503 name ("jinja2") are one package: the image lists the installed one.
func TestPyLockDedupAgainstInstalled(t *testing.T) {
	lock, err := os.ReadFile("testdata/pylock/poetry.lock")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct{ name, body string }{
		{"app/poetry.lock", string(lock)},
		{"usr/local/lib/python3.11/site-packages/Jinja2-3.1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: Jinja2\nVersion: 3.1.2\n\n"},
	} {
		_ = tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(e.body))
	}
	_ = tw.Close()
	li, err := scan.Walk(context.Background(), digest.FromString("py"), &buf, Default(Options{}), scan.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range scan.Merge([]*scan.LayerInventory{li}).Packages {
		got[p.Name+"@"+p.Version] = p.Path
	}
	want := map[string]string{
		"Jinja2@3.1.2":    "usr/local/lib/python3.11/site-packages/Jinja2-3.1.2.dist-info/METADATA",
		"requests@2.28.1": "app/poetry.lock",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s at %q, want %q", k, got[k], v)
		}
	}
}
