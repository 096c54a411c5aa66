package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestScanReportFlags(t *testing.T) {
	dir := t.TempDir()
	top := digest.FromString("index")
	img := digest.FromString("linux/amd64")
	ign := filepath.Join(dir, ".trivyignore")
	require.NoError(t, os.WriteFile(ign, []byte("# accepted\nCVE-2024-0001\n"), 0o600))
	vex := filepath.Join(dir, "app.openvex.json")
	require.NoError(t, os.WriteFile(vex, []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"vex-1",
	  "statements":[{"vulnerability":{"name":"CVE-2024-0002"},"products":[{"@id":"pkg:oci/app@`+top.String()+`"}],
	  "status":"not_affected","justification":"vulnerable_code_not_present"}]}`), 0o600))

	rf := reportFlags{ignoreFile: ign, vexFiles: []string{vex}}
	require.NoError(t, rf.load())
	fs := []scan.Finding{
		{ID: "1", Image: img, VulnerabilityID: "CVE-2024-0001", Severity: scan.SeverityHigh, Package: scan.Package{Name: "a", Path: "x"}},
		{ID: "2", Image: img, VulnerabilityID: "CVE-2024-0002", Severity: scan.SeverityHigh, Package: scan.Package{Name: "b", Path: "x"}},
		{ID: "3", Image: img, VulnerabilityID: "CVE-2024-0003", Severity: scan.SeverityLow, Package: scan.Package{Name: "c", Path: "x"}},
	}
	kept, sup := rf.filter(fs, top)
	require.Len(t, kept, 1)
	require.Equal(t, "3", kept[0].ID)
	require.Len(t, sup, 2)

	rep := scanReport{Source: "oci:app", Images: []imageReport{{Inventory: &scan.Inventory{Image: img}, Findings: kept, Suppressed: sup}}}
	var out, errw bytes.Buffer
	require.NoError(t, writeScan(&out, &errw, "sarif", rep))
	var doc struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID       string `json:"ruleId"`
				Suppressions []any  `json:"suppressions"`
			} `json:"results"`
		} `json:"runs"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	require.Equal(t, "2.1.0", doc.Version)
	require.Len(t, doc.Runs[0].Results, 3)
	suppressed := 0
	for _, r := range doc.Runs[0].Results {
		if len(r.Suppressions) > 0 {
			suppressed++
		}
	}
	require.Equal(t, 2, suppressed)

	// Broken inputs fail before any scanning.
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"bomFormat":"CycloneDX"}`), 0o600))
	require.Error(t, (&reportFlags{vexFiles: []string{bad}}).load())
	require.Error(t, (&reportFlags{ignoreFile: filepath.Join(dir, "missing")}).load())
}
