package sbom

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestCycloneDXVulnerabilities(t *testing.T) {
	inv := &scan.Inventory{Image: "sha256:1111111111111111111111111111111111111111111111111111111111111111", Packages: []scan.Package{
		{Ecosystem: "Go", Name: "stdlib", Version: "go1.21.0", Path: "usr/local/bin/a", PURL: "pkg:golang/stdlib@go1.21.0"},
		{Ecosystem: "Go", Name: "stdlib", Version: "go1.21.0", Path: "usr/local/bin/b", PURL: "pkg:golang/stdlib@go1.21.0"},
		{Ecosystem: "PyPI", Name: "idna", Version: "3.3", Path: "x"},
	}}
	fs := []scan.Finding{
		{VulnerabilityID: "CVE-2023-39325", AdvisoryID: "GO-2023-2102", RelatedIDs: []string{"GHSA-4374-p667-p6c8", "GO-2023-2102"},
			Severity: scan.SeverityHigh, CVSS: []scan.CVSS{{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", BaseScore: 7.5}},
			FixedVersions: []string{"1.21.3"}, Package: inv.Packages[0], Status: scan.FindingActive},
		{VulnerabilityID: "CVE-2023-39325", AdvisoryID: "GO-2023-2102", Severity: scan.SeverityHigh,
			FixedVersions: []string{"1.21.3"}, Package: inv.Packages[1], Status: scan.FindingActive},
		{VulnerabilityID: "CVE-2024-3651", AdvisoryID: "PYSEC-2024-60", Severity: scan.SeverityUntriaged, Package: inv.Packages[2], Status: scan.FindingActive},
		{VulnerabilityID: "CVE-2000-1", Package: inv.Packages[2], Status: scan.FindingClosed},
	}
	var buf bytes.Buffer
	if err := WriteCycloneDXFindings(&buf, inv, fs, Options{Now: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components []struct {
			Ref string `json:"bom-ref"`
		} `json:"components"`
		Vulnerabilities []struct {
			ID      string `json:"id"`
			Ratings []struct {
				Score    float64 `json:"score"`
				Severity string  `json:"severity"`
				Method   string  `json:"method"`
			} `json:"ratings"`
			Affects []struct {
				Ref string `json:"ref"`
			} `json:"affects"`
			Recommendation string `json:"recommendation"`
			References     []struct {
				ID string `json:"id"`
			} `json:"references"`
		} `json:"vulnerabilities"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vulnerabilities) != 2 {
		t.Fatalf("want 2 vulnerabilities (closed left out), got %d", len(doc.Vulnerabilities))
	}
	v := doc.Vulnerabilities[0]
	if v.ID != "CVE-2023-39325" || len(v.Affects) != 2 || v.Affects[0].Ref == v.Affects[1].Ref {
		t.Fatalf("affects: %+v", v)
	}
	refs := map[string]bool{}
	for _, c := range doc.Components {
		refs[c.Ref] = true
	}
	for _, a := range v.Affects {
		if !refs[a.Ref] {
			t.Errorf("affects %q names no component", a.Ref)
		}
	}
	if len(v.Ratings) != 1 || v.Ratings[0].Score != 7.5 || v.Ratings[0].Severity != "high" || v.Ratings[0].Method != "CVSSv31" {
		t.Errorf("ratings %+v", v.Ratings)
	}
	if v.Recommendation != "Upgrade stdlib to 1.21.3" || len(v.References) != 2 {
		t.Errorf("recommendation %q references %+v", v.Recommendation, v.References)
	}
	if u := doc.Vulnerabilities[1]; u.Ratings[0].Severity != "unknown" || u.Ratings[0].Method != "other" {
		t.Errorf("untriaged rating %+v", u.Ratings)
	}
}
