package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// Observe applies the lifecycle rules to one event the proxy has recorded
// (the image record already reflects it):
//
//   - push: SCAN_ON_PUSH and CONTINUOUS_SCAN images get a scan job
//     (PENDING_INITIAL_SCAN, or PENDING_REVIVAL_SCAN for an INACTIVE one);
//     MANUAL ones get coverage INACTIVE / SCAN_FREQUENCY_MANUAL.
//   - pull: an image without coverage (first pull through the mirror) is
//     scanned like a push; an expired CONTINUOUS_SCAN image is revived.
//     A seen event (a mirror's pull the policy refused) is handled as a
//     pull, so the refused image gets coverage and its scan is recorded.
//   - delete: an image left in no repository becomes INACTIVE /
//     RESOURCE_TERMINATED; its findings are closed and deleted 3 days later.
//   - archive: an image archived everywhere it lives becomes INACTIVE /
//     IMAGE_ARCHIVED, its queued job is dropped, findings closed and deleted 3 days later.
//   - restore: an IMAGE_ARCHIVED image is scanned again (PENDING_REVIVAL_SCAN).
//
// An image index applies the event to each child manifest. Unknown digests
// are ignored.
func (s *Service) Observe(ctx context.Context, ev index.Event) error {
	c, err := s.Configuration(ctx)
	if err != nil {
		return err
	}
	rec, err := s.o.Records.Image(ctx, ev.Digest)
	if errors.Is(err, index.ErrNotFound) {
		s.log.Debug().Str("repo", ev.Repository).Str("digest", ev.Digest.String()).Str("event", string(ev.Kind)).Msg("event for unknown image ignored")
		return nil
	}
	if err != nil {
		return fmt.Errorf("lifecycle: observe %s %s: %w", ev.Kind, ev.Digest, err)
	}
	storage := ev.Kind == index.EventArchive || ev.Kind == index.EventRestore
	var errs []error
	for _, st := range s.targets(ctx, c, rec, storage) {
		var err error
		switch ev.Kind {
		case index.EventPush:
			err = s.onActivity(ctx, st, TriggerPush)
		case index.EventPull, index.EventSeen:
			err = s.onActivity(ctx, st, TriggerPull)
		case index.EventDelete:
			if len(st.Live) == 0 {
				err = s.deactivate(ctx, st, scan.ReasonResourceTerminated)
			}
		case index.EventArchive:
			if st.Archived {
				err = s.deactivate(ctx, st, scan.ReasonImageArchived)
			}
		case index.EventRestore:
			err = s.onRestore(ctx, st)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// targets returns the images an event on rec concerns: rec itself, or for an
// index its children. A child with its own record is seen through it (with
// the index's platform) unless storage is set: archive and restore of an
// index carry its children with it.
func (s *Service) targets(ctx context.Context, c index.ScanningConfiguration, rec *index.ImageRecord, storage bool) []*imageState {
	if !rec.Index {
		return []*imageState{stateOf(c, rec, nil)}
	}
	out := make([]*imageState, 0, len(rec.Children))
	for i := range rec.Children {
		ch := rec.Children[i]
		if !storage {
			if own, err := s.o.Records.Image(ctx, ch.Digest); err == nil && !own.Index {
				st := stateOf(c, own, nil)
				st.Parent, st.Platform = rec.Digest, ch.Platform
				out = append(out, st)
				continue
			}
		}
		out = append(out, stateOf(c, rec, &ch))
	}
	return out
}

// stateFor rebuilds the state of image d (a job's image), through its own
// record or, for a child never recorded itself, its parent's.
func (s *Service) stateFor(ctx context.Context, c index.ScanningConfiguration, d, parent digest.Digest) (*imageState, error) {
	var prec *index.ImageRecord
	var child *index.ChildImage
	if parent != "" {
		if r, err := s.o.Records.Image(ctx, parent); err == nil {
			prec = r
			for i := range r.Children {
				if r.Children[i].Digest == d {
					child = &r.Children[i]
				}
			}
		}
	}
	rec, err := s.o.Records.Image(ctx, d)
	switch {
	case err == nil:
		st := stateOf(c, rec, nil)
		if child != nil {
			st.Parent, st.Platform = parent, child.Platform
		}
		return st, nil
	case !errors.Is(err, index.ErrNotFound):
		return nil, fmt.Errorf("lifecycle: record %s: %w", d, err)
	case child != nil:
		return stateOf(c, prec, child), nil
	}
	return nil, fmt.Errorf("lifecycle: image %s: %w", d, index.ErrNotFound)
}

// coverage returns the coverage of d, nil when none.
func (s *Service) coverage(ctx context.Context, d digest.Digest) (*index.Coverage, error) {
	cov, err := s.covs.Get(ctx, d)
	if errors.Is(err, index.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lifecycle: coverage %s: %w", d, err)
	}
	return cov, nil
}

// setStatus writes st's coverage status (and frequency) at now.
func (s *Service) setStatus(ctx context.Context, st *imageState, code string, reason scan.Reason, msg string) error {
	now := s.now()
	_, err := s.covs.Update(ctx, st.Digest, func(cov *index.Coverage, _ bool) (bool, error) {
		cov.ScanType, cov.ScanFrequency = ScanTypePackage, st.Freq
		cov.StatusCode, cov.Reason, cov.Message = code, reason, msg
		if cov.Platform == (scan.Platform{}) {
			cov.Platform = st.Platform
		}
		cov.UpdatedAt = now
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("lifecycle: coverage %s: %w", st.Digest, err)
	}
	return nil
}

// schedule marks st pending with reason and enqueues a job with triggers.
func (s *Service) schedule(ctx context.Context, st *imageState, reason scan.Reason, triggers ...string) error {
	if reason == "" {
		// Keep the status while the job waits, unless an archive, delete or
		// expiry made it INACTIVE: the worker would then drop the job.
		cov, err := s.coverage(ctx, st.Digest)
		if err != nil {
			return err
		}
		if cov != nil && deactivated(cov) {
			reason = scan.ReasonPendingRevivalScan
		}
	}
	if reason != "" {
		if err := s.setStatus(ctx, st, index.StatusActive, reason, ""); err != nil {
			return err
		}
	}
	_, err := s.queue.Enqueue(ctx, index.Job{
		ID: st.Digest.String(), Image: st.Digest, Repository: st.Repo, Parent: st.Parent,
		Triggers: triggers, Due: s.now(),
	})
	if err != nil {
		return fmt.Errorf("lifecycle: enqueue %s: %w", st.Digest, err)
	}
	s.log.Debug().Str("repo", st.Repo).Str("digest", st.Digest.String()).Strs("triggers", triggers).Msg("scan queued")
	s.wake()
	return nil
}

// onActivity handles a push or a pull (and, in LAST_IN_USE_AT mode, an
// in-use report, as a pull that never starts an initial scan).
func (s *Service) onActivity(ctx context.Context, st *imageState, trigger string) error {
	if len(st.Live) == 0 || st.Archived {
		return nil
	}
	cov, err := s.coverage(ctx, st.Digest)
	if err != nil {
		return err
	}
	if st.Freq == FreqManual {
		if cov == nil {
			return s.setStatus(ctx, st, index.StatusInactive, scan.ReasonScanFrequencyManual, "")
		}
		return nil
	}
	expired := cov != nil && cov.StatusCode == index.StatusInactive && cov.Reason == scan.ReasonScanEligibilityExpired
	switch {
	case expired && st.Freq == FreqContinuous:
		return s.schedule(ctx, st, scan.ReasonPendingRevivalScan, TriggerRevival)
	case trigger == TriggerPush:
		reason := scan.ReasonPendingInitialScan
		if cov != nil && cov.LastScannedAt != nil {
			reason = "" // a re-push of a scanned image: rescan, keep the status until it runs
			if cov.StatusCode == index.StatusInactive {
				reason = scan.ReasonPendingRevivalScan
			}
		}
		return s.schedule(ctx, st, reason, TriggerPush)
	case trigger == TriggerPull && cov == nil:
		return s.schedule(ctx, st, scan.ReasonPendingInitialScan, TriggerPull)
	}
	return nil
}

// deactivate makes st INACTIVE with reason, drops its queued job, and
// closes its findings, to be deleted FindingsRetention later.
func (s *Service) deactivate(ctx context.Context, st *imageState, reason scan.Reason) error {
	now := s.now()
	if err := s.queue.Remove(ctx, st.Digest.String()); err != nil {
		return fmt.Errorf("lifecycle: drop job %s: %w", st.Digest, err)
	}
	cov, err := s.coverage(ctx, st.Digest)
	if err != nil {
		return err
	}
	if cov != nil && cov.StatusCode == index.StatusInactive && cov.Reason == reason {
		return nil
	}
	if s.o.Findings != nil {
		n, err := s.o.Findings.CloseAll(ctx, st.Digest, now)
		if err != nil {
			return fmt.Errorf("lifecycle: close findings of %s: %w", st.Digest, err)
		}
		s.log.Info().Str("digest", st.Digest.String()).Str("reason", string(reason)).Int("closed", n).Msg("image inactive, findings closed")
	}
	del := now.Add(FindingsRetention)
	_, err = s.covs.Update(ctx, st.Digest, func(cov *index.Coverage, _ bool) (bool, error) {
		cov.ScanType, cov.ScanFrequency = ScanTypePackage, st.Freq
		cov.StatusCode, cov.Reason, cov.Message = index.StatusInactive, reason, ""
		if cov.Platform == (scan.Platform{}) {
			cov.Platform = st.Platform
		}
		cov.FindingsDeleteAt = &del
		cov.UpdatedAt = now
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("lifecycle: coverage %s: %w", st.Digest, err)
	}
	return nil
}

func (s *Service) onRestore(ctx context.Context, st *imageState) error {
	if len(st.Live) == 0 || st.Archived {
		return nil
	}
	cov, err := s.coverage(ctx, st.Digest)
	if err != nil || cov == nil || cov.Reason != scan.ReasonImageArchived {
		return err
	}
	if st.Freq == FreqManual {
		return s.setStatus(ctx, st, index.StatusInactive, scan.ReasonScanFrequencyManual, "")
	}
	return s.schedule(ctx, st, scan.ReasonPendingRevivalScan, TriggerRestore)
}

// OnAdvisoryDelta queues a rescan of every image among images that is
// monitored (CONTINUOUS_SCAN, coverage ACTIVE) and returns how many were
// queued. images are the manifests whose packages the changed advisories
// name (the package→image index).
func (s *Service) OnAdvisoryDelta(ctx context.Context, images []digest.Digest) (int, error) {
	n := 0
	for _, d := range images {
		cov, err := s.coverage(ctx, d)
		if err != nil {
			return n, err
		}
		if cov == nil || cov.ScanFrequency != FreqContinuous || cov.StatusCode != index.StatusActive {
			continue
		}
		if _, err := s.queue.Enqueue(ctx, index.Job{ID: d.String(), Image: d, Triggers: []string{TriggerDelta}, Due: s.now()}); err != nil {
			return n, fmt.Errorf("lifecycle: enqueue %s: %w", d, err)
		}
		n++
	}
	if n > 0 {
		s.wake()
		s.log.Info().Int("images", n).Msg("advisory delta rescans queued")
	}
	return n, nil
}

// liveRepo checks that repo holds d (not deleted) and returns the record.
func (s *Service) liveRepo(ctx context.Context, repo string, d digest.Digest) (*index.ImageRecord, *index.RepoImage, error) {
	rec, err := s.o.Records.Image(ctx, d)
	if errors.Is(err, index.ErrNotFound) {
		return nil, nil, fmt.Errorf("%s@%s: %w", repo, d, ErrUnknownImage)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lifecycle: record %s: %w", d, err)
	}
	ri := rec.Repo(repo)
	if ri == nil || ri.Deleted {
		return nil, nil, fmt.Errorf("%s@%s: %w", repo, d, ErrUnknownImage)
	}
	return rec, ri, nil
}

// RequestScan queues a scan of repo@d whatever the repository's frequency
// (an index: each child). ErrUnknownImage when repo does not hold d,
// ErrArchived when it holds it archived.
func (s *Service) RequestScan(ctx context.Context, repo string, d digest.Digest) error {
	rec, ri, err := s.liveRepo(ctx, repo, d)
	if err != nil {
		return err
	}
	if ri.Status == index.ImageArchived {
		return fmt.Errorf("%s@%s: %w", repo, d, ErrArchived)
	}
	c, err := s.Configuration(ctx)
	if err != nil {
		return err
	}
	for _, st := range s.targets(ctx, c, rec, false) {
		cov, err := s.coverage(ctx, st.Digest)
		if err != nil {
			return err
		}
		reason := scan.ReasonPendingInitialScan
		if cov != nil && cov.LastScannedAt != nil {
			reason = ""
		}
		if err := s.schedule(ctx, st, reason, TriggerManual); err != nil {
			return err
		}
	}
	return nil
}

// Archive moves repo@d to the archive storage class (ECR's ARCHIVED image
// status): recorded through the Recorder (the proxy then refuses pulls), then
// observed (unscanned, findings closed and deleted 3 days later).
func (s *Service) Archive(ctx context.Context, repo string, d digest.Digest) error {
	return s.storageClass(ctx, repo, d, index.EventArchive)
}

// Restore moves repo@d back to the standard storage class and scans it.
func (s *Service) Restore(ctx context.Context, repo string, d digest.Digest) error {
	return s.storageClass(ctx, repo, d, index.EventRestore)
}

func (s *Service) storageClass(ctx context.Context, repo string, d digest.Digest, kind index.EventKind) error {
	if s.o.Recorder == nil {
		return ErrNoRecorder
	}
	if _, _, err := s.liveRepo(ctx, repo, d); err != nil {
		return err
	}
	ev := index.Event{Kind: kind, Repository: repo, Digest: d, At: s.now()}
	if err := s.o.Recorder.Record(ctx, ev); err != nil {
		return fmt.Errorf("lifecycle: record %s of %s@%s: %w", kind, repo, d, err)
	}
	return s.Observe(ctx, ev)
}
