package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// Adapters from the real stores to the lifecycle's small interfaces.
// *index.Records is Records and Recorder as it is; see docs/lifecycle.md for
// the wiring in `tollgate serve`.

// ResolveFunc adapts a function (index.Records.Tag) to TagResolver.
type ResolveFunc func(ctx context.Context, repo, tag string) (digest.Digest, error)

// Resolve calls f.
func (f ResolveFunc) Resolve(ctx context.Context, repo, tag string) (digest.Digest, error) {
	return f(ctx, repo, tag)
}

// Findings adapts *index.FindingStore to FindingStore.
type Findings struct{ Store *index.FindingStore }

// CloseAll closes image's open findings at at.
func (f Findings) CloseAll(ctx context.Context, image digest.Digest, at time.Time) (int, error) {
	return f.Store.CloseAll(ctx, image, at)
}

// DeleteClosed deletes image's CLOSED findings.
func (f Findings) DeleteClosed(ctx context.Context, image digest.Digest) (int, error) {
	return f.Store.DeleteClosedOf(ctx, image)
}

// Observer adapts the Service to the proxy's Observer (Observe without an
// error result): failures are logged, never returned to the data path. The
// push or pull is already recorded, so the sweep repairs a missed job.
type Observer struct {
	Service *Service
	Logger  zerolog.Logger
}

// Observe hands ev to the Service.
func (o Observer) Observe(ctx context.Context, ev index.Event) {
	if err := o.Service.Observe(ctx, ev); err != nil {
		o.Logger.Error().Err(err).Str("op", "lifecycle").Str("repo", ev.Repository).Str("digest", ev.Digest.String()).
			Str("event", string(ev.Kind)).Msg("lifecycle could not apply an event; the next sweep repairs it")
	}
}

// Rematcher is what PipelineScanner needs of index.Rematcher.
type Rematcher interface {
	Image(ctx context.Context, inv *scan.Inventory) (index.ReplaceResult, error)
}

// InventoryStore is what PipelineScanner needs of index.Inventories.
type InventoryStore interface {
	GetImage(ctx context.Context, d digest.Digest) (*scan.Inventory, error)
	PutImage(ctx context.Context, inv *scan.Inventory) error
}

// PipelineScanner is the ImageScanner over tollgate's pipeline: an image
// whose inventory is stored (by the current analyzer set) is only
// re-matched — no blob is read (DESIGN.md rule 2); otherwise its manifest is
// fetched from the registry, assembled (layers from the cache the tee
// filled, or fetched and walked), stored, then matched. Findings are
// replaced under stable IDs, so a repeated scan never duplicates.
type PipelineScanner struct {
	Assembler   *scan.Assembler
	Fetcher     scan.BlobFetcher // must also be a scan.ManifestFetcher
	Inventories InventoryStore
	Rematcher   Rematcher
	// AccessDenied reports fetch errors that mean the registry refused
	// (401/403): ACCESS_DENIED, retried. Nil: every fetch error is INTERNAL_ERROR.
	AccessDenied func(error) bool
}

// Scan implements ImageScanner.
func (p PipelineScanner) Scan(ctx context.Context, req ScanRequest) (Result, error) {
	inv, err := p.Inventories.GetImage(ctx, req.Image)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return Result{}, fmt.Errorf("lifecycle: inventory %s: %w", req.Image, err)
	}
	if inv == nil || inv.AnalyzersVersion != p.Assembler.AnalyzersVersion() {
		inv, err = p.assemble(ctx, req)
		if err != nil {
			return Result{}, err
		}
	}
	if inv.OS == nil && len(inv.Packages) == 0 && len(inv.Errors) == 0 {
		return Result{Reason: scan.ReasonUnsupportedOS, Platform: inv.Platform,
			Message: "no operating system release and no packages found"}, nil
	}
	rr, err := p.Rematcher.Image(ctx, inv)
	if err != nil {
		return Result{}, fmt.Errorf("lifecycle: match %s: %w", req.Image, err)
	}
	res := Result{Reason: scan.ReasonSuccessful, Platform: inv.Platform, Findings: len(rr.Created) + len(rr.Updated) + rr.Observed}
	res.Reason, res.Message = Outcome(inv)
	return res, nil
}

// Outcome is the coverage reason and message a scanned inventory gives
// (language packages are matched in every case):
//   - an OS with no advisory source (match.SupportedOS): UNSUPPORTED_OS;
//   - otherwise a layer that could not be read whole: the most severe of
//     its errors' reasons (CORRUPT_LAYER, LIMIT_EXCEEDED, ANALYZER_PANIC),
//     the message naming each layer and what failed;
//   - otherwise SUCCESSFUL; other layer errors (an analyzer that could not
//     parse one file, say) are only listed in the message.
func Outcome(inv *scan.Inventory) (scan.Reason, string) {
	reason := scan.ReasonSuccessful
	for _, r := range []scan.Reason{scan.ReasonCorruptLayer, scan.ReasonLimitExceeded, scan.ReasonAnalyzerPanic} {
		if reason == scan.ReasonSuccessful && slices.ContainsFunc(inv.Errors, func(e scan.LayerError) bool { return e.Reason == r }) {
			reason = r
		}
	}
	msg := LayerErrors(inv.Errors)
	if inv.OS != nil && !match.SupportedOS(inv.OS) {
		m := "no advisory source for " + osName(inv.OS) + "; only language packages are matched"
		if msg != "" {
			m += "; " + msg
		}
		return scan.ReasonUnsupportedOS, m
	}
	return reason, msg
}

// LayerErrors summarises layer errors for a coverage message: each names its
// layer, reason, analyzer and path; at most 3, then how many more.
func LayerErrors(errs []scan.LayerError) string {
	const show = 3
	var parts []string
	for i, e := range errs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more layer errors", len(errs)-show))
			break
		}
		s := "layer " + e.Layer.String()
		if e.Layer == "" {
			s = "layer"
		}
		s += ": " + string(e.Reason)
		if e.Analyzer != "" {
			s += " (analyzer " + e.Analyzer + ")"
		}
		if e.Path != "" && e.Path != e.Layer.String() {
			s += " at /" + strings.TrimPrefix(e.Path, "/")
		}
		parts = append(parts, s+": "+e.Message)
	}
	return strings.Join(parts, "; ")
}

func osName(os *scan.OSRelease) string {
	if os.PrettyName != "" {
		return os.PrettyName + " (ID=" + os.ID + ")"
	}
	return strings.TrimSpace("ID=" + os.ID + " " + os.VersionID)
}

func (p PipelineScanner) assemble(ctx context.Context, req ScanRequest) (*scan.Inventory, error) {
	mf, ok := p.Fetcher.(scan.ManifestFetcher)
	if !ok {
		return nil, &ScanError{Reason: scan.ReasonInternalError, Err: errors.New("fetcher cannot read manifests")}
	}
	body, mt, err := mf.FetchManifest(ctx, req.Repository, req.Image)
	if err != nil {
		return nil, p.fetchErr(err)
	}
	invs, err := p.Assembler.Assemble(ctx, req.Repository, p.Fetcher, body, mt)
	if err != nil {
		var re *scan.ReasonError
		if errors.As(err, &re) {
			return nil, &ScanError{Reason: re.Reason, Permanent: true, Err: err}
		}
		return nil, p.fetchErr(err)
	}
	var inv *scan.Inventory
	for _, i := range invs {
		if i.Image == req.Image {
			inv = i
		}
	}
	if inv == nil {
		if len(invs) != 1 {
			return nil, &ScanError{Reason: scan.ReasonUnsupportedMediaType, Permanent: true,
				Err: fmt.Errorf("%s assembled into %d inventories", req.Image, len(invs))}
		}
		inv = invs[0]
	}
	if inv.Platform == (scan.Platform{}) {
		inv.Platform = req.Platform
	}
	if err := p.Inventories.PutImage(ctx, inv); err != nil {
		return nil, fmt.Errorf("lifecycle: store inventory %s: %w", req.Image, err)
	}
	return inv, nil
}

func (p PipelineScanner) fetchErr(err error) error {
	if p.AccessDenied != nil && p.AccessDenied(err) {
		return &ScanError{Reason: scan.ReasonAccessDenied, Err: err}
	}
	return &ScanError{Reason: scan.ReasonInternalError, Err: err}
}

// PackageImages finds the images holding a package (index.PkgIndex).
type PackageImages interface {
	ImagesFor(ctx context.Context, ecosystem, name string) ([]digest.Digest, error)
}

// OnAdvisoryDeltas queues rescans for the images the advisory deltas of an
// import concern (index.UpdateResult.Delta; found through the package index),
// under the eligibility rules of OnAdvisoryDelta, and returns how many were
// queued. Run the index.Updater without its own Rematcher and call this with
// its results' deltas.
func (s *Service) OnAdvisoryDeltas(ctx context.Context, pkgs PackageImages, deltas ...index.AdvisoryDelta) (int, error) {
	seen := map[digest.Digest]bool{}
	var images []digest.Digest
	for _, d := range deltas {
		for _, k := range d.Packages {
			ds, err := pkgs.ImagesFor(ctx, k.Ecosystem, k.Name)
			if err != nil {
				return 0, fmt.Errorf("lifecycle: images for %s: %w", k, err)
			}
			for _, img := range ds {
				if !seen[img] {
					seen[img] = true
					images = append(images, img)
				}
			}
		}
	}
	return s.OnAdvisoryDelta(ctx, images)
}
