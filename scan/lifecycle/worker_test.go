package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

var errUpstream = errors.New("upstream: 503 Service Unavailable")

func TestTransientFailuresRetryWithBackoffThenSucceed(t *testing.T) {
	h := newHarness(t, nil) // RetryBase 1m, RetryMax 1h, budget 3
	d := dg("flaky")
	h.scanner.script[d] = []error{errUpstream, errUpstream}
	h.push("app", d)

	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(d))
	assert.Equal(t, pendingFirst, h.status(d), "a transient failure never shows as an error status")
	assert.Contains(t, h.cov(d).Message, "retrying")
	j, err := h.svc.queue.Get(h.ctx, d.String())
	require.NoError(t, err)
	assert.Equal(t, 1, j.Attempts)
	assert.Equal(t, t0.Add(time.Minute), j.Due, "first backoff is RetryBase")

	h.clock.Advance(59 * time.Second)
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(d), "not retried before the backoff")
	h.clock.Advance(time.Second)
	h.drain()
	assert.Equal(t, 2, h.scanner.Calls(d))
	j, err = h.svc.queue.Get(h.ctx, d.String())
	require.NoError(t, err)
	assert.Equal(t, h.clock.Now().Add(2*time.Minute), j.Due, "backoff doubles")

	h.clock.Advance(2 * time.Minute)
	h.drain()
	assert.Equal(t, 3, h.scanner.Calls(d))
	assert.Equal(t, activeOK, h.status(d))
	assert.False(t, h.queued(d))
}

func TestRetryBudgetThenSweepRetries(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("down")
	h.scanner.script[d] = []error{errUpstream, errUpstream, &ScanError{Reason: scan.ReasonAccessDenied, Err: errors.New("401")}}
	h.push("app", d)
	for range 3 {
		h.drain()
		h.clock.Advance(time.Hour)
	}
	assert.Equal(t, 3, h.scanner.Calls(d), "budget of 3 attempts")
	assert.Equal(t, "INACTIVE/ACCESS_DENIED", h.status(d))
	assert.False(t, h.queued(d))
	h.drain()
	assert.Equal(t, 3, h.scanner.Calls(d))

	st := h.sweep()
	assert.Equal(t, 1, st.Requeued, "the sweep retries: the status is never permanent")
	h.drain()
	assert.Equal(t, 4, h.scanner.Calls(d))
	assert.Equal(t, activeOK, h.status(d))
}

func TestRescanFailureKeepsPreviousStatus(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("img")
	h.push("app", d)
	h.drain()
	h.scanner.script[d] = []error{nil, errUpstream}
	_, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	h.drain()
	assert.Equal(t, activeOK, h.status(d))
	assert.Equal(t, t0, *h.cov(d).LastScannedAt)
}

func TestJobsForTheSameImageCoalesce(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("busy")
	h.push("app", d)
	h.push("app2", d)
	h.pull("app", d)
	_, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	require.NoError(t, h.svc.RequestScan(h.ctx, "app", d))
	n, err := h.svc.queue.Len(h.ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	h.drain()
	assert.Equal(t, 1, h.scanner.Calls(d))
	assert.Equal(t, []string{TriggerDelta, TriggerManual, TriggerPush}, h.scanner.reqs[0].Triggers)
}

func TestEnqueuedDuringScanRunsAgain(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("img")
	h.push("app", d)
	h.drain()
	entered, release := make(chan struct{}), make(chan struct{})
	h.scanner.onScan = func(ctx context.Context, req ScanRequest) error {
		if h.scanner.Calls(d) == 2 {
			close(entered)
			<-release
		}
		return nil
	}
	_, err := h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	done := make(chan error)
	go func() { done <- h.svc.Drain(h.ctx) }()
	<-entered
	// A second advisory delta arrives while the first rescan runs.
	_, err = h.svc.OnAdvisoryDelta(h.ctx, []digestT{d})
	require.NoError(t, err)
	close(release)
	require.NoError(t, <-done)
	h.drain()
	assert.Equal(t, 3, h.scanner.Calls(d), "the delta that came mid-scan is not lost")
}

func TestConcurrencyIsBounded(t *testing.T) {
	const workers = 3
	h := newHarness(t, nil, func(o *Options) { o.Workers = workers })
	var inFlight, peak atomic.Int32
	entered := make(chan struct{}, 100)
	release := make(chan struct{})
	h.scanner.onScan = func(ctx context.Context, req ScanRequest) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		return nil
	}
	for i := range 12 {
		h.push("app", dg(fmt.Sprint("img", i)))
	}
	done := make(chan error)
	go func() { done <- h.svc.Drain(h.ctx) }()
	for range workers {
		<-entered
	}
	leased := 0
	require.NoError(t, h.svc.queue.Each(h.ctx, func(j *index.Job) error {
		if j.Leased {
			leased++
		}
		return nil
	}))
	assert.Equal(t, workers, leased, "exactly Workers jobs leased while all workers are busy")
	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, int32(workers), peak.Load())
	assert.Equal(t, 12, h.scanner.Total())
}

// TestRunWorksQueueAndSweepsOnConfigChange runs the real loop.
func TestRunWorksQueueAndSweepsOnConfigChange(t *testing.T) {
	sweeps := make(chan SweepStats, 10)
	h := newHarness(t, nil, func(o *Options) {
		o.IdlePoll = 10 * time.Millisecond
		o.OnSweep = func(s SweepStats, _ error) { sweeps <- s }
	})
	scanned := make(chan struct{}, 1)
	h.scanner.onScan = func(context.Context, ScanRequest) error { scanned <- struct{}{}; return nil }
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = h.svc.Run(ctx) }()
	<-sweeps // the start-up sweep
	d := dg("run")
	h.push("app", d)
	<-scanned
	// The worker records the outcome and acks after the scanner returns.
	require.Eventually(t, func() bool { return h.status(d) == activeOK && !h.queued(d) }, time.Minute, time.Millisecond)
	h.clock.Advance(20 * day)
	require.NoError(t, h.svc.UpdateEcrConfiguration(h.ctx, EcrConfiguration{RescanDuration: "DAYS_14"}))
	st := <-sweeps
	assert.Equal(t, 1, st.Expired, "a configuration change triggers a sweep")
	assert.Equal(t, expired, h.status(d))
	cancel()
	wg.Wait()
}

// TestArchiveDuringScanWins: an archive that lands while the image is being
// scanned is not overwritten by the scan's outcome, and the findings the scan
// wrote are closed again.
func TestArchiveDuringScanWins(t *testing.T) {
	h := newHarness(t, nil)
	d := dg("racy")
	h.push("app", d)
	h.scanner.onScan = func(ctx context.Context, req ScanRequest) error {
		require.NoError(t, h.svc.Archive(ctx, "app", d))
		h.findings.mu.Lock()
		h.findings.status[d] = scan.FindingActive // the matcher writes after the archive closed them
		h.findings.mu.Unlock()
		return nil
	}
	h.drain()
	assert.Equal(t, "INACTIVE/IMAGE_ARCHIVED", h.status(d))
	assert.Equal(t, scan.FindingClosed, h.findings.Get(d))
	assert.False(t, h.queued(d))
	assert.Nil(t, h.cov(d).LastScannedAt)
}

func TestSweepRetriesFailedScansAtEveryFrequency(t *testing.T) {
	tests := []struct {
		name   string
		seed   *index.ScanningConfiguration
		manual bool
		later  time.Duration
		want   string
		calls  int
	}{
		{"continuous", nil, false, time.Hour, activeOK, 4},
		{"continuous, expired meanwhile", nil, false, 15 * day, expired, 3},
		{"scan on push", cfg(ScanTypeEnhanced, rule(FreqScanOnPush, "*")), false, time.Hour, "ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH", 4},
		{"manual request", cfg(ScanTypeBasic, rule(FreqManual, "*")), true, time.Hour, "ACTIVE/SCAN_FREQUENCY_MANUAL", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.seed)
			d := dg(tt.name)
			h.scanner.script[d] = []error{errUpstream, errUpstream, errUpstream}
			h.push("app", d)
			if tt.manual {
				require.NoError(t, h.svc.RequestScan(h.ctx, "app", d))
			}
			for range 3 {
				h.drain()
				h.clock.Advance(time.Hour)
			}
			require.Equal(t, "INACTIVE/INTERNAL_ERROR", h.status(d))
			h.clock.Advance(tt.later)
			h.sweep()
			h.drain()
			assert.Equal(t, tt.want, h.status(d))
			assert.Equal(t, tt.calls, h.scanner.Calls(d))
		})
	}
}
