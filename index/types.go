package index

import (
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// ImageRecord is what tollgate knows of one image manifest digest
// (key img/<digest>): the repositories it lives in, with push and pull times
// per repository. It is written before the client gets its answer.
type ImageRecord struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	// Index is true for image indexes / manifest lists; Children then lists
	// the child manifests with their platforms.
	Index    bool         `json:"index,omitempty"`
	Children []ChildImage `json:"children,omitempty"`
	// Parents lists the indexes that name this manifest.
	Parents []digest.Digest `json:"parents,omitempty"`
	// Subject is the manifest's OCI subject (referrers), if any.
	Subject digest.Digest `json:"subject,omitempty"`
	Repos   []RepoImage   `json:"repos"`
	// ImageSize is the image's size in the registry: its config and layer
	// sizes summed from the pushed or pulled manifest (Size is the
	// manifest's own). 0 for indexes and for records made before it was
	// recorded.
	ImageSize int64 `json:"imageSize,omitempty"`
}

// ChildImage is one entry of an image index.
type ChildImage struct {
	Digest   digest.Digest `json:"digest"`
	Platform scan.Platform `json:"platform"`
}

// PlatformImages are an index record's children that are images of a
// platform: attestation manifests (platform unknown/unknown, as BuildKit
// writes them) are left out.
func (r *ImageRecord) PlatformImages() []ChildImage {
	var out []ChildImage
	for _, ch := range r.Children {
		if ch.Platform.OS == "unknown" || ch.Platform.Architecture == "unknown" {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// RepoImage is the image as it exists in one repository.
type RepoImage struct {
	Repository   string     `json:"repository"`
	Tags         []string   `json:"tags,omitempty"`
	PushedAt     time.Time  `json:"pushedAt"`
	LastPulledAt *time.Time `json:"lastPulledAt,omitempty"`
	PullCount    int64      `json:"pullCount"`
	// Status is ACTIVE or ARCHIVED (ECR's archive storage class).
	Status     string     `json:"status"`
	ArchivedAt *time.Time `json:"archivedAt,omitempty"`
	Deleted    bool       `json:"deleted,omitempty"`
	DeletedAt  *time.Time `json:"deletedAt,omitempty"`
}

// Image statuses (ECR imageStatus).
const (
	ImageActive   = "ACTIVE"
	ImageArchived = "ARCHIVED"
)

// Repo returns the record's entry for repository name, or nil.
func (r *ImageRecord) Repo(name string) *RepoImage {
	for i := range r.Repos {
		if r.Repos[i].Repository == name {
			return &r.Repos[i]
		}
	}
	return nil
}

// Coverage is an image's scan coverage (key cov/<digest>), in Inspector's
// CoveredResource vocabulary
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_CoveredResource.html).
type Coverage struct {
	Image         digest.Digest `json:"image"`
	Platform      scan.Platform `json:"platform"`
	ScanType      string        `json:"scanType"`      // PACKAGE
	ScanFrequency string        `json:"scanFrequency"` // SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL
	StatusCode    string        `json:"statusCode"`    // ACTIVE, INACTIVE
	Reason        scan.Reason   `json:"reason"`
	Message       string        `json:"message,omitempty"` // human detail for the reason
	LastScannedAt *time.Time    `json:"lastScannedAt,omitempty"`
	// FindingsDeleteAt is set when findings were closed because the image
	// became INACTIVE or ARCHIVED; they are deleted at that time (3 days later).
	FindingsDeleteAt *time.Time `json:"findingsDeleteAt,omitempty"`
	UpdatedAt        time.Time  `json:"updatedAt"`
}

// Coverage status codes.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// EventKind says what happened to an image in a repository.
type EventKind string

// Event kinds recorded by the proxy.
const (
	EventPush    EventKind = "push"    // manifest PUT answered 201
	EventPull    EventKind = "pull"    // manifest GET answered 200 (HEAD is not a pull)
	EventDelete  EventKind = "delete"  // manifest or tag DELETE answered 202
	EventArchive EventKind = "archive" // storage class set to ARCHIVE
	EventRestore EventKind = "restore" // storage class set to STANDARD
	// EventSeen: a manifest the mirror fetched from its upstream for a GET
	// the pull policy evaluates. Recorded like a pull (the repository
	// entry, tag, media type, children) but not counted as one, so an
	// image the policy refuses is known under the repository it was
	// requested as: its findings, coverage and suppression rules apply.
	EventSeen EventKind = "seen"
)

// Event is one push, pull or delete seen by the proxy. The proxy writes it to
// the records before answering the client, then hands it to observers
// (lifecycle) that trigger scans.
type Event struct {
	Kind       EventKind     `json:"kind"`
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Tag        string        `json:"tag,omitempty"`
	MediaType  string        `json:"mediaType,omitempty"`
	Size       int64         `json:"size,omitempty"`
	// Manifest is the raw manifest body (push, and pull when the proxy read it).
	Manifest []byte    `json:"-"`
	Mirror   bool      `json:"mirror,omitempty"` // seen through mirror mode
	At       time.Time `json:"at"`
}
