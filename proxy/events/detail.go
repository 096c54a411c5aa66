package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// Builder turns tollgate's state changes into events with Inspector's and
// ECR's EventBridge detail shapes. The zero value works (region us-east-1,
// account 000000000000, as the admin API's defaults).
type Builder struct {
	Region    string
	AccountID string
}

func (b Builder) region() string {
	if b.Region == "" {
		return "us-east-1"
	}
	return b.Region
}

func (b Builder) account() string {
	if b.AccountID == "" {
		return "000000000000"
	}
	return b.AccountID
}

// RepositoryARN is arn:aws:ecr:<region>:<account>:repository/<repo>.
func (b Builder) RepositoryARN(repo string) string {
	return "arn:aws:ecr:" + b.region() + ":" + b.account() + ":repository/" + repo
}

// ImageARN is Inspector's resource id of an ECR image:
// arn:aws:ecr:<region>:<account>:repository/<repo>/<digest>.
func (b Builder) ImageARN(repo string, image digest.Digest) string {
	return b.RepositoryARN(repo) + "/" + image.String()
}

// FindingARN is the ARN the admin API gives finding id seen in repo:
// arn:aws:inspector2:<region>:<account>:finding/<32 hex of sha256(repo NUL id)>.
func (b Builder) FindingARN(repo, id string) string {
	h := sha256.Sum256([]byte(repo + "\x00" + id))
	return "arn:aws:inspector2:" + b.region() + ":" + b.account() + ":finding/" + hex.EncodeToString(h[:16])
}

// ScanDetail is the detail of "Inspector2 Scan"
// (https://docs.aws.amazon.com/inspector/latest/user/eventbridge-integration.html).
type ScanDetail struct {
	ScanStatus            string         `json:"scan-status"`     // INITIAL_SCAN_COMPLETE
	RepositoryName        string         `json:"repository-name"` // repository ARN
	FindingSeverityCounts map[string]int `json:"finding-severity-counts"`
	ImageDigest           string         `json:"image-digest"`
	ImageTags             []string       `json:"image-tags"`
}

// ScanComplete is "Inspector2 Scan" for the initial scan of image in repo.
// counts are ACTIVE findings by severity; TOTAL is added. The id is stable
// per (repo, image): an image's initial scan completes once.
func (b Builder) ScanComplete(repo string, image digest.Digest, tags []string, counts map[scan.Severity]int, at time.Time) (Event, error) {
	c := map[string]int{"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0}
	total := 0
	for s, n := range counts {
		c[string(s)] += n
		total += n
	}
	c["TOTAL"] = total
	if tags == nil {
		tags = []string{}
	}
	d := ScanDetail{
		ScanStatus:            "INITIAL_SCAN_COMPLETE",
		RepositoryName:        b.RepositoryARN(repo),
		FindingSeverityCounts: c,
		ImageDigest:           image.String(),
		ImageTags:             tags,
	}
	return New(SourceInspector, TypeScan, b.ImageARN(repo, image), at, d, repo, image.String())
}

// FindingChange says what happened to a finding.
type FindingChange string

// Finding changes.
const (
	FindingCreated FindingChange = "CREATED"
	FindingUpdated FindingChange = "UPDATED"
	FindingClosed  FindingChange = "CLOSED"
)

// FindingDetail is the detail of "Inspector2 Finding": Inspector's Finding
// shape (https://docs.aws.amazon.com/inspector/v2/APIReference/API_Finding.html),
// limited to container-image fields, plus tollgate's change.
type FindingDetail struct {
	AWSAccountID                string             `json:"awsAccountId"`
	FindingArn                  string             `json:"findingArn"`
	Type                        string             `json:"type"` // PACKAGE_VULNERABILITY
	Title                       string             `json:"title"`
	Description                 string             `json:"description,omitempty"`
	Severity                    string             `json:"severity"`
	Status                      string             `json:"status"`
	FixAvailable                string             `json:"fixAvailable,omitempty"`
	InspectorScore              *float64           `json:"inspectorScore,omitempty"`
	FirstObservedAt             time.Time          `json:"firstObservedAt"`
	LastObservedAt              time.Time          `json:"lastObservedAt"`
	UpdatedAt                   time.Time          `json:"updatedAt"`
	PackageVulnerabilityDetails PackageVulnDetails `json:"packageVulnerabilityDetails"`
	Resources                   []Resource         `json:"resources"`
	// Change is tollgate's: CREATED, UPDATED or CLOSED.
	Change FindingChange `json:"tollgateChange"`
}

// PackageVulnDetails is Inspector's PackageVulnerabilityDetails.
type PackageVulnDetails struct {
	VulnerabilityID        string              `json:"vulnerabilityId"`
	Source                 string              `json:"source,omitempty"`
	SourceURL              string              `json:"sourceUrl,omitempty"`
	VendorSeverity         string              `json:"vendorSeverity,omitempty"`
	RelatedVulnerabilities []string            `json:"relatedVulnerabilities,omitempty"`
	ReferenceUrls          []string            `json:"referenceUrls,omitempty"`
	Cvss                   []CvssScore         `json:"cvss,omitempty"`
	VulnerablePackages     []VulnerablePackage `json:"vulnerablePackages"`
}

// CvssScore is Inspector's CvssScore.
type CvssScore struct {
	BaseScore     float64 `json:"baseScore"`
	ScoringVector string  `json:"scoringVector"`
	Source        string  `json:"source,omitempty"`
	Version       string  `json:"version"`
}

// VulnerablePackage is Inspector's VulnerablePackage.
type VulnerablePackage struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Arch            string `json:"arch,omitempty"`
	FilePath        string `json:"filePath,omitempty"`
	FixedInVersion  string `json:"fixedInVersion,omitempty"`
	SourceLayerHash string `json:"sourceLayerHash,omitempty"`
	PackageManager  string `json:"packageManager,omitempty"`
}

// Resource is Inspector's Resource for an ECR image.
type Resource struct {
	Type    string          `json:"type"` // AWS_ECR_CONTAINER_IMAGE
	ID      string          `json:"id"`
	Details ResourceDetails `json:"details"`
}

// ResourceDetails holds awsEcrContainerImage.
type ResourceDetails struct {
	AwsEcrContainerImage EcrImage `json:"awsEcrContainerImage"`
}

// EcrImage is Inspector's AwsEcrContainerImageDetails.
type EcrImage struct {
	RepositoryName string     `json:"repositoryName"`
	ImageHash      string     `json:"imageHash"`
	ImageTags      []string   `json:"imageTags,omitempty"`
	Registry       string     `json:"registry"`
	Architecture   string     `json:"architecture,omitempty"`
	Platform       string     `json:"platform,omitempty"`
	PushedAt       *time.Time `json:"pushedAt,omitempty"`
}

// Finding is "Inspector2 Finding" for f as seen in repo (one event per
// repository holding the image, as the admin API has one finding per
// repository). The id is stable per (finding ARN, change, f.UpdatedAt).
func (b Builder) Finding(repo string, tags []string, f scan.Finding, change FindingChange) (Event, error) {
	arn := b.FindingARN(repo, f.ID)
	d := FindingDetail{
		AWSAccountID:    b.account(),
		FindingArn:      arn,
		Type:            "PACKAGE_VULNERABILITY",
		Title:           f.Title,
		Description:     f.Description,
		Severity:        string(f.Severity),
		Status:          string(f.Status),
		FixAvailable:    f.FixAvailable,
		FirstObservedAt: f.FirstObservedAt.UTC(),
		LastObservedAt:  f.LastObservedAt.UTC(),
		UpdatedAt:       f.UpdatedAt.UTC(),
		PackageVulnerabilityDetails: PackageVulnDetails{
			VulnerabilityID:        f.VulnerabilityID,
			SourceURL:              f.SourceURL,
			VendorSeverity:         f.VendorSeverity,
			RelatedVulnerabilities: f.RelatedIDs,
			ReferenceUrls:          f.References,
			VulnerablePackages: []VulnerablePackage{{
				Name:            f.Package.Name,
				Version:         f.Package.Version,
				Arch:            f.Package.Arch,
				FilePath:        f.Package.Path,
				FixedInVersion:  strings.Join(f.FixedVersions, ", "),
				SourceLayerHash: f.Package.Layer.String(),
			}},
		},
		Resources: []Resource{{
			Type: "AWS_ECR_CONTAINER_IMAGE",
			ID:   b.ImageARN(repo, f.Image),
			Details: ResourceDetails{AwsEcrContainerImage: EcrImage{
				RepositoryName: repo,
				ImageHash:      f.Image.String(),
				ImageTags:      tags,
				Registry:       b.account(),
			}},
		}},
		Change: change,
	}
	for _, c := range f.CVSS {
		d.PackageVulnerabilityDetails.Cvss = append(d.PackageVulnerabilityDetails.Cvss,
			CvssScore{BaseScore: c.BaseScore, ScoringVector: c.Vector, Source: c.Source, Version: c.Version})
		if d.InspectorScore == nil || c.BaseScore > *d.InspectorScore {
			s := c.BaseScore
			d.InspectorScore = &s
		}
	}
	at := f.UpdatedAt
	if at.IsZero() {
		at = f.LastObservedAt
	}
	return New(SourceInspector, TypeFinding, arn, at, d, arn, string(change), f.UpdatedAt.UTC().Format(time.RFC3339Nano))
}

// CoverageDetail is the detail of "Inspector2 Coverage".
type CoverageDetail struct {
	ScanStatus     CoverageStatus `json:"scanStatus"`
	ScanType       string         `json:"scanType"` // PACKAGE
	EventTimestamp time.Time      `json:"eventTimestamp"`
	VersionID      string         `json:"versionId"` // "1.0"
	ResourceID     string         `json:"resourceId"`
	ScanFrequency  string         `json:"scanFrequency,omitempty"`
	LastScannedAt  *time.Time     `json:"lastScannedAt,omitempty"`
}

// CoverageStatus is the scan status in a coverage event.
type CoverageStatus struct {
	Reason          string `json:"reason"`
	StatusCodeValue string `json:"statusCodeValue"`
}

// Coverage is "Inspector2 Coverage" for an image's new coverage c in repo.
// The id is stable per (resource, status, reason, c.UpdatedAt).
func (b Builder) Coverage(repo string, c index.Coverage) (Event, error) {
	res := b.ImageARN(repo, c.Image)
	st := c.ScanType
	if st == "" {
		st = "PACKAGE"
	}
	d := CoverageDetail{
		ScanStatus:     CoverageStatus{Reason: string(c.Reason), StatusCodeValue: c.StatusCode},
		ScanType:       st,
		EventTimestamp: c.UpdatedAt.UTC(),
		VersionID:      "1.0",
		ResourceID:     res,
		ScanFrequency:  c.ScanFrequency,
		LastScannedAt:  c.LastScannedAt,
	}
	return New(SourceInspector, TypeCoverage, res, c.UpdatedAt, d,
		res, c.StatusCode, string(c.Reason), c.UpdatedAt.UTC().Format(time.RFC3339Nano))
}

// ImageActionDetail is the detail of ECR's "ECR Image Action"
// (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html).
type ImageActionDetail struct {
	Result         string `json:"result"` // SUCCESS
	RepositoryName string `json:"repository-name"`
	ImageDigest    string `json:"image-digest"`
	ActionType     string `json:"action-type"` // PUSH, DELETE; PULL is tollgate's
	ImageTag       string `json:"image-tag,omitempty"`
	MediaType      string `json:"manifest-media-type,omitempty"`
}

// ImageAction is "ECR Image Action" for a push, delete or pull the proxy
// recorded. Other event kinds (archive, restore) give an error. The id is
// stable per (kind, repo, digest, tag, ev.At).
func (b Builder) ImageAction(ev index.Event) (Event, error) {
	var action string
	switch ev.Kind {
	case index.EventPush:
		action = "PUSH"
	case index.EventDelete:
		action = "DELETE"
	case index.EventPull:
		action = "PULL"
	default:
		return Event{}, fmt.Errorf("events: no ECR Image Action for %q", ev.Kind)
	}
	d := ImageActionDetail{
		Result:         "SUCCESS",
		RepositoryName: ev.Repository,
		ImageDigest:    ev.Digest.String(),
		ActionType:     action,
		ImageTag:       ev.Tag,
		MediaType:      ev.MediaType,
	}
	return New(SourceECR, TypeImageAction, b.ImageARN(ev.Repository, ev.Digest), ev.At, d,
		action, ev.Repository, ev.Digest.String(), ev.Tag, ev.At.UTC().Format(time.RFC3339Nano))
}
