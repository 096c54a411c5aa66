package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// Run works the queue with Options.Workers workers and sweeps eligibility
// every SweepInterval and after each configuration change, until ctx ends.
// It first frees the leases a killed process left (index.Queue.Recover) and
// sweeps once. It returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if _, err := s.Configuration(ctx); err != nil {
		return err
	}
	if _, err := s.Recover(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range s.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.workLoop(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.sweepLoop(ctx)
	}()
	wg.Wait()
	return nil
}

// Recover makes the jobs a killed process left leased due now and returns
// how many. Run calls it first; call it yourself only before Drain in a
// process where Run is not running (the Badger directory lock makes leases
// found then a dead process's).
func (s *Service) Recover(ctx context.Context) (int, error) {
	n, err := s.queue.Recover(ctx, s.now())
	if err != nil {
		return n, fmt.Errorf("lifecycle: recover queue: %w", err)
	}
	if n > 0 {
		s.log.Info().Int("jobs", n).Msg("recovered jobs leased by a previous process")
	}
	return n, nil
}

func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	sweep := func() {
		st, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Msg("eligibility sweep failed")
		}
		if s.o.OnSweep != nil && ctx.Err() == nil {
			s.o.OnSweep(st, err)
		}
	}
	sweep()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		case <-s.sweepC:
			sweep()
		}
	}
}

func (s *Service) workLoop(ctx context.Context) {
	for ctx.Err() == nil {
		wakeC := s.wakeChan()
		worked, next, err := s.step(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Msg("queue step failed")
		}
		if worked {
			continue
		}
		wait := s.o.IdlePoll
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.now()), time.Millisecond))
		}
		if err != nil {
			wait = s.o.IdlePoll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-wakeC:
		case <-t.C:
		}
		t.Stop()
	}
}

// Drain works every job due now with up to Options.Workers concurrent scans
// and returns once none is due (jobs retried later stay queued). It is Run's
// work without the loop: for `tollgate scan`, tests and tools.
func (s *Service) Drain(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range s.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				worked, _, err := s.step(ctx)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if !worked {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// step leases one due job and works it. worked is false when nothing was due;
// next is then the next due time (zero: empty queue).
func (s *Service) step(ctx context.Context) (worked bool, next time.Time, err error) {
	job, next, err := s.queue.Lease(ctx, s.now(), s.o.ScanTimeout+time.Minute)
	if err != nil || job == nil {
		return false, next, err
	}
	return true, next, s.work(ctx, job)
}

// work runs one leased job to an Ack or a Retry. When ctx ends mid-scan the
// job keeps its lease: Recover frees it at the next start.
func (s *Service) work(ctx context.Context, job *index.Job) error {
	log := s.log.With().Str("digest", job.Image.String()).Str("repo", job.Repository).Strs("triggers", job.Triggers).Logger()
	c, err := s.Configuration(ctx)
	if err != nil {
		return err
	}
	st, err := s.stateFor(ctx, c, job.Image, job.Parent)
	if errors.Is(err, index.ErrNotFound) {
		log.Debug().Msg("job for unknown image dropped")
		return s.queue.Ack(ctx, job, s.now())
	}
	if err != nil {
		return err
	}
	cov, err := s.coverage(ctx, st.Digest)
	if err != nil {
		return err
	}
	if len(st.Live) == 0 || st.Archived || st.Index || !allowed(job.Triggers, st.Freq, cov) {
		log.Debug().Str("frequency", st.Freq).Bool("archived", st.Archived).Msg("job no longer warranted, dropped")
		if cov != nil && pending(cov.Reason) && st.Freq == FreqManual {
			if err := s.setStatus(ctx, st, index.StatusInactive, scan.ReasonScanFrequencyManual, ""); err != nil {
				return err
			}
		}
		return s.queue.Ack(ctx, job, s.now())
	}
	prev := index.Coverage{}
	if cov != nil {
		prev = *cov
	}
	if ok, err := s.setLive(ctx, st, index.StatusActive, scan.ReasonScanInProgress, ""); err != nil || !ok {
		if err != nil {
			return err
		}
		return s.queue.Ack(ctx, job, s.now())
	}
	res, scanErr := s.scanBounded(ctx, ScanRequest{
		Repository: st.Repo, Image: st.Digest, Parent: st.Parent, Platform: st.Platform,
		ScanType: c.ScanType, Triggers: job.Triggers, Rescan: prev.LastScannedAt != nil,
	})
	if ctx.Err() != nil {
		return nil // shutting down: the lease stays, Recover frees it at the next start
	}
	now := s.now()
	if scanErr == nil && (res.Reason == "" || res.Reason == scan.ReasonSuccessful || partial(res.Reason)) {
		// Scanned (partly, when a layer could not be read whole: the
		// image stays monitored under that reason, with its message).
		reason := scannedReason(st.Freq)
		if partial(res.Reason) {
			reason = res.Reason
		}
		live := true
		_, err := s.covs.Update(ctx, st.Digest, func(cv *index.Coverage, _ bool) (bool, error) {
			if live = !deactivated(cv); !live {
				return false, nil
			}
			cv.ScanType, cv.ScanFrequency = ScanTypePackage, st.Freq
			cv.StatusCode, cv.Reason, cv.Message = index.StatusActive, reason, res.Message
			if res.Platform != (scan.Platform{}) {
				cv.Platform = res.Platform
			} else if cv.Platform == (scan.Platform{}) {
				cv.Platform = st.Platform
			}
			t := now
			cv.LastScannedAt, cv.FindingsDeleteAt, cv.UpdatedAt = &t, nil, now
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("lifecycle: coverage %s: %w", st.Digest, err)
		}
		if !live {
			return s.lostRace(ctx, job, st, now)
		}
		if reason != scannedReason(st.Freq) {
			log.Warn().Str("reason", string(reason)).Str("message", res.Message).Int("findings", res.Findings).Msg("scan complete, but a layer could not be read whole")
		} else {
			log.Info().Int("findings", res.Findings).Msg("scan complete")
		}
		return s.queue.Ack(ctx, job, now)
	}
	reason, msg, permanent := res.Reason, res.Message, true
	if scanErr != nil {
		var se *ScanError
		reason, msg, permanent = scan.ReasonInternalError, scanErr.Error(), false
		if errors.As(scanErr, &se) {
			if se.Reason != "" {
				reason = se.Reason
			}
			permanent = se.Permanent
		}
	}
	if permanent {
		log.Warn().Str("reason", string(reason)).Str("message", msg).Msg("image cannot be scanned")
		if _, err := s.setLive(ctx, st, index.StatusInactive, reason, msg); err != nil {
			return err
		}
		if scanErr == nil && res.Findings > 0 {
			// Matched anyway (an UNSUPPORTED_OS image's language packages):
			// its findings are readable as those of a scan.
			if err := s.markScanned(ctx, st, now); err != nil {
				return err
			}
		}
		return s.queue.Ack(ctx, job, now)
	}
	if job.Attempts+1 < s.o.RetryBudget {
		due := now.Add(backoff(s.o.RetryBase, s.o.RetryMax, job.Attempts))
		log.Warn().Err(scanErr).Int("attempt", job.Attempts+1).Time("retryAt", due).Msg("scan failed, will retry")
		// Transient: the status goes back to what it was, never to an error.
		back := prev.Reason
		code := prev.StatusCode
		if back == "" || back == scan.ReasonScanInProgress {
			back, code = scan.ReasonPendingInitialScan, index.StatusActive
			if prev.LastScannedAt != nil {
				back = scannedReason(st.Freq)
			}
		}
		if ok, err := s.setLive(ctx, st, code, back, "retrying: "+msg); err != nil || !ok {
			if err != nil {
				return err
			}
			return s.queue.Ack(ctx, job, now)
		}
		return s.queue.Retry(ctx, job, due, msg)
	}
	log.Error().Err(scanErr).Int("attempts", job.Attempts+1).Msg("scan failed, retry budget spent; the sweep retries later")
	if _, err := s.setLive(ctx, st, index.StatusInactive, reason, msg); err != nil {
		return err
	}
	return s.queue.Ack(ctx, job, now)
}

// scanAbandonGrace is how long a scan gets to return after its context
// ended (ScanTimeout, shutdown) before the worker abandons it.
const scanAbandonGrace = time.Second

// scanBounded runs one scan under ScanTimeout. A scan that has not
// returned scanAbandonGrace after its context ended (an analyzer that
// ignores ctx, stuck on a layer read from the registry) is abandoned: its
// goroutine runs on, but the worker is freed and the scan fails with a
// transient INTERNAL_ERROR (retried with backoff, then left as the
// image's reason), so a stuck analyzer cannot hold a scan worker forever.
func (s *Service) scanBounded(ctx context.Context, req ScanRequest) (Result, error) {
	sctx, cancel := context.WithTimeout(ctx, s.o.ScanTimeout)
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		res, err := s.o.Scanner.Scan(sctx, req)
		ch <- outcome{res, err}
	}()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-sctx.Done():
	}
	grace := time.NewTimer(scanAbandonGrace)
	defer grace.Stop()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-grace.C:
	}
	s.o.Logger.Warn().Str("op", "scan").Str("repo", req.Repository).Str("digest", req.Image.String()).
		Dur("timeout", s.o.ScanTimeout).Msg("scan ignores its cancellation: abandoned, worker freed")
	return Result{}, &ScanError{Reason: scan.ReasonInternalError,
		Err: fmt.Errorf("lifecycle: scan of %s abandoned: no return %s after its context ended: %w", req.Image, scanAbandonGrace, sctx.Err())}
}

// deactivated reports coverage an archive, delete or expiry made INACTIVE
// while a job was running: the job's outcome must not overwrite it.
func deactivated(cv *index.Coverage) bool {
	if cv.StatusCode != index.StatusInactive {
		return false
	}
	switch cv.Reason {
	case scan.ReasonImageArchived, scan.ReasonResourceTerminated, scan.ReasonScanEligibilityExpired:
		return true
	}
	return false
}

// partial reports the reasons of a scan that read only part of an image
// (scan.LayerError reasons, see Outcome): the coverage stays ACTIVE.
func partial(r scan.Reason) bool {
	return r == scan.ReasonCorruptLayer || r == scan.ReasonLimitExceeded || r == scan.ReasonAnalyzerPanic
}

// markScanned sets lastScannedAt of st's coverage unless it was deactivated.
func (s *Service) markScanned(ctx context.Context, st *imageState, at time.Time) error {
	_, err := s.covs.Update(ctx, st.Digest, func(cv *index.Coverage, exists bool) (bool, error) {
		if !exists || deactivated(cv) {
			return false, nil
		}
		cv.LastScannedAt = &at
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("lifecycle: coverage %s: %w", st.Digest, err)
	}
	return nil
}

// setLive is setStatus unless the image was deactivated meanwhile; ok is
// false then (nothing written).
func (s *Service) setLive(ctx context.Context, st *imageState, code string, reason scan.Reason, msg string) (ok bool, err error) {
	now := s.now()
	_, err = s.covs.Update(ctx, st.Digest, func(cv *index.Coverage, _ bool) (bool, error) {
		if ok = !deactivated(cv); !ok {
			return false, nil
		}
		cv.ScanType, cv.ScanFrequency = ScanTypePackage, st.Freq
		cv.StatusCode, cv.Reason, cv.Message = code, reason, msg
		if cv.Platform == (scan.Platform{}) {
			cv.Platform = st.Platform
		}
		cv.UpdatedAt = now
		return true, nil
	})
	if err != nil {
		return false, fmt.Errorf("lifecycle: coverage %s: %w", st.Digest, err)
	}
	return ok, nil
}

// lostRace ends a job whose image was archived, deleted or expired while it
// was being scanned: the findings the scan just wrote are closed again.
func (s *Service) lostRace(ctx context.Context, job *index.Job, st *imageState, now time.Time) error {
	s.log.Info().Str("digest", st.Digest.String()).Msg("image deactivated during its scan; findings closed again")
	if s.o.Findings != nil {
		if _, err := s.o.Findings.CloseAll(ctx, st.Digest, now); err != nil {
			return fmt.Errorf("lifecycle: close findings of %s: %w", st.Digest, err)
		}
	}
	return s.queue.Ack(ctx, job, now)
}
