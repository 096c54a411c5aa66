package lifecycle

import (
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// imageState is one image as the rules see it, aggregated over the
// repositories that hold it (an image in several repositories takes the
// strongest frequency and the latest dates).
type imageState struct {
	Digest   digest.Digest
	Parent   digest.Digest // the index this view came from, for a child without its own record
	Platform scan.Platform // from the parent index entry, when known
	Index    bool
	Children []index.ChildImage
	Parents  []digest.Digest // indexes naming this manifest (its own record's)
	// Live are the repositories where the image is not deleted.
	Live     []index.RepoImage
	Archived bool // every live repository holds it ARCHIVED
	Repo     string
	Freq     string
	PushedAt time.Time
	PulledAt *time.Time
}

// freqRank orders frequencies by how much scanning they ask for.
func freqRank(f string) int {
	switch f {
	case FreqContinuous:
		return 2
	case FreqScanOnPush:
		return 1
	}
	return 0
}

// stateOf builds the state of rec under configuration c. For a child image
// named by an index but never recorded itself, pass the parent's record and
// the child entry.
func stateOf(c index.ScanningConfiguration, rec *index.ImageRecord, child *index.ChildImage) *imageState {
	st := &imageState{Digest: rec.Digest, Index: rec.Index, Children: rec.Children, Parents: rec.Parents, Freq: FreqManual, Archived: true}
	if child != nil {
		st.Digest, st.Parent, st.Platform = child.Digest, rec.Digest, child.Platform
		st.Index, st.Children, st.Parents = false, nil, []digest.Digest{rec.Digest}
	}
	for _, r := range rec.Repos {
		if r.Deleted {
			continue
		}
		st.Live = append(st.Live, r)
		if r.PushedAt.After(st.PushedAt) {
			st.PushedAt = r.PushedAt
		}
		if r.LastPulledAt != nil && (st.PulledAt == nil || r.LastPulledAt.After(*st.PulledAt)) {
			t := *r.LastPulledAt
			st.PulledAt = &t
		}
		if r.Status == index.ImageArchived {
			continue
		}
		st.Archived = false
		f, _ := frequencyFor(c, r.Repository)
		if st.Repo == "" || freqRank(f) > freqRank(st.Freq) {
			st.Freq, st.Repo = f, r.Repository
		}
	}
	if len(st.Live) == 0 {
		st.Archived = false
	}
	if st.Repo == "" && len(st.Live) > 0 {
		st.Repo = st.Live[0].Repository
	}
	return st
}

// eligible reports whether a CONTINUOUS_SCAN image is still monitored at now:
// pushed within rescanDuration (LIFETIME: always), or pulled — in
// LAST_IN_USE_AT mode, in use — within pullDateRescanDuration.
func eligible(c index.ScanningConfiguration, st *imageState, lastInUseAt *time.Time, now time.Time) bool {
	if c.RescanDuration == DurationForever {
		return true
	}
	if d, ok := durations[c.RescanDuration]; ok && !st.PushedAt.IsZero() && now.Sub(st.PushedAt) < d {
		return true
	}
	last := st.PulledAt
	if c.PullDateRescanMode == ModeLastInUseAt {
		last = lastInUseAt
	}
	if d, ok := durations[c.PullDateRescanDuration]; ok && last != nil && now.Sub(*last) < d {
		return true
	}
	return false
}

// scannedReason is the coverage after a successful scan at frequency f:
// CONTINUOUS_SCAN images are monitored (SUCCESSFUL); SCAN_ON_PUSH and MANUAL
// ones keep their findings but receive no updates, said by the reason.
func scannedReason(f string) scan.Reason {
	switch f {
	case FreqContinuous:
		return scan.ReasonSuccessful
	case FreqScanOnPush:
		return scan.ReasonScanFrequencyScanOnPush
	}
	return scan.ReasonScanFrequencyManual
}

// pending reports reasons that mean "a scan job should exist".
func pending(r scan.Reason) bool {
	return r == scan.ReasonPendingInitialScan || r == scan.ReasonPendingRevivalScan || r == scan.ReasonScanInProgress
}

// retryable reports reasons the sweep retries (never a permanent status).
func retryable(r scan.Reason) bool {
	return r == scan.ReasonInternalError || r == scan.ReasonAccessDenied
}

// allowed reports whether a job with triggers may scan an image at
// frequency freq whose coverage is cov (nil: none yet).
func allowed(triggers []string, freq string, cov *index.Coverage) bool {
	for _, t := range triggers {
		switch t {
		case TriggerManual:
			return true
		case TriggerDelta:
			if freq == FreqContinuous && cov != nil && cov.StatusCode == index.StatusActive {
				return true
			}
		case TriggerBackfill, TriggerRevival:
			if freq == FreqContinuous {
				return true
			}
		case TriggerPush, TriggerPull, TriggerRestore, TriggerRetry:
			if freq != FreqManual {
				return true
			}
		}
	}
	return false
}

// backoff is the wait before retry number attempt+1: base·2^attempt, capped.
func backoff(base, maxWait time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}
