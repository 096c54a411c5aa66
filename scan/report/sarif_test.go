package report

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
)

var (
	testImage = digest.FromString("image")
	layerA    = digest.FromString("layer-a")
	layerB    = digest.FromString("layer-b")
)

func finding(id, vuln string, sev scan.Severity, pkg, path string, layer digest.Digest, cvss ...float64) scan.Finding {
	f := scan.Finding{ID: id, Image: testImage, VulnerabilityID: vuln, AdvisoryID: "DSA-" + vuln, Title: vuln + " in " + pkg,
		Severity: sev, FixAvailable: "YES", FixedVersions: []string{"9.9"}, Status: scan.FindingActive,
		Package: scan.Package{Name: pkg, Version: "1.0-1", Ecosystem: "Debian:12", Path: path, Layer: layer,
			PURL: "pkg:deb/debian/" + pkg + "@1.0-1?arch=amd64&distro=debian-12"}}
	for _, c := range cvss {
		f.CVSS = append(f.CVSS, scan.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N", BaseScore: c})
	}
	return f
}

// sarifDoc is the part of a SARIF log the test checks, read back as plain JSON.
type sarifDoc struct {
	Schema  string `json:"$schema"`
	Version string `json:"version"`
	Runs    []struct {
		Tool struct {
			Driver struct {
				Name    string `json:"name"`
				Version string `json:"version"`
				Rules   []struct {
					ID                   string         `json:"id"`
					ShortDescription     map[string]any `json:"shortDescription"`
					HelpURI              string         `json:"helpUri"`
					DefaultConfiguration struct {
						Level string `json:"level"`
					} `json:"defaultConfiguration"`
					Properties map[string]any `json:"properties"`
				} `json:"rules"`
			} `json:"driver"`
		} `json:"tool"`
		Results []struct {
			RuleID    string         `json:"ruleId"`
			RuleIndex int            `json:"ruleIndex"`
			Level     string         `json:"level"`
			Message   map[string]any `json:"message"`
			Locations []struct {
				PhysicalLocation struct {
					ArtifactLocation struct {
						URI string `json:"uri"`
					} `json:"artifactLocation"`
					Region struct {
						StartLine int `json:"startLine"`
					} `json:"region"`
				} `json:"physicalLocation"`
				LogicalLocations []struct {
					Name string `json:"name"`
				} `json:"logicalLocations"`
				Properties map[string]any `json:"properties"`
			} `json:"locations"`
			Suppressions []struct {
				Kind          string `json:"kind"`
				Status        string `json:"status"`
				Justification string `json:"justification"`
			} `json:"suppressions"`
			Properties map[string]any `json:"properties"`
		} `json:"results"`
	} `json:"runs"`
}

func TestSARIF(t *testing.T) {
	fs := []scan.Finding{
		finding("f3", "CVE-2024-0002", scan.SeverityMedium, "zlib", "var/lib/dpkg/status", layerB),
		finding("f1", "CVE-2024-0001", scan.SeverityHigh, "openssl", "var/lib/dpkg/status", layerA, 7.5, 9.8),
		finding("f2", "CVE-2024-0001", scan.SeverityCritical, "libssl3", "usr/lib/my app/libssl.so", layerB),
	}
	sup := []Suppressed{{Finding: finding("f4", "CVE-2024-0003", scan.SeverityLow, "bash", "var/lib/dpkg/status", layerA),
		Kind: "ignore-file", Reason: "ignore file line 1 (CVE-2024-0003)"}}
	var buf bytes.Buffer
	require.NoError(t, WriteSARIF(&buf, fs, SARIFOptions{ToolVersion: "1.2.3", Target: "alpine:3", Suppressed: sup}))

	// Schema validation of what was written, through the library's parser.
	back, err := sarif.FromBytes(buf.Bytes())
	require.NoError(t, err)
	require.NoError(t, back.Validate())

	var doc sarifDoc
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	require.Equal(t, "2.1.0", doc.Version)
	require.Contains(t, doc.Schema, "sarif-schema-2.1.0.json")
	require.Len(t, doc.Runs, 1)
	run := doc.Runs[0]
	require.Equal(t, "tollgate", run.Tool.Driver.Name)
	require.Equal(t, "1.2.3", run.Tool.Driver.Version)

	// One rule per vulnerability id, level from the worst severity seen.
	rules := map[string]int{}
	for i, r := range run.Tool.Driver.Rules {
		_, dup := rules[r.ID]
		require.False(t, dup, "rule %s twice", r.ID)
		rules[r.ID] = i
	}
	require.Len(t, rules, 3)
	r1 := run.Tool.Driver.Rules[rules["CVE-2024-0001"]]
	require.Equal(t, "error", r1.DefaultConfiguration.Level)
	require.Equal(t, "9.8", r1.Properties["security-severity"], "highest CVSS score")
	require.Equal(t, "https://osv.dev/vulnerability/DSA-CVE-2024-0001", r1.HelpURI)
	r2 := run.Tool.Driver.Rules[rules["CVE-2024-0002"]]
	require.Equal(t, "warning", r2.DefaultConfiguration.Level)
	require.Equal(t, "5.5", r2.Properties["security-severity"], "severity stands in for a missing CVSS")
	require.Equal(t, "note", run.Tool.Driver.Rules[rules["CVE-2024-0003"]].DefaultConfiguration.Level)

	// One result per finding at its package location, with the layer digest.
	require.Len(t, run.Results, 4)
	seen := map[string]bool{}
	for _, res := range run.Results {
		require.Equal(t, res.RuleID, run.Tool.Driver.Rules[res.RuleIndex].ID, "ruleIndex points at the rule")
		require.Len(t, res.Locations, 1)
		loc := res.Locations[0]
		layer, _ := loc.Properties["layer"].(string)
		require.Equal(t, layer, loc.LogicalLocations[0].Name)
		require.Equal(t, 1, loc.PhysicalLocation.Region.StartLine)
		pkg := res.Properties["packageName"].(string)
		seen[pkg] = true
		require.Equal(t, "alpine:3", res.Properties["target"])
		switch pkg {
		case "openssl":
			require.Equal(t, "error", res.Level)
			require.Equal(t, layerA.String(), layer)
			require.Equal(t, "var/lib/dpkg/status", loc.PhysicalLocation.ArtifactLocation.URI)
			require.Contains(t, res.Message["text"].(string), "openssl 1.0-1")
			require.Contains(t, res.Message["text"].(string), "fixed in 9.9")
			require.Empty(t, res.Suppressions)
		case "libssl3":
			require.Equal(t, "error", res.Level)
			require.Equal(t, "usr/lib/my%20app/libssl.so", loc.PhysicalLocation.ArtifactLocation.URI)
		case "zlib":
			require.Equal(t, "warning", res.Level)
		case "bash":
			require.Equal(t, "note", res.Level)
			require.Len(t, res.Suppressions, 1)
			require.Equal(t, "external", res.Suppressions[0].Kind)
			require.Equal(t, "accepted", res.Suppressions[0].Status)
			require.Equal(t, sup[0].Reason, res.Suppressions[0].Justification)
		}
	}
	require.Len(t, seen, 4)

	// Deterministic output.
	var again bytes.Buffer
	require.NoError(t, WriteSARIF(&again, []scan.Finding{fs[2], fs[0], fs[1]}, SARIFOptions{ToolVersion: "1.2.3", Target: "alpine:3", Suppressed: sup}))
	require.JSONEq(t, buf.String(), again.String())
}

func TestSARIFEmpty(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteSARIF(&buf, nil, SARIFOptions{}))
	var raw map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &raw))
	runs := raw["runs"].([]any)
	require.Len(t, runs, 1)
	results, ok := runs[0].(map[string]any)["results"].([]any)
	require.True(t, ok, "results present (code scanning needs the array)")
	require.Empty(t, results)
}

func TestApply(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	fs := []scan.Finding{
		finding("a", "CVE-1", scan.SeverityHigh, "openssl", "p", layerA),
		finding("b", "CVE-2", scan.SeverityHigh, "zlib", "p", layerA),
		finding("c", "CVE-3", scan.SeverityHigh, "bash", "p", layerA),
	}
	ign, err := ParseIgnore(bytes.NewBufferString("CVE-1\n"))
	require.NoError(t, err)
	vex, err := ParseOpenVEX([]byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example/vex-1",
		"statements":[{"vulnerability":{"name":"CVE-2"},"products":[{"@id":"pkg:deb/debian/zlib"}],
		"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`))
	require.NoError(t, err)
	kept, sup := Apply(fs, ign, vex, now)
	require.Len(t, kept, 1)
	require.Equal(t, "c", kept[0].ID)
	require.Len(t, sup, 2)
	require.Equal(t, "ignore-file", sup[0].Kind)
	require.Equal(t, "ignore file line 1 (CVE-1)", sup[0].Reason)
	require.Equal(t, "openvex", sup[1].Kind)
	require.Equal(t, "OpenVEX not_affected: vulnerable_code_not_in_execute_path (https://example/vex-1)", sup[1].Reason)

	kept, sup = Apply(fs, nil, nil, now)
	require.Len(t, kept, 3)
	require.Empty(t, sup)
}
