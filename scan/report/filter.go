package report

import (
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// Suppressed is a finding an ignore file or a VEX statement accepted, with
// the reason shown to people (and in SARIF suppressions).
type Suppressed struct {
	Finding scan.Finding `json:"finding"`
	// Kind is "ignore-file" or "openvex".
	Kind string `json:"kind"`
	// Reason names the source: "ignore file line 3 (CVE-…)" or
	// "OpenVEX not_affected: vulnerable_code_not_present (doc @id)".
	Reason string `json:"reason"`
}

// Apply splits findings into those kept and those suppressed by ign (at now;
// expired entries do not apply) or by vex (the deciding statement is
// not_affected or fixed). Either may be nil. images are further digests
// that count as each finding's image for VEX product matching (e.g. the
// index digest a platform image was scanned from). Order is kept.
func Apply(findings []scan.Finding, ign *IgnoreList, vex *VEX, now time.Time, images ...digest.Digest) (kept []scan.Finding, suppressed []Suppressed) {
	for _, f := range findings {
		if e := ign.Match(f, now); e != nil {
			suppressed = append(suppressed, Suppressed{Finding: f, Kind: "ignore-file",
				Reason: fmt.Sprintf("ignore file line %d (%s)", e.Line, e.ID)})
			continue
		}
		if s := vex.Match(f, images...); s.Suppresses() {
			why := s.Status
			if s.Justification != "" {
				why += ": " + s.Justification
			}
			if s.DocID != "" {
				why += " (" + s.DocID + ")"
			}
			suppressed = append(suppressed, Suppressed{Finding: f, Kind: "openvex", Reason: "OpenVEX " + why})
			continue
		}
		kept = append(kept, f)
	}
	return kept, suppressed
}
