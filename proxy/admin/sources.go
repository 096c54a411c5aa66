package admin

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// The admin API reads and changes tollgate's state through these small
// interfaces; cmd wires them to the index stores and the scan lifecycle.
// Any of them may be nil: the operations that need a missing one answer
// ValidationException ("not available") and the others work.

// FindingSource yields the stored findings, one per (image digest, finding).
type FindingSource interface {
	// Each calls fn for every stored finding, in a stable order; returning
	// an error from fn stops the walk and Each returns it.
	Each(ctx context.Context, fn func(f scan.Finding) error) error
}

// ImageSource yields image records (index.ImageRecord: repositories, tags,
// push and pull times per repository).
type ImageSource interface {
	// Image returns the record of dgst, or an error wrapping index.ErrNotFound.
	Image(ctx context.Context, dgst digest.Digest) (*index.ImageRecord, error)
	// EachImage calls fn for every record, in a stable order.
	EachImage(ctx context.Context, fn func(rec *index.ImageRecord) error) error
}

// CoverageSource yields scan coverage per image digest.
type CoverageSource interface {
	// Coverage returns dgst's coverage, or an error wrapping index.ErrNotFound.
	Coverage(ctx context.Context, dgst digest.Digest) (*index.Coverage, error)
}

// ScanningConfiguration is the registry scanning configuration in ECR's
// (RegistryScanningConfiguration) and Inspector's (EcrConfiguration) terms.
type ScanningConfiguration struct {
	ScanType               string         `json:"scanType"` // ENHANCED or BASIC
	Rules                  []ScanningRule `json:"rules"`
	RescanDuration         string         `json:"rescanDuration"`         // LIFETIME, DAYS_14 … DAYS_180
	PullDateRescanDuration string         `json:"pullDateRescanDuration"` // DAYS_14 … DAYS_180
	PullDateRescanMode     string         `json:"pullDateRescanMode"`     // LAST_PULL_DATE, LAST_IN_USE_AT
	UpdatedAt              time.Time      `json:"updatedAt"`
}

// ScanningRule is ECR's RegistryScanningRule: a frequency for the
// repositories matching any of the WILDCARD filters.
type ScanningRule struct {
	ScanFrequency     string   `json:"scanFrequency"` // SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL
	RepositoryFilters []string `json:"repositoryFilters"`
}

// ConfigStore holds the scanning configuration (cfg/… in the index).
type ConfigStore interface {
	ScanningConfiguration(ctx context.Context) (ScanningConfiguration, error)
	// SetScanningConfiguration validates and stores c; it takes effect for
	// the next eligibility decision.
	SetScanningConfiguration(ctx context.Context, c ScanningConfiguration) error
}

// Scanner queues a manual scan (ECR StartImageScan).
type Scanner interface {
	// RequestScan queues a scan of dgst as seen in repo; it returns at once.
	RequestScan(ctx context.Context, repo string, dgst digest.Digest) error
}

// Archiver changes an image's storage class (ECR UpdateImageStorageClass).
type Archiver interface {
	// Archive marks repo@dgst ARCHIVED; Restore marks it ACTIVE again.
	// Both wrap index.ErrNotFound for unknown images.
	Archive(ctx context.Context, repo string, dgst digest.Digest) error
	Restore(ctx context.Context, repo string, dgst digest.Digest) error
}

// Deleter deletes a manifest (ECR BatchDeleteImage), as a registry DELETE does.
type Deleter interface {
	// DeleteImage deletes repo@dgst (all its tags); wraps index.ErrNotFound.
	DeleteImage(ctx context.Context, repo string, dgst digest.Digest) error
	// Untag removes tag from repo; wraps index.ErrNotFound.
	Untag(ctx context.Context, repo, tag string) error
}

// InUseSource answers from the runtime in-use reports
// (*lifecycle.Service implements it).
type InUseSource interface {
	// InUse returns dgst's inUseCount and lastInUseAt.
	InUse(ctx context.Context, dgst digest.Digest) (index.InUseStats, error)
	// ClustersForImage returns the clusters that ran dgst, with workloads.
	ClustersForImage(ctx context.Context, dgst digest.Digest) ([]index.ClusterUse, error)
}

// SBOMExporter writes an image's SBOM (scan/sbom).
type SBOMExporter interface {
	// WriteSBOM writes dgst's SBOM as repo@dgst in format ("CYCLONEDX_1_4"
	// or "SPDX_2_3") to w.
	WriteSBOM(ctx context.Context, repo string, dgst digest.Digest, format string, w io.Writer) error
}

// FilterStore holds suppression rules (index.Filters implements it).
type FilterStore interface {
	PutFilter(ctx context.Context, f index.Filter) error
	GetFilter(ctx context.Context, arn string) (index.Filter, error)
	DeleteFilter(ctx context.Context, arn string) error
	ListFilters(ctx context.Context) ([]index.Filter, error)
}
