// Package lifecycle is tollgate's continuous scanning lifecycle, after Amazon
// Inspector's behaviour for Amazon ECR images ("Scanning Amazon ECR container
// images", "Configuring the Amazon ECR re-scan duration"): scan frequencies
// from the registry scanning rules, rescan eligibility by push, pull or
// in-use dates, archive and restore, coverage with Inspector's status
// reasons, and a durable scan queue (index.Queue) worked by a bounded pool.
//
// The proxy calls Observe after each recorded event; the advisory updater
// calls OnAdvisoryDelta; the admin API calls RequestScan, Archive, Restore,
// ReportInUse, the configuration and the coverage queries; cmd calls Run.
// See docs/lifecycle.md.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// Clock tells the time; tests inject one to move days forward.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock, in UTC.
type SystemClock struct{}

// Now returns time.Now().UTC().
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// Records is what the lifecycle reads of the image records (index.Records).
type Records interface {
	// Image returns the record of manifest digest d; index.ErrNotFound (wrapped) when unknown.
	Image(ctx context.Context, d digest.Digest) (*index.ImageRecord, error)
	// EachImage calls fn for every image record.
	EachImage(ctx context.Context, fn func(rec *index.ImageRecord) error) error
}

// Recorder writes an event to the image records (archive and restore go
// through it before Observe, as the proxy does for push and pull).
type Recorder interface {
	Record(ctx context.Context, ev index.Event) error
}

// TagResolver resolves repo:tag to a manifest digest; index.ErrNotFound
// (wrapped) when unknown. Used for in-use reports that carry only a tag.
type TagResolver interface {
	Resolve(ctx context.Context, repo, tag string) (digest.Digest, error)
}

// ImageScanner produces an image's findings: assembles (or reuses) its
// inventory and matches it against the advisories, storing findings under
// stable IDs so a repeated scan overwrites rather than duplicates.
//
// It returns a Result with Reason SUCCESSFUL, or with a permanent reason
// (UNSUPPORTED_OS, UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_CONFIG_FILE) for an
// image it cannot scan. Errors are transient (retried with backoff) unless
// they wrap a *ScanError with Permanent set.
type ImageScanner interface {
	Scan(ctx context.Context, req ScanRequest) (Result, error)
}

// ScanRequest names the image to scan and why.
type ScanRequest struct {
	Repository string
	Image      digest.Digest
	// Parent is the image index that names Image, when the scan comes from one.
	Parent digest.Digest
	// Platform is the index entry's platform, when known.
	Platform scan.Platform
	ScanType string   // BASIC or ENHANCED
	Triggers []string // Trigger* values
	// Rescan is true when the image was scanned before (the inventory exists:
	// a rescan re-matches it and reads no blob).
	Rescan bool
}

// Result is the outcome of one scan.
type Result struct {
	// Reason is SUCCESSFUL; CORRUPT_LAYER, LIMIT_EXCEEDED or ANALYZER_PANIC
	// for a scan that read only part of the image (coverage stays ACTIVE);
	// or a permanent UNSUPPORTED_* reason (INACTIVE).
	Reason   scan.Reason
	Message  string
	Platform scan.Platform
	Findings int // active findings after the scan
}

// ScanError classifies a scan failure. Permanent errors set the coverage
// reason at once and are not retried; others are retried with backoff and,
// after the budget, leave Reason (ACCESS_DENIED, INTERNAL_ERROR) until the
// next sweep retries them.
type ScanError struct {
	Reason    scan.Reason
	Permanent bool
	Err       error
}

func (e *ScanError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return fmt.Sprintf("%s: %v", e.Reason, e.Err)
}
func (e *ScanError) Unwrap() error { return e.Err }

// FindingStore is what the lifecycle does to findings (index.Findings).
type FindingStore interface {
	// CloseAll sets every ACTIVE or SUPPRESSED finding of image to CLOSED at at.
	CloseAll(ctx context.Context, image digest.Digest, at time.Time) (int, error)
	// DeleteClosed deletes image's CLOSED findings.
	DeleteClosed(ctx context.Context, image digest.Digest) (int, error)
}

// Trigger values: why a scan job exists (index.Job.Triggers).
const (
	TriggerPush     = "push"     // image pushed
	TriggerPull     = "pull"     // first pull of an image tollgate had not covered (mirror)
	TriggerDelta    = "delta"    // advisory change concerning the image's packages
	TriggerManual   = "manual"   // RequestScan
	TriggerRestore  = "restore"  // restored from ARCHIVED
	TriggerRevival  = "revival"  // push, pull or in-use of an INACTIVE (expired) image
	TriggerBackfill = "backfill" // continuous scanning enabled for an uncovered image
	TriggerRetry    = "retry"    // sweep retrying INTERNAL_ERROR / ACCESS_DENIED
)

// Errors callers branch on.
var (
	ErrArchived       = errors.New("lifecycle: image is archived")
	ErrNoRecorder     = errors.New("lifecycle: no recorder configured")
	ErrUnknownImage   = errors.New("lifecycle: image not in repository")
	ErrInvalidReport  = errors.New("lifecycle: invalid in-use report")
	ErrInvalidRequest = errors.New("lifecycle: invalid request")
)

// Options configures New. DB, Records and Scanner are required; every other
// zero value takes the default named on the field.
type Options struct {
	DB       *index.DB
	Logger   zerolog.Logger
	Clock    Clock // default SystemClock
	Records  Records
	Recorder Recorder    // needed by Archive and Restore
	Tags     TagResolver // optional: in-use reports by tag
	Scanner  ImageScanner
	Findings FindingStore // optional: closing and deleting findings
	// Seed is the scanning configuration stored at first start (see
	// SeedFromConfig); default DefaultConfiguration().
	Seed *index.ScanningConfiguration
	// Workers bounds concurrent scans; default runtime.NumCPU().
	Workers int
	// ScanTimeout bounds one scan (and is its lease); default 30m.
	ScanTimeout time.Duration
	// RetryBase and RetryMax shape the exponential backoff (base·2^attempt,
	// capped); defaults 30s and 30m. RetryBudget is the number of attempts
	// before INTERNAL_ERROR / ACCESS_DENIED is recorded; default 5.
	RetryBase, RetryMax time.Duration
	RetryBudget         int
	// SweepInterval is the eligibility sweep period; default 1h.
	SweepInterval time.Duration
	// IdlePoll is the longest a worker sleeps before looking at the queue
	// again (jobs enqueued by this process wake workers at once); default 5s.
	IdlePoll time.Duration
	// OnSweep, when set, is called after every sweep Run performs.
	OnSweep func(SweepStats, error)
}

// Inspector's fixed windows.
const (
	// BackfillWindow: enabling continuous scanning scans images pushed this recently.
	BackfillWindow = 14 * 24 * time.Hour
	// FindingsRetention: closed findings of INACTIVE/ARCHIVED images are deleted after this.
	FindingsRetention = 3 * 24 * time.Hour
)

// Service runs the lifecycle. Its methods are safe for concurrent use.
type Service struct {
	o        Options
	log      zerolog.Logger
	clock    Clock
	queue    *index.Queue
	covs     *index.Coverages
	settings *index.Settings
	inuse    *index.InUse

	sweepMu sync.Mutex // one sweep at a time

	wakeMu sync.Mutex
	wakeCh chan struct{} // closed and replaced to wake every idle worker
	sweepC chan struct{} // buffered(1): ask Run for a sweep now
}

// New returns a Service over o. It does no I/O.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.ScanTimeout <= 0 {
		o.ScanTimeout = 30 * time.Minute
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 30 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Minute
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = 5
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Hour
	}
	if o.IdlePoll <= 0 {
		o.IdlePoll = 5 * time.Second
	}
	return &Service{
		o:        o,
		log:      o.Logger.With().Str("op", "lifecycle").Logger(),
		clock:    o.Clock,
		queue:    index.NewQueue(o.DB),
		covs:     index.NewCoverages(o.DB),
		settings: index.NewSettings(o.DB),
		inuse:    index.NewInUse(o.DB),
		wakeCh:   make(chan struct{}),
		sweepC:   make(chan struct{}, 1),
	}
}

// Queue exposes the durable queue (admin views, tests).
func (s *Service) Queue() *index.Queue { return s.queue }

func (s *Service) now() time.Time { return s.clock.Now().UTC() }

// wake rouses every idle worker.
func (s *Service) wake() {
	s.wakeMu.Lock()
	close(s.wakeCh)
	s.wakeCh = make(chan struct{})
	s.wakeMu.Unlock()
}

func (s *Service) wakeChan() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wakeCh
}

// requestSweep asks Run for a sweep soon (configuration changed).
func (s *Service) requestSweep() {
	select {
	case s.sweepC <- struct{}{}:
	default:
	}
}
