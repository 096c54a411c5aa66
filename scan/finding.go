package scan

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Severity is Amazon Inspector's finding severity
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_Finding.html).
type Severity string

// Severities, highest first.
const (
	SeverityCritical      Severity = "CRITICAL"
	SeverityHigh          Severity = "HIGH"
	SeverityMedium        Severity = "MEDIUM"
	SeverityLow           Severity = "LOW"
	SeverityInformational Severity = "INFORMATIONAL"
	SeverityUntriaged     Severity = "UNTRIAGED"
)

// Rank orders severities: CRITICAL 5 … UNTRIAGED 0; unknown strings rank 0.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 5
	case SeverityHigh:
		return 4
	case SeverityMedium:
		return 3
	case SeverityLow:
		return 2
	case SeverityInformational:
		return 1
	}
	return 0
}

// SeverityFromScore maps a CVSS base score to Inspector's severity using the
// CVSS v3/v4 qualitative scale: 9.0–10 CRITICAL, 7.0–8.9 HIGH, 4.0–6.9
// MEDIUM, 0.1–3.9 LOW, 0 INFORMATIONAL.
func SeverityFromScore(score float64) Severity {
	switch {
	case score >= 9.0:
		return SeverityCritical
	case score >= 7.0:
		return SeverityHigh
	case score >= 4.0:
		return SeverityMedium
	case score > 0:
		return SeverityLow
	}
	return SeverityInformational
}

// FindingStatus is ACTIVE, SUPPRESSED or CLOSED.
type FindingStatus string

// Finding statuses.
const (
	FindingActive     FindingStatus = "ACTIVE"
	FindingSuppressed FindingStatus = "SUPPRESSED"
	FindingClosed     FindingStatus = "CLOSED"
)

// CVSS is one CVSS score as computed from its vector.
type CVSS struct {
	Version   string  `json:"version"` // "3.1", "4.0"
	Vector    string  `json:"vector"`
	BaseScore float64 `json:"baseScore"`
	Source    string  `json:"source,omitempty"`
}

// Finding is one vulnerability in one package of one image. ID is stable
// across rescans: the same image, package (ecosystem, name, version, path)
// and vulnerability give the same ID (see FindingID).
type Finding struct {
	ID              string        `json:"id"`
	Image           digest.Digest `json:"image"`
	VulnerabilityID string        `json:"vulnerabilityId"` // the CVE id when the advisory has one
	AdvisoryID      string        `json:"advisoryId"`      // the OSV id that matched
	RelatedIDs      []string      `json:"relatedIds,omitempty"`
	Title           string        `json:"title"`
	Description     string        `json:"description,omitempty"`
	Severity        Severity      `json:"severity"`
	VendorSeverity  string        `json:"vendorSeverity,omitempty"`
	CVSS            []CVSS        `json:"cvss,omitempty"`
	FixedVersions   []string      `json:"fixedVersions,omitempty"`
	FixAvailable    string        `json:"fixAvailable"` // YES, NO, PARTIAL
	Package         Package       `json:"package"`
	SourceURL       string        `json:"sourceUrl,omitempty"`
	References      []string      `json:"references,omitempty"`
	Status          FindingStatus `json:"status"`
	FirstObservedAt time.Time     `json:"firstObservedAt"`
	LastObservedAt  time.Time     `json:"lastObservedAt"`
	UpdatedAt       time.Time     `json:"updatedAt"`
	ClosedAt        *time.Time    `json:"closedAt,omitempty"`
}
