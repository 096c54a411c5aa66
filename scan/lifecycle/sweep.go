package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// SweepStats counts what one eligibility sweep did.
type SweepStats struct {
	Images          int           `json:"images"`          // image manifests looked at
	Expired         int           `json:"expired"`         // ACTIVE → INACTIVE / SCAN_ELIGIBILITY_EXPIRED
	Backfilled      int           `json:"backfilled"`      // newly covered by CONTINUOUS_SCAN, queued
	Requeued        int           `json:"requeued"`        // pending without a job, or INTERNAL_ERROR/ACCESS_DENIED retried
	Deactivated     int           `json:"deactivated"`     // archived or deleted found by the sweep
	FindingsDeleted int           `json:"findingsDeleted"` // closed findings deleted after the retention
	Took            time.Duration `json:"took"`
}

// Sweep applies the eligibility rules to every recorded image at the clock's
// now: ACTIVE CONTINUOUS_SCAN images whose push and pull (or in-use) windows
// both lapsed become INACTIVE / SCAN_ELIGIBILITY_EXPIRED with findings
// closed; images newly under CONTINUOUS_SCAN are backfilled when pushed in
// the last 14 days (else marked expired); frequency changes are reflected;
// pending images without a job and INTERNAL_ERROR / ACCESS_DENIED ones are
// queued again; closed findings past their retention are deleted; in-use
// reports older than the longest window are pruned. INACTIVE images are never
// revived here: only a push or pull (or in-use report) does that.
func (s *Service) Sweep(ctx context.Context) (SweepStats, error) {
	start := time.Now()
	var stats SweepStats
	c, err := s.Configuration(ctx)
	if err != nil {
		return stats, err
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	now := s.now()
	// The queue is read before the coverage: a job created in between shows
	// as "pending without a job" and its re-enqueue coalesces with it.
	queued := map[digest.Digest]bool{}
	if err := s.queue.Each(ctx, func(j *index.Job) error { queued[j.Image] = true; return nil }); err != nil {
		return stats, fmt.Errorf("lifecycle: sweep: %w", err)
	}
	covs, err := s.covs.All(ctx)
	if err != nil {
		return stats, fmt.Errorf("lifecycle: sweep: %w", err)
	}
	use, err := s.inuse.AllStats(ctx, now)
	if err != nil {
		return stats, fmt.Errorf("lifecycle: sweep: %w", err)
	}
	seen := make(map[digest.Digest]bool, len(covs))
	var errs []error
	visit := func(st *imageState) {
		if seen[st.Digest] {
			return
		}
		seen[st.Digest] = true
		stats.Images++
		var lastUse *time.Time
		if u, ok := use[st.Digest]; ok {
			lastUse = u.LastInUseAt
		}
		if err := s.sweepImage(ctx, c, st, covs[st.Digest], lastUse, queued[st.Digest], now, &stats); err != nil {
			errs = append(errs, err)
		}
	}
	var children []*index.ImageRecord
	err = s.o.Records.EachImage(ctx, func(rec *index.ImageRecord) error {
		if rec.Index {
			children = append(children, rec)
			return nil
		}
		visit(stateOf(c, rec, nil))
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("lifecycle: sweep: records: %w", err)
	}
	// Children of indexes never recorded themselves (mirror pulls of one platform).
	for _, rec := range children {
		for i := range rec.Children {
			if !seen[rec.Children[i].Digest] {
				if _, err := s.o.Records.Image(ctx, rec.Children[i].Digest); errors.Is(err, index.ErrNotFound) {
					visit(stateOf(c, rec, &rec.Children[i]))
				}
			}
		}
	}
	// Coverage of images no longer recorded at all: finish their clean-up.
	for d, cov := range covs {
		if seen[d] {
			continue
		}
		if err := s.sweepOrphan(ctx, cov, now, &stats); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := s.inuse.Prune(ctx, now.Add(-180*24*time.Hour-index.InUseWindow)); err != nil {
		errs = append(errs, err)
	}
	stats.Took = time.Since(start)
	s.log.Info().Int("images", stats.Images).Int("expired", stats.Expired).Int("backfilled", stats.Backfilled).
		Int("requeued", stats.Requeued).Dur("took", stats.Took).Msg("eligibility sweep")
	return stats, errors.Join(errs...)
}

func (s *Service) sweepImage(ctx context.Context, c index.ScanningConfiguration, st *imageState, cov *index.Coverage, lastUse *time.Time, hasJob bool, now time.Time, stats *SweepStats) error {
	if cov != nil && cov.FindingsDeleteAt != nil && !now.Before(*cov.FindingsDeleteAt) {
		if err := s.deleteClosed(ctx, st.Digest, stats); err != nil {
			return err
		}
		cov.FindingsDeleteAt = nil
	}
	switch {
	case len(st.Live) == 0:
		if cov != nil && cov.Reason != scan.ReasonResourceTerminated {
			stats.Deactivated++
			return s.deactivate(ctx, st, scan.ReasonResourceTerminated)
		}
		return nil
	case st.Archived:
		if cov == nil || cov.Reason != scan.ReasonImageArchived {
			stats.Deactivated++
			return s.deactivate(ctx, st, scan.ReasonImageArchived)
		}
		return nil
	case cov != nil && cov.Reason == scan.ReasonImageArchived:
		// Restored, but Observe(restore) did not run (crash between the record
		// and the observation): schedule it now. A child follows its index,
		// whose restore event carries it.
		if len(st.Parents) == 0 && !hasJob {
			stats.Requeued++
			return s.onRestore(ctx, st)
		}
		return nil
	}
	switch st.Freq {
	case FreqManual:
		if cov != nil && cov.ScanFrequency == FreqManual && retryable(cov.Reason) && !hasJob {
			stats.Requeued++ // a requested scan that ran out of retries
			return s.schedule(ctx, st, "", TriggerManual)
		}
		if cov == nil || (cov.ScanFrequency != FreqManual && !pending(cov.Reason)) || (pending(cov.Reason) && !hasJob) {
			return s.setStatus(ctx, st, index.StatusInactive, scan.ReasonScanFrequencyManual, "")
		}
	case FreqScanOnPush:
		switch {
		case cov == nil:
			// Recorded before SCAN_ON_PUSH applied to it: scanned at its next push.
			return s.setStatus(ctx, st, index.StatusInactive, scan.ReasonScanFrequencyScanOnPush, "")
		case cov.ScanFrequency == FreqContinuous && cov.Reason == scan.ReasonSuccessful:
			return s.setStatus(ctx, st, index.StatusActive, scan.ReasonScanFrequencyScanOnPush, "")
		case cov.ScanFrequency == FreqContinuous && partial(cov.Reason):
			return s.setStatus(ctx, st, index.StatusActive, cov.Reason, cov.Message) // the frequency changes
		case (pending(cov.Reason) || retryable(cov.Reason)) && !hasJob:
			stats.Requeued++
			return s.schedule(ctx, st, "", TriggerRetry)
		}
	case FreqContinuous:
		ok := eligible(c, st, lastUse, now)
		switch {
		case cov == nil || cov.ScanFrequency != FreqContinuous:
			// Activation: continuous scanning now covers this image.
			if !st.PushedAt.IsZero() && now.Sub(st.PushedAt) < BackfillWindow {
				stats.Backfilled++
				reason := scan.ReasonPendingInitialScan
				if cov != nil && cov.LastScannedAt != nil {
					reason = ""
				}
				return s.schedule(ctx, st, reason, TriggerBackfill)
			}
			if cov != nil && pending(cov.Reason) && hasJob {
				return nil // a push or manual request already queued it
			}
			stats.Expired++
			return s.expire(ctx, st, cov)
		case pending(cov.Reason):
			if !hasJob {
				stats.Requeued++
				return s.schedule(ctx, st, "", TriggerRetry)
			}
		case cov.StatusCode == index.StatusActive && !ok:
			stats.Expired++
			return s.expire(ctx, st, cov)
		case retryable(cov.Reason) && !ok:
			stats.Expired++
			return s.expire(ctx, st, cov)
		case cov.Reason == scan.ReasonUnsupportedOS && cov.LastScannedAt != nil && !ok:
			// Its language findings lapse with the windows like any others.
			stats.Expired++
			return s.expire(ctx, st, cov)
		case retryable(cov.Reason) && !hasJob:
			stats.Requeued++
			return s.schedule(ctx, st, "", TriggerRetry)
		}
	}
	return nil
}

// expire makes a CONTINUOUS_SCAN image INACTIVE / SCAN_ELIGIBILITY_EXPIRED.
func (s *Service) expire(ctx context.Context, st *imageState, cov *index.Coverage) error {
	s.log.Info().Str("repo", st.Repo).Str("digest", st.Digest.String()).Msg("scan eligibility expired")
	return s.deactivate(ctx, st, scan.ReasonScanEligibilityExpired)
}

func (s *Service) deleteClosed(ctx context.Context, d digest.Digest, stats *SweepStats) error {
	if s.o.Findings != nil {
		n, err := s.o.Findings.DeleteClosed(ctx, d)
		if err != nil {
			return fmt.Errorf("lifecycle: delete closed findings of %s: %w", d, err)
		}
		stats.FindingsDeleted += n
	}
	_, err := s.covs.Update(ctx, d, func(cov *index.Coverage, exists bool) (bool, error) {
		if !exists {
			return false, nil
		}
		cov.FindingsDeleteAt = nil
		return true, nil
	})
	return err
}

// sweepOrphan finishes the clean-up of coverage whose image has no record.
func (s *Service) sweepOrphan(ctx context.Context, cov *index.Coverage, now time.Time, stats *SweepStats) error {
	if cov.FindingsDeleteAt != nil && now.Before(*cov.FindingsDeleteAt) {
		return nil
	}
	if err := s.deleteClosed(ctx, cov.Image, stats); err != nil {
		return err
	}
	return s.covs.Delete(ctx, cov.Image)
}
