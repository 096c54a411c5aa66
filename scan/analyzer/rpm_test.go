package analyzer

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
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

func rpmFile(t *testing.T, file string) ([]string, []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if !(RPM{}).Wants(hdr("var/lib/rpm/"+filepath.Base(file), 0o644)) {
		t.Fatalf("%s not wanted", file)
	}
	res, err := RPM{TempDir: t.TempDir()}.AnalyzeAt(context.Background(), hdr("var/lib/rpm/"+filepath.Base(file), 0o644), f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var got []string
	for _, p := range res.Packages {
		got = append(got, strings.Join([]string{p.Name, p.Version, p.Arch, p.SourceName, p.SourceVersion}, "\t"))
	}
	sort.Strings(got)
	want := []string{}
	if qa, err := os.Open(filepath.Join(filepath.Dir(file), "rpm-qa.txt")); err == nil {
		defer qa.Close()
		sc := bufio.NewScanner(qa)
		for sc.Scan() {
			f := strings.Split(sc.Text(), "\t")
			if len(f) < 4 {
				continue
			}
			v := strings.TrimPrefix(f[1], "0:")
			sn, sv, _ := parseSourceRPM(f[3])
			if e, _, ok := strings.Cut(f[1], ":"); ok && e != "0" {
				sv = e + ":" + sv
			}
			want = append(want, strings.Join([]string{f[0], v, f[2], sn, sv}, "\t"))
		}
		sort.Strings(want)
	}
	return got, want
}

func TestRPMDatabases(t *testing.T) {
	dir := filepath.Join(sharedImages(t), "rpmdb")
	for _, tc := range []struct {
		file string
		n    int // -1: no list to compare, only "parses with packages"
	}{
		{"cbl-mariner-2.0/rpmdb.sqlite", 129},
		{"libuuid/Packages", 1},
		{"sle15-bci/Packages.db", -1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, want := rpmFile(t, filepath.Join(dir, tc.file))
			if tc.n < 0 {
				if len(got) == 0 {
					t.Fatal("ndb database gave no packages")
				}
				t.Logf("%d packages, e.g. %s", len(got), got[0])
				return
			}
			if len(got) != tc.n {
				t.Errorf("%d packages, want %d", len(got), tc.n)
			}
			w := map[string]bool{}
			for _, s := range want {
				w[s] = true
			}
			for _, s := range got {
				if !w[s] {
					t.Errorf("unexpected %q", s)
				}
			}
		})
	}
	// A database without the Packages table gives no packages (and says why).
	f := filepath.Join(dir, "claircore", "no_packages.sqlite")
	res, err := ReadRPMDB(context.Background(), f)
	if len(res.Packages) != 0 {
		t.Errorf("empty db: %d packages", len(res.Packages))
	}
	t.Logf("empty db: %v", err)
	// A raw header blob is no database: an error, no panic.
	if _, err := ReadRPMDB(context.Background(), filepath.Join(dir, "claircore", "package.header")); err == nil {
		t.Error("raw header accepted as a database")
	}
}

func TestParseSourceRPM(t *testing.T) {
	n, v, ok := parseSourceRPM("openssl-1.1.1k-7.cm2.src.rpm")
	if !ok || n != "openssl" || v != "1.1.1k-7.cm2" {
		t.Errorf("%s %s %v", n, v, ok)
	}
	if _, _, ok := parseSourceRPM("garbage"); ok {
		t.Error("garbage parsed")
	}
}
