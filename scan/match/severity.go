package match

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"

	gocvss20 "github.com/pandatix/go-cvss/20"
	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"

	"github.com/tollgate-registry/tollgate/scan"
)

// CVSSScores computes the base score of every CVSS vector in ss (OSV
// severity types CVSS_V2, CVSS_V3, CVSS_V4) with github.com/pandatix/go-cvss.
// Vectors that do not parse are skipped; other types (Ubuntu) are ignored.
func CVSSScores(ss []SeverityScore) []scan.CVSS {
	var out []scan.CVSS
	for _, s := range ss {
		vec := strings.TrimSpace(s.Score)
		var c scan.CVSS
		switch {
		case strings.HasPrefix(vec, "CVSS:3.1/"):
			v, err := gocvss31.ParseVector(vec)
			if err != nil {
				continue
			}
			c = scan.CVSS{Version: "3.1", Vector: vec, BaseScore: v.BaseScore()}
		case strings.HasPrefix(vec, "CVSS:3.0/"):
			v, err := gocvss30.ParseVector(vec)
			if err != nil {
				continue
			}
			c = scan.CVSS{Version: "3.0", Vector: vec, BaseScore: v.BaseScore()}
		case strings.HasPrefix(vec, "CVSS:4.0/"):
			v, err := gocvss40.ParseVector(vec)
			if err != nil {
				continue
			}
			c = scan.CVSS{Version: "4.0", Vector: vec, BaseScore: v.Score()}
		case s.Type == "CVSS_V2":
			v, err := gocvss20.ParseVector(vec)
			if err != nil {
				continue
			}
			c = scan.CVSS{Version: "2.0", Vector: vec, BaseScore: v.BaseScore()}
		default:
			continue
		}
		c.BaseScore = math.Round(c.BaseScore*10) / 10
		out = append(out, c)
	}
	return out
}

// SeverityFromVendor maps a vendor's word (GHSA's database_specific.severity,
// Red Hat/AlmaLinux "Important", Ubuntu/Debian priorities) to Inspector's
// severity; unknown words give UNTRIAGED.
func SeverityFromVendor(word string) scan.Severity {
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "critical":
		return scan.SeverityCritical
	case "high", "important":
		return scan.SeverityHigh
	case "medium", "moderate":
		return scan.SeverityMedium
	case "low":
		return scan.SeverityLow
	case "negligible", "unimportant", "none", "informational":
		return scan.SeverityInformational
	}
	return scan.SeverityUntriaged
}

var rhelSummary = regexp.MustCompile(`^(Critical|Important|Moderate|Low):`)

// VendorSeverity returns the feed's own severity word: database_specific
// .severity (GHSA and others) of the affected entry or the record, an
// "Ubuntu" severity entry, or the "Important:" prefix Red Hat-family feeds
// (AlmaLinux, Rocky) put on summaries. "" when the feed gives none.
func VendorSeverity(a *Advisory, af *Affected) string {
	for _, raw := range []RawJSON{af.DatabaseSpecific, a.DatabaseSpecific} {
		if len(raw) == 0 {
			continue
		}
		var ds struct {
			Severity any `json:"severity"`
		}
		if json.Unmarshal(raw, &ds) == nil {
			if s, ok := ds.Severity.(string); ok && s != "" {
				return s
			}
		}
	}
	for _, s := range append(append([]SeverityScore{}, af.Severity...), a.Severity...) {
		if s.Type == "Ubuntu" && s.Score != "" {
			return s.Score
		}
	}
	if m := rhelSummary.FindStringSubmatch(a.Summary); m != nil {
		return m[1]
	}
	return ""
}

// severityOf picks a finding's severity: the highest CVSS v4, else v3, else
// v2 base score; without a score, the vendor's word; else UNTRIAGED.
func severityOf(cvss []scan.CVSS, vendor string) scan.Severity {
	best := map[string]float64{}
	for _, c := range cvss {
		major := c.Version[:1]
		if c.BaseScore > best[major] || best[major] == 0 {
			best[major] = c.BaseScore
		}
	}
	for _, m := range []string{"4", "3", "2"} {
		if s, ok := best[m]; ok {
			return scan.SeverityFromScore(s)
		}
	}
	if vendor != "" {
		return SeverityFromVendor(vendor)
	}
	return scan.SeverityUntriaged
}
