package lifecycle

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

const (
	activeOK     = "ACTIVE/SUCCESSFUL"
	expired      = "INACTIVE/SCAN_ELIGIBILITY_EXPIRED"
	pendingFirst = "ACTIVE/PENDING_INITIAL_SCAN"
	pendingRev   = "ACTIVE/PENDING_REVIVAL_SCAN"
)

func TestPushScansByFrequency(t *testing.T) {
	tests := []struct {
		name      string
		seed      *index.ScanningConfiguration
		repo      string
		afterPush string
		after     string
		scans     int
	}{
		{"enhanced continuous", cfg(ScanTypeEnhanced, rule(FreqContinuous, "*")), "app", pendingFirst, activeOK, 1},
		{"enhanced scan on push", cfg(ScanTypeEnhanced, rule(FreqScanOnPush, "app")), "app", pendingFirst, "ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH", 1},
		{"enhanced, no matching rule", cfg(ScanTypeEnhanced, rule(FreqContinuous, "prod/*")), "dev/app", "INACTIVE/SCAN_FREQUENCY_MANUAL", "INACTIVE/SCAN_FREQUENCY_MANUAL", 0},
		{"basic scan on push", cfg(ScanTypeBasic, rule(FreqScanOnPush, "*")), "app", pendingFirst, "ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH", 1},
		{"basic manual", cfg(ScanTypeBasic, rule(FreqManual, "*")), "app", "INACTIVE/SCAN_FREQUENCY_MANUAL", "INACTIVE/SCAN_FREQUENCY_MANUAL", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.seed)
			d := dg(tt.name)
			h.push(tt.repo, d)
			assert.Equal(t, tt.afterPush, h.status(d))
			h.clock.Advance(time.Minute)
			h.drain()
			assert.Equal(t, tt.after, h.status(d))
			assert.Equal(t, tt.scans, h.scanner.Calls(d))
			if tt.scans > 0 {
				c := h.cov(d)
				require.NotNil(t, c.LastScannedAt)
				assert.Equal(t, t0.Add(time.Minute), *c.LastScannedAt)
				assert.Equal(t, scan.Platform{OS: "linux", Architecture: "amd64"}, c.Platform)
				assert.Equal(t, tt.seed.ScanType, h.scanner.reqs[0].ScanType)
			}
		})
	}
}

// TestEligibilityWindows moves the clock through push, pull and in-use
// windows and checks when an image stops being monitored.
func TestEligibilityWindows(t *testing.T) {
	type step struct {
		at     time.Duration // since the push
		do     string        // "pull", "inuse", "ecr:<rescan>/<pull>/<mode>", "" (just sweep)
		status string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"expires at 14 days", []step{{13*day + 23*time.Hour, "", activeOK}, {14 * day, "", expired}}},
		{"LIFETIME never expires", []step{{0, "ecr:LIFETIME//", activeOK}, {400 * day, "", activeOK}}},
		{"a pull extends by the pull window", []step{{10 * day, "pull", activeOK}, {20 * day, "", activeOK}, {24 * day, "", expired}}},
		{"longer pull window", []step{{0, "ecr:DAYS_14/DAYS_60/", activeOK}, {10 * day, "pull", activeOK}, {69 * day, "", activeOK}, {70 * day, "", expired}}},
		{"lengthening extends an ACTIVE image", []step{{10 * day, "ecr:DAYS_30//", activeOK}, {29 * day, "", activeOK}, {30 * day, "", expired}}},
		{"lengthening does not revive an INACTIVE image", []step{{14 * day, "", expired}, {15 * day, "ecr:DAYS_180//", expired}, {16 * day, "", expired}}},
		{"shortening expires at the next sweep", []step{{0, "ecr:DAYS_90//", activeOK}, {40 * day, "", activeOK}, {41 * day, "ecr:DAYS_30//", expired}}},
		{"in-use mode ignores pulls", []step{{0, "ecr:DAYS_14//LAST_IN_USE_AT", activeOK}, {10 * day, "pull", activeOK}, {14 * day, "", expired}}},
		{"in-use mode counts running containers", []step{{0, "ecr:DAYS_14//LAST_IN_USE_AT", activeOK}, {10 * day, "inuse", activeOK}, {23 * day, "", activeOK}, {24 * day, "", expired}}},
		{"pull-date mode ignores in-use", []step{{10 * day, "inuse", activeOK}, {14 * day, "", expired}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			d := dg(tt.name)
			h.push("app", d)
			h.drain()
			require.Equal(t, activeOK, h.status(d))
			for _, s := range tt.steps {
				h.clock.t = t0.Add(s.at)
				switch {
				case s.do == "pull":
					h.pull("app", d)
				case s.do == "inuse":
					require.NoError(t, h.svc.ReportInUse(h.ctx, []Report{{Cluster: "c", Workload: "w", ContainerID: "1", ImageDigest: d.String(), ObservedAt: h.clock.Now()}}))
				case len(s.do) > 4 && s.do[:4] == "ecr:":
					var parts [3]string
					copy(parts[:], splitN(s.do[4:], "/", 3))
					require.NoError(t, h.svc.UpdateEcrConfiguration(h.ctx, EcrConfiguration{RescanDuration: parts[0], PullDateRescanDuration: parts[1], PullDateRescanMode: parts[2]}))
				}
				h.sweep()
				assert.Equal(t, s.status, h.status(d), "at day %v after %q", s.at.Hours()/24, s.do)
			}
		})
	}
}

func splitN(s, sep string, n int) []string {
	var out []string
	for i := 0; i < n-1; i++ {
		j := indexOf(s, sep)
		if j < 0 {
			break
		}
		out = append(out, s[:j])
		s = s[j+len(sep):]
	}
	return append(out, s)
}

func indexOf(s, sep string) int {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return i
		}
	}
	return -1
}

func TestExpiryClosesThenDeletesFindingsAndRevivalByPull(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("img")
	h.push("app", d)
	h.drain()
	require.Equal(t, scan.FindingActive, h.findings.Get(d))

	h.clock.t = t0.Add(15 * day)
	st := h.sweep()
	assert.Equal(t, 1, st.Expired)
	assert.Equal(t, expired, h.status(d))
	assert.Equal(t, scan.FindingClosed, h.findings.Get(d), "findings closed at expiry")

	_, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(d), "an INACTIVE image is not rescanned on a delta")

	h.clock.t = t0.Add(15*day + 3*day - time.Second)
	h.sweep()
	assert.Equal(t, scan.FindingClosed, h.findings.Get(d), "kept until 3 days passed")
	h.clock.t = t0.Add(18 * day)
	st = h.sweep()
	assert.Equal(t, 1, st.FindingsDeleted)
	assert.Equal(t, scan.FindingStatus(""), h.findings.Get(d), "deleted 3 days after closing")
	assert.Equal(t, expired, h.status(d), "the sweep never revives")

	h.clock.t = t0.Add(30 * day)
	h.pull("app", d)
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, activeOK, h.status(d))
	assert.Equal(t, t0.Add(30*day), *h.cov(d).LastScannedAt)
	assert.Equal(t, scan.FindingActive, h.findings.Get(d))
	assert.Nil(t, h.cov(d).FindingsDeleteAt)

	// Revived by a pull, it stays monitored for the pull window.
	h.clock.t = t0.Add(43 * day)
	h.sweep()
	assert.Equal(t, activeOK, h.status(d))
	h.clock.t = t0.Add(44 * day)
	h.sweep()
	assert.Equal(t, expired, h.status(d))

	// A new push revives too.
	h.clock.t = t0.Add(50 * day)
	h.push("app", d)
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, activeOK, h.status(d))
}

func TestInUseReportRevivesInLastInUseMode(t *testing.T) {
	h := newHarness(t, nil)
	require.NoError(t, h.svc.UpdateEcrConfiguration(h.ctx, EcrConfiguration{RescanDuration: "DAYS_14", PullDateRescanMode: ModeLastInUseAt}))
	d := dg("img")
	h.push("team/app", d)
	h.drain()
	h.clock.t = t0.Add(20 * day)
	h.sweep()
	require.Equal(t, expired, h.status(d))
	require.NoError(t, h.svc.ReportInUse(h.ctx, []Report{{Cluster: "prod", Namespace: "web", Workload: "deploy/app", ContainerID: "c1",
		ImageReference: "tollgate.example:5000/team/app@" + d.String()}}))
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, activeOK, h.status(d))
}

func TestArchiveAndRestore(t *testing.T) {
	h := newHarness(t, nil)
	d, other := dg("archived"), dg("other")
	h.push("app", d)
	h.push("app", other)
	h.drain()
	// A job queued before the archive is dropped by it.
	_, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	require.True(t, h.queued(d))

	require.NoError(t, h.svc.Archive(h.ctx, "app", d))
	assert.Equal(t, "INACTIVE/IMAGE_ARCHIVED", h.status(d))
	assert.False(t, h.queued(d), "archiving drops the queued job")
	assert.Equal(t, scan.FindingClosed, h.findings.Get(d))
	rec, _ := h.records.Image(h.ctx, d)
	assert.Equal(t, index.ImageArchived, rec.Repo("app").Status, "recorded through the Recorder")
	assert.ErrorIs(t, h.svc.RequestScan(h.ctx, "app", d), ErrArchived)

	_, err = h.svc.OnAdvisoryDelta(h.ctx, []digestT{d, other})
	require.NoError(t, err)
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(d), "an archived image is unscanned")
	assert.Equal(t, 2, h.scanner.Calls(other))

	h.clock.Advance(3 * day)
	h.sweep()
	assert.Equal(t, scan.FindingStatus(""), h.findings.Get(d), "findings deleted 3 days after archiving")
	assert.Equal(t, "INACTIVE/IMAGE_ARCHIVED", h.status(d), "the sweep keeps it archived")

	require.NoError(t, h.svc.Restore(h.ctx, "app", d))
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, 2, h.scanner.Calls(d), "restoring triggers a scan")
	assert.Equal(t, activeOK, h.status(d))
	assert.Equal(t, scan.FindingActive, h.findings.Get(d))

	assert.ErrorIs(t, h.svc.Archive(h.ctx, "nope", d), ErrUnknownImage)
}

func TestActivationBackfill(t *testing.T) {
	// Nothing is covered at first: ENHANCED with a rule for another repository.
	h := newHarness(t, cfg(ScanTypeEnhanced, rule(FreqScanOnPush, "elsewhere")))
	old, recent, edge := dg("old"), dg("recent"), dg("edge")
	h.push("app", old)
	h.clock.t = t0.Add(6*day + time.Hour)
	h.push("app", edge)
	h.clock.t = t0.Add(10 * day)
	h.push("app", recent)
	h.drain()
	assert.Equal(t, 0, h.scanner.Total())
	assert.Equal(t, "INACTIVE/SCAN_FREQUENCY_MANUAL", h.status(recent))

	h.clock.t = t0.Add(20 * day)
	_, err := h.svc.PutRegistryScanningConfiguration(h.ctx, RegistryScanningConfiguration{ScanType: ScanTypeEnhanced,
		Rules: []index.ScanningRule{rule(FreqContinuous, "app")}})
	require.NoError(t, err)
	st := h.sweep()
	assert.Equal(t, 2, st.Backfilled)
	assert.Equal(t, pendingFirst, h.status(recent), "pushed 10 days ago: backfilled")
	assert.Equal(t, pendingFirst, h.status(edge), "pushed 13d23h ago: backfilled")
	assert.Equal(t, expired, h.status(old), "pushed 20 days ago: outside the backfill window")
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(recent))
	assert.Equal(t, 1, h.scanner.Calls(edge))
	assert.Equal(t, 0, h.scanner.Calls(old))
	assert.Equal(t, activeOK, h.status(recent))

	// Back to scan on push: monitored images keep their findings, no more updates.
	_, err = h.svc.PutRegistryScanningConfiguration(h.ctx, RegistryScanningConfiguration{ScanType: ScanTypeEnhanced,
		Rules: []index.ScanningRule{rule(FreqScanOnPush, "*")}})
	require.NoError(t, err)
	h.sweep()
	assert.Equal(t, "ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH", h.status(recent))
	n, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{recent})
	require.NoError(t, err)
	assert.Equal(t, 0, n, "SCAN_ON_PUSH images get no delta rescans")
}

func TestAdvisoryDeltaRescansOnlyMonitoredImages(t *testing.T) {
	h := newHarness(t, cfg(ScanTypeEnhanced, rule(FreqScanOnPush, "once/*"), rule(FreqContinuous, "*")))
	cont, once, stale, unknown := dg("continuous"), dg("once"), dg("stale"), dg("unknown")
	h.push("app", stale)
	h.clock.t = t0.Add(10 * day)
	h.push("app", cont)
	h.push("once/app", once)
	h.drain()
	h.clock.t = t0.Add(15 * day)
	h.sweep()
	require.Equal(t, expired, h.status(stale))

	h.clock.t = t0.Add(16 * day)
	n, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{cont, once, stale, unknown})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	h.drain()
	assert.Equal(t, 2, h.scanner.Calls(cont))
	assert.Equal(t, 1, h.scanner.Calls(once))
	assert.Equal(t, 1, h.scanner.Calls(stale))
	assert.Equal(t, t0.Add(16*day), *h.cov(cont).LastScannedAt, "lastScannedAt set by a delta rescan")
	assert.True(t, h.scanner.reqs[len(h.scanner.reqs)-1].Rescan)
}

func TestManualScanAndFirstMirrorPull(t *testing.T) {
	h := newHarness(t, cfg(ScanTypeBasic, rule(FreqScanOnPush, "mirror/*")))
	d := dg("manual")
	h.push("app", d)
	h.drain()
	require.Equal(t, "INACTIVE/SCAN_FREQUENCY_MANUAL", h.status(d))
	require.NoError(t, h.svc.RequestScan(h.ctx, "app", d))
	assert.Equal(t, pendingFirst, h.status(d))
	h.drain()
	assert.Equal(t, "ACTIVE/SCAN_FREQUENCY_MANUAL", h.status(d))
	assert.Equal(t, 1, h.scanner.Calls(d))
	assert.ErrorIs(t, h.svc.RequestScan(h.ctx, "other", d), ErrUnknownImage)

	// An image first seen by a pull through the mirror is scanned once.
	m := dg("mirrored")
	h.pull("mirror/library/alpine", m)
	assert.Equal(t, pendingFirst, h.status(m))
	h.drain()
	h.pull("mirror/library/alpine", m)
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(m))
	assert.Equal(t, "ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH", h.status(m))
}

func TestDeletedImageTerminated(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("gone")
	h.push("a", d)
	h.push("b", d)
	h.drain()
	h.event(index.EventDelete, "a", d)
	assert.Equal(t, activeOK, h.status(d), "still in repository b")
	h.event(index.EventDelete, "b", d)
	assert.Equal(t, "INACTIVE/RESOURCE_TERMINATED", h.status(d))
	assert.Equal(t, scan.FindingClosed, h.findings.Get(d))
	h.clock.Advance(3 * day)
	h.sweep()
	assert.Equal(t, scan.FindingStatus(""), h.findings.Get(d))
}

func TestUnsupportedImagesGetAStatusAndNoRetry(t *testing.T) {
	tests := []struct {
		name   string
		result *Result
		err    error
		want   string
	}{
		{"unsupported media type", &Result{Reason: scan.ReasonUnsupportedMediaType, Message: "application/vnd.foo"}, nil, "INACTIVE/UNSUPPORTED_MEDIA_TYPE"},
		{"unsupported os", &Result{Reason: scan.ReasonUnsupportedOS}, nil, "INACTIVE/UNSUPPORTED_OS"},
		{"permanent error", nil, &ScanError{Reason: scan.ReasonUnsupportedConfigFile, Permanent: true}, "INACTIVE/UNSUPPORTED_CONFIG_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			d := dg(tt.name)
			if tt.result != nil {
				h.scanner.result[d] = *tt.result
			}
			if tt.err != nil {
				h.scanner.script[d] = []error{tt.err}
			}
			h.push("app", d)
			h.drain()
			assert.Equal(t, tt.want, h.status(d))
			assert.False(t, h.queued(d))
			h.clock.Advance(2 * time.Hour)
			h.sweep()
			h.drain()
			assert.Equal(t, 1, h.scanner.Calls(d), "permanent: never retried")
			assert.Equal(t, tt.want, h.status(d))
		})
	}
}

func TestImageIndexChildrenScannedWithPlatforms(t *testing.T) {
	h := newHarness(t, nil)
	idx, amd, arm := dg("index"), dg("amd64"), dg("arm64")
	amdP := scan.Platform{OS: "linux", Architecture: "amd64"}
	armP := scan.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	h.scanner.result[amd] = Result{Reason: scan.ReasonSuccessful}
	h.scanner.result[arm] = Result{Reason: scan.ReasonSuccessful}
	// A mirror pull of the index: the children were never recorded themselves.
	require.NoError(t, h.records.Record(h.ctx, index.Event{Kind: index.EventPull, Repository: "lib/alpine", Digest: idx, At: t0}))
	h.records.mu.Lock()
	h.records.imgs[idx].Index = true
	h.records.imgs[idx].Children = []index.ChildImage{{Digest: amd, Platform: amdP}, {Digest: arm, Platform: armP}}
	h.records.mu.Unlock()
	require.NoError(t, h.svc.Observe(h.ctx, index.Event{Kind: index.EventPull, Repository: "lib/alpine", Digest: idx, At: t0}))
	h.drain()
	assert.Equal(t, 0, h.scanner.Calls(idx), "the index itself is not scanned")
	assert.Equal(t, 1, h.scanner.Calls(amd))
	assert.Equal(t, 1, h.scanner.Calls(arm))

	got, err := h.svc.Coverage(h.ctx, idx)
	require.NoError(t, err)
	require.Len(t, got, 2)
	plats := map[string]scan.Platform{}
	for _, ci := range got {
		assert.Equal(t, idx, ci.Parent)
		assert.Equal(t, "lib/alpine", ci.Repository)
		assert.Equal(t, scan.ReasonSuccessful, ci.Reason)
		plats[ci.Digest.String()] = ci.Platform
	}
	assert.Equal(t, amdP, plats[amd.String()])
	assert.Equal(t, armP, plats[arm.String()])

	// The sweep covers never-recorded children too.
	h.clock.t = t0.Add(15 * day)
	h.sweep()
	assert.Equal(t, expired, h.status(arm))
	// Archiving the index archives its children.
	h.clock.t = t0.Add(16 * day)
	require.NoError(t, h.svc.Archive(h.ctx, "lib/alpine", idx))
	assert.Equal(t, "INACTIVE/IMAGE_ARCHIVED", h.status(amd))
}

func TestSweepRepairsAMissedRestore(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("img")
	h.push("app", d)
	h.drain()
	require.NoError(t, h.svc.Archive(h.ctx, "app", d))
	// Restored in the records, but the process died before Observe.
	require.NoError(t, h.records.Record(h.ctx, index.Event{Kind: index.EventRestore, Repository: "app", Digest: d, At: h.clock.Now()}))
	h.sweep()
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, activeOK, h.status(d))
	assert.Equal(t, 2, h.scanner.Calls(d))
}

func TestManualScanOfAnExpiredImage(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("img")
	h.push("app", d)
	h.drain()
	h.clock.Advance(20 * day)
	h.sweep()
	require.Equal(t, expired, h.status(d))
	require.NoError(t, h.svc.RequestScan(h.ctx, "app", d))
	assert.Equal(t, pendingRev, h.status(d))
	h.drain()
	assert.Equal(t, 2, h.scanner.Calls(d), "a manual request scans whatever the eligibility")
	assert.Equal(t, activeOK, h.status(d))
	h.sweep()
	assert.Equal(t, expired, h.status(d), "still outside its windows: the sweep expires it again")
}
