// Package scan holds tollgate's analysis domain: the types that flow from a
// layer's tar stream to an image inventory (Package, LayerInventory,
// Inventory), the Analyzer interface, and the scan status vocabulary shared by
// the proxy, the index and the admin API.
//
// Matching lives in scan/match and meets analysis only through Inventory
// (claircore's index/match split).
package scan

import (
	"archive/tar"
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// Package is one installed package found in a layer.
//
// Ecosystem is the OSV ecosystem (https://ossf.github.io/osv-schema/#affectedpackage-field).
// For OS packages a layer only knows the family ("Debian", "Alpine", "Red Hat");
// the release suffix ("Debian:12", "Alpine:v3.18") is added by Merge's caller
// once the image's os-release is known (see Inventory.ResolveOS).
type Package struct {
	Name          string        `json:"name"`
	Version       string        `json:"version"`
	Ecosystem     string        `json:"ecosystem"`
	PURL          string        `json:"purl,omitempty"`
	SourceName    string        `json:"sourceName,omitempty"`    // dpkg Source:, apk origin, RPM source RPM name
	SourceVersion string        `json:"sourceVersion,omitempty"` // empty means same as Version
	Arch          string        `json:"arch,omitempty"`
	Path          string        `json:"path"`                // normalised, no leading slash: the file the package was found in
	Layer         digest.Digest `json:"layer"`               // the layer that introduced the package
	Analyzer      string        `json:"analyzer"`            // Analyzer.Name() that produced it
	Kind          PackageKind   `json:"kind"`                // os or lang
	OSManaged     bool          `json:"osManaged,omitempty"` // a language package whose files an OS package owns
	Licenses      []string      `json:"licenses,omitempty"`
	// Metadata carries analyzer-specific facts (e.g. Go toolchain version).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// PackageKind distinguishes OS packages (matched by source package and
// release) from language packages.
type PackageKind string

const (
	KindOS   PackageKind = "os"
	KindLang PackageKind = "lang"
)

// OSRelease is what /etc/os-release (or /usr/lib/os-release) says.
type OSRelease struct {
	ID         string `json:"id"`                   // "debian", "alpine", "rhel", ...
	VersionID  string `json:"versionId"`            // "12", "3.18.9"
	Codename   string `json:"codename,omitempty"`   // VERSION_CODENAME
	PrettyName string `json:"prettyName,omitempty"` // PRETTY_NAME
	IDLike     string `json:"idLike,omitempty"`
	Path       string `json:"path,omitempty"` // where it was read
}

// LayerInventory is the result of one pass over one layer's tar stream,
// cached by (Digest, AnalyzersVersion): a layer is read once.
type LayerInventory struct {
	Digest           digest.Digest `json:"digest"`           // the layer blob digest (compressed)
	DiffID           digest.Digest `json:"diffId,omitempty"` // digest of the uncompressed tar, when computed
	AnalyzersVersion string        `json:"analyzersVersion"`
	Compression      string        `json:"compression"` // "gzip", "zstd", "none"
	Packages         []Package     `json:"packages"`
	// Paths lists every entry path an analyzer wanted in this layer, including
	// package databases that yielded no package, links at such paths, and
	// directories at paths where an analyzer would want a file: a later
	// layer's entry at the same path supersedes the packages earlier layers
	// found there.
	Paths []string `json:"paths,omitempty"`
	// Whiteouts are paths deleted by this layer (".wh.<name>" → "<dir>/<name>").
	Whiteouts []string `json:"whiteouts,omitempty"`
	// OpaqueDirs are directories whose lower content this layer hides (".wh..wh..opq").
	OpaqueDirs []string `json:"opaqueDirs,omitempty"`
	// NonDirs are non-directory entries (symlinks, hard links, devices, and
	// regular files at paths that usually are package directories, see
	// mayHoldPackages) of this layer: like overlayfs, each hides whatever
	// lower layers have below that path.
	NonDirs []string `json:"nonDirs,omitempty"`
	// OSOwned lists paths that OS package databases in this layer claim
	// (filtered to those that can hold language packages), used to mark
	// OS-managed language packages.
	OSOwned []string   `json:"osOwned,omitempty"`
	OS      *OSRelease `json:"os,omitempty"`
	Entries int64      `json:"entries"`
	Bytes   int64      `json:"bytes"` // uncompressed tar bytes read
	// Errors lists what failed in this layer (corrupt stream, limit hit,
	// analyzer panic); the rest of the result stands.
	Errors     []LayerError `json:"errors,omitempty"`
	AnalyzedAt time.Time    `json:"analyzedAt"`
}

// LayerError is one problem met while walking a layer.
type LayerError struct {
	// Layer is the layer blob digest, set when layers are merged into an
	// image inventory (empty in a LayerInventory's own list).
	Layer    digest.Digest `json:"layer,omitempty"`
	Analyzer string        `json:"analyzer,omitempty"`
	Path     string        `json:"path,omitempty"`
	Reason   Reason        `json:"reason"`
	Message  string        `json:"message"`
}

// Platform is an image's os/architecture/variant, from its config or index entry.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Inventory is an image's package inventory: the merge of its layers, bottom
// to top, with whiteouts applied. Stored per image manifest digest.
type Inventory struct {
	Image    digest.Digest   `json:"image"` // manifest digest
	Platform Platform        `json:"platform"`
	OS       *OSRelease      `json:"os,omitempty"`
	Layers   []digest.Digest `json:"layers"`
	Packages []Package       `json:"packages"`
	Errors   []LayerError    `json:"errors,omitempty"`
	// AnalyzersVersion of the layer inventories merged.
	AnalyzersVersion string    `json:"analyzersVersion"`
	CreatedAt        time.Time `json:"createdAt"`
}

// Analyzer extracts packages from tar entries. Implementations must be safe
// for concurrent use by several walks.
type Analyzer interface {
	// Name is stable and used as the `analyzer` log field and Package.Analyzer.
	Name() string
	// Version is part of the layer inventory cache key; bump it when output changes.
	Version() string
	// Wants decides from the header alone (path and mode; no I/O) whether the
	// entry must be read. The path is normalised, without leading slash.
	Wants(hdr *tar.Header) bool
	// Analyze reads the entry. r yields at most hdr.Size bytes. Errors are
	// reported in LayerInventory.Errors; they never stop the walk.
	Analyze(ctx context.Context, hdr *tar.Header, r io.Reader) ([]Package, error)
}

// Reason is a scan status reason, in Amazon Inspector's vocabulary
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_ScanStatus.html).
type Reason string

// Scan status reasons used by tollgate.
const (
	ReasonPendingInitialScan        Reason = "PENDING_INITIAL_SCAN"
	ReasonScanInProgress            Reason = "SCAN_IN_PROGRESS"
	ReasonSuccessful                Reason = "SUCCESSFUL"
	ReasonScanFrequencyManual       Reason = "SCAN_FREQUENCY_MANUAL"
	ReasonScanFrequencyScanOnPush   Reason = "SCAN_FREQUENCY_SCAN_ON_PUSH"
	ReasonScanEligibilityExpired    Reason = "SCAN_ELIGIBILITY_EXPIRED"
	ReasonPendingRevivalScan        Reason = "PENDING_REVIVAL_SCAN"
	ReasonUnsupportedOS             Reason = "UNSUPPORTED_OS"
	ReasonUnsupportedMediaType      Reason = "UNSUPPORTED_MEDIA_TYPE"
	ReasonUnsupportedConfigFile     Reason = "UNSUPPORTED_CONFIG_FILE"
	ReasonAccessDenied              Reason = "ACCESS_DENIED"
	ReasonInternalError             Reason = "INTERNAL_ERROR"
	ReasonImageArchived             Reason = "IMAGE_ARCHIVED"
	ReasonResourceTerminated        Reason = "RESOURCE_TERMINATED"
	ReasonStaleInventory            Reason = "STALE_INVENTORY"
	ReasonExcludedByTag             Reason = "EXCLUDED_BY_TAG"
	ReasonNoInventory               Reason = "NO_INVENTORY"
	ReasonNoResourcesFound          Reason = "NO_RESOURCES_FOUND"
	ReasonPendingDisable            Reason = "PENDING_DISABLE"
	ReasonDeepInspectionNoInventory Reason = "DEEP_INSPECTION_NO_INVENTORY"
	// Layer-level reasons (tollgate's own, reported in LayerError).
	ReasonCorruptLayer  Reason = "CORRUPT_LAYER"
	ReasonLimitExceeded Reason = "LIMIT_EXCEEDED"
	ReasonAnalyzerPanic Reason = "ANALYZER_PANIC"
	ReasonAnalyzerError Reason = "ANALYZER_ERROR"
)
