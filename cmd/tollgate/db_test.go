package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-registry/tollgate/scan"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

const cliOSV = `{"id":"GO-2099-0001","modified":"2099-01-01T00:00:00Z","aliases":["CVE-2099-0001"],
"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
"affected":[{"package":{"ecosystem":"Go","name":"example.com/m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]}]}`

func TestDBImportStatusAndScanFindings(t *testing.T) {
	data := t.TempDir()
	feed := t.TempDir()
	if err := os.WriteFile(filepath.Join(feed, "GO-2099-0001.json"), []byte(cliOSV), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "--data-dir", data, "--log-level", "error", "db", "import", feed, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rs []struct {
		Source string
		Count  int
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 || rs[0].Source != "Go" || rs[0].Count != 1 {
		t.Fatalf("import output %q: %v", out, err)
	}
	out, _, err = runCLI(t, "--data-dir", data, "db", "status", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var srcs []struct {
		Source string
		Count  int
	}
	if err := json.Unmarshal([]byte(out), &srcs); err != nil || len(srcs) != 1 || srcs[0].Count != 1 {
		t.Fatalf("status output %q: %v", out, err)
	}
	out, _, err = runCLI(t, "--data-dir", data, "db", "rematch")
	if err != nil || out == "" {
		t.Fatalf("rematch: %q %v", out, err)
	}

	// findingsFor reads the same database (read-only).
	g := &globals{dataDir: data, stderr: &bytes.Buffer{}}
	inv := &scan.Inventory{Image: "sha256:0000000000000000000000000000000000000000000000000000000000000002",
		Packages: []scan.Package{{Ecosystem: "Go", Name: "example.com/m", Version: "v1.1.0", Kind: scan.KindLang}}}
	fs, err := findingsFor(context.Background(), g, inv)
	if err != nil || len(fs) != 1 || fs[0].VulnerabilityID != "CVE-2099-0001" || fs[0].Severity != scan.SeverityCritical {
		t.Fatalf("findings %+v %v", fs, err)
	}
	// Without a database: no findings, no error.
	g.dataDir = t.TempDir()
	if fs, err := findingsFor(context.Background(), g, inv); err != nil || len(fs) != 0 {
		t.Fatalf("no db: %v %v", fs, err)
	}
}

func TestFailOn(t *testing.T) {
	fs := []scan.Finding{
		{Severity: scan.SeverityHigh, Status: scan.FindingActive},
		{Severity: scan.SeverityCritical, Status: scan.FindingSuppressed},
		{Severity: scan.SeverityCritical, Status: scan.FindingClosed},
	}
	for _, tc := range []struct {
		sev  string
		code int
	}{{"", 0}, {"CRITICAL", 0}, {"HIGH", 1}, {"medium", 1}, {"UNTRIAGED", 1}} {
		f := failOn{severity: tc.sev}
		if err := f.validate(); err != nil {
			t.Fatal(err)
		}
		err := f.check(fs)
		code := 0
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if code != tc.code {
			t.Errorf("--fail-on %q: exit %d, want %d", tc.sev, code, tc.code)
		}
	}
	if (&failOn{severity: "SEVERE"}).validate() == nil {
		t.Error("bad severity accepted")
	}
}
