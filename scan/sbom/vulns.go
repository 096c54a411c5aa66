package sbom

import (
	"fmt"
	"io"
	"sort"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/tollgate-registry/tollgate/scan"
)

// AddVulnerabilities fills bom's `vulnerabilities` (CycloneDX 1.6) from
// the image's findings: one entry per vulnerability id with its source
// (the advisory), ratings (each CVSS vector and base score, plus the
// finding's severity), affects (the bom-refs of the affected package
// components, as CycloneDX built them from inv), the fixed versions as
// recommendation, and the related ids as references. CLOSED findings are
// left out. bom must come from CycloneDX(inv, ...).
func AddVulnerabilities(bom *cdx.BOM, inv *scan.Inventory, fs []scan.Finding) {
	refs := map[string]string{}
	if bom.Components != nil {
		for _, c := range *bom.Components {
			eco, path := "", ""
			if c.Properties != nil {
				for _, p := range *c.Properties {
					switch p.Name {
					case PropEcosystem:
						eco = p.Value
					case PropPath:
						path = p.Value
					}
				}
			}
			k := pkgKey(eco, c.Name, c.Version, path)
			if _, dup := refs[k]; !dup {
				refs[k] = c.BOMRef
			}
		}
	}
	byID := map[string]*cdx.Vulnerability{}
	var order []string
	for _, f := range fs {
		if f.Status == scan.FindingClosed {
			continue
		}
		v := byID[f.VulnerabilityID]
		if v == nil {
			v = newVuln(f)
			byID[f.VulnerabilityID] = v
			order = append(order, f.VulnerabilityID)
		}
		if ref, ok := refs[pkgKey(f.Package.Ecosystem, f.Package.Name, f.Package.Version, f.Package.Path)]; ok {
			*v.Affects = append(*v.Affects, cdx.Affects{Ref: ref})
		}
		if len(f.FixedVersions) > 0 {
			rec := fmt.Sprintf("Upgrade %s to %s", f.Package.Name, strings.Join(f.FixedVersions, " or "))
			if !strings.Contains(v.Recommendation, rec) {
				if v.Recommendation != "" {
					v.Recommendation += "; "
				}
				v.Recommendation += rec
			}
		}
	}
	if len(order) == 0 {
		return
	}
	sort.Strings(order)
	out := make([]cdx.Vulnerability, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	bom.Vulnerabilities = &out
}

func pkgKey(eco, name, version, path string) string {
	return eco + "\x00" + name + "\x00" + version + "\x00" + path
}

func newVuln(f scan.Finding) *cdx.Vulnerability {
	v := &cdx.Vulnerability{
		BOMRef:      f.VulnerabilityID,
		ID:          f.VulnerabilityID,
		Source:      &cdx.Source{Name: f.AdvisoryID, URL: f.SourceURL},
		Description: f.Title,
		Detail:      f.Description,
		Affects:     &[]cdx.Affects{},
	}
	var ratings []cdx.VulnerabilityRating
	for _, c := range f.CVSS {
		score := c.BaseScore
		r := cdx.VulnerabilityRating{Score: &score, Vector: c.Vector, Severity: cdxSeverity(scan.SeverityFromScore(score))}
		switch {
		case strings.HasPrefix(c.Version, "4"):
			r.Method = cdx.ScoringMethodCVSSv4
		case c.Version == "3.1":
			r.Method = cdx.ScoringMethodCVSSv31
		case strings.HasPrefix(c.Version, "3"):
			r.Method = cdx.ScoringMethodCVSSv3
		case strings.HasPrefix(c.Version, "2"):
			r.Method = cdx.ScoringMethodCVSSv2
		}
		ratings = append(ratings, r)
	}
	if len(f.CVSS) == 0 {
		r := cdx.VulnerabilityRating{Severity: cdxSeverity(f.Severity), Method: cdx.ScoringMethodOther}
		if f.VendorSeverity != "" {
			r.Justification = "vendor severity " + f.VendorSeverity
		}
		ratings = append(ratings, r)
	}
	v.Ratings = &ratings
	if len(f.RelatedIDs) > 0 {
		refs := make([]cdx.VulnerabilityReference, 0, len(f.RelatedIDs))
		for _, id := range f.RelatedIDs {
			refs = append(refs, cdx.VulnerabilityReference{ID: id, Source: &cdx.Source{URL: "https://osv.dev/vulnerability/" + id}})
		}
		v.References = &refs
	}
	return v
}

func cdxSeverity(s scan.Severity) cdx.Severity {
	switch s {
	case scan.SeverityCritical:
		return cdx.SeverityCritical
	case scan.SeverityHigh:
		return cdx.SeverityHigh
	case scan.SeverityMedium:
		return cdx.SeverityMedium
	case scan.SeverityLow:
		return cdx.SeverityLow
	case scan.SeverityInformational:
		return cdx.SeverityInfo
	}
	return cdx.SeverityUnknown
}

// WriteCycloneDXFindings writes inv as CycloneDX 1.6 JSON with a
// `vulnerabilities` section from fs (see AddVulnerabilities).
func WriteCycloneDXFindings(w io.Writer, inv *scan.Inventory, fs []scan.Finding, opts Options) error {
	bom := CycloneDX(inv, opts)
	AddVulnerabilities(bom, inv, fs)
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return fmt.Errorf("sbom: cyclonedx: %w", err)
	}
	return nil
}
