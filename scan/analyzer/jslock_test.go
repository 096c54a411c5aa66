package analyzer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestJSLockfiles(t *testing.T) {
	common := []string{
		"@babel/code-frame@7.12.13 pkg:npm/%40babel/code-frame@7.12.13",
		"lodash@4.17.15 pkg:npm/lodash@4.17.15",
		"minimist@1.2.0 pkg:npm/minimist@1.2.0",
	}
	for _, tc := range []struct {
		file  string
		parse func(r *os.File) ([]scan.Package, error)
		extra []string
	}{
		{"yarn-v1.lock", func(r *os.File) ([]scan.Package, error) { return ParseYarnLock(r) }, nil},
		{"yarn-berry.lock", func(r *os.File) ([]scan.Package, error) { return ParseYarnLock(r) }, nil},
		{"yarn-v1.lock", func(r *os.File) ([]scan.Package, error) { // checked in with CRLF line ends
			b, err := io.ReadAll(r)
			if err != nil {
				return nil, err
			}
			return ParseYarnLock(strings.NewReader(strings.ReplaceAll(string(b), "\n", "\r\n")))
		}, nil},
		{"pnpm-v5.yaml", func(r *os.File) ([]scan.Package, error) { return ParsePNPMLock(r) },
			[]string{"from-git@2.0.0 pkg:npm/from-git@2.0.0"}},
		{"pnpm-v6.yaml", func(r *os.File) ([]scan.Package, error) { return ParsePNPMLock(r) }, nil},
		{"pnpm-v9.yaml", func(r *os.File) ([]scan.Package, error) { return ParsePNPMLock(r) }, nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open("testdata/jslock/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pkgs, err := tc.parse(f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pkgs {
				got = append(got, p.Name+"@"+p.Version+" "+p.PURL)
				if p.Ecosystem != "npm" || p.Metadata["lockfile"] != "true" {
					t.Errorf("%s: ecosystem %q metadata %v", p.Name, p.Ecosystem, p.Metadata)
				}
			}
			want := append(append([]string(nil), common...), tc.extra...)
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestJSLockWants(t *testing.T) {
	for name, want := range map[string]bool{
		"app/yarn.lock":                         true,
		"yarn.lock":                             true,
		"app/pnpm-lock.yaml":                    true,
		"app/node_modules/x/yarn.lock":          false,
		"app/node_modules/.pnpm/pnpm-lock.yaml": false,
		"app/yarn.lock.bak":                     false,
	} {
		h := hdr(name, 0o644)
		if got := (YarnLock{}).Wants(h) || (PNPMLock{}).Wants(h); got != want {
			t.Errorf("%s: wanted %v", name, got)
		}
	}
}

// A yarn.lock or pnpm-lock.yaml beside node_modules lists what is installed
// and more: the image reports each installed package once, at its
// node_modules path, and the lockfile-only ones at the lockfile's path.
func TestJSLockDedupAgainstInstalled(t *testing.T) {
	for _, lock := range []struct{ name, fixture string }{
		{"app/yarn.lock", "yarn-v1.lock"}, {"app/yarn.lock", "yarn-berry.lock"}, {"app/pnpm-lock.yaml", "pnpm-v9.yaml"},
	} {
		body, err := os.ReadFile("testdata/jslock/" + lock.fixture)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range []struct {
			name string
			body []byte
		}{
			{lock.name, body},
			{"app/node_modules/lodash/package.json", []byte(`{"name":"lodash","version":"4.17.15"}`)},
		} {
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write(e.body)
		}
		_ = tw.Close()
		li, err := scan.Walk(context.Background(), digest.FromString(lock.fixture), &buf, Default(Options{}), scan.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		inv := scan.Merge([]*scan.LayerInventory{li})
		got := map[string]string{}
		for _, p := range inv.Packages {
			if _, dup := got[p.Name]; dup {
				t.Errorf("%s: %s listed twice", lock.fixture, p.Name)
			}
			got[p.Name] = p.Path
		}
		want := map[string]string{
			"lodash":            "app/node_modules/lodash/package.json",
			"minimist":          lock.name,
			"@babel/code-frame": lock.name,
		}
		for n, p := range want {
			if got[n] != p {
				t.Errorf("%s: %s at %q, want %q", lock.fixture, n, got[n], p)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %v", lock.fixture, got)
		}
	}
}
