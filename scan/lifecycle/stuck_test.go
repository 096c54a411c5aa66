package lifecycle

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// TestStuckScanFreesWorker: a scan that never returns and ignores its
// context (an analyzer stuck on a layer read from the registry) holds its
// worker only until ScanTimeout (plus a short grace): the job ends, the
// image gets INTERNAL_ERROR with a message saying the scan was abandoned,
// and the other image behind it in the one-worker queue is scanned.
func TestStuckScanFreesWorker(t *testing.T) {
	h := newHarness(t, nil, func(o *Options) {
		o.Workers, o.ScanTimeout, o.RetryBudget = 1, 20*time.Millisecond, 1
	})
	stuck, good := dg("stuck"), dg("good")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h.scanner.onScan = func(_ context.Context, req ScanRequest) error {
		if req.Image == stuck {
			<-release // ignores ctx
		}
		return nil
	}
	h.push("app", stuck)
	h.push("app", good)
	done := make(chan error, 1)
	go func() { done <- h.svc.Drain(h.ctx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute): // liveness bound, not a timing assertion
		t.Fatal("a stuck scan holds the only worker")
	}
	assert.Equal(t, index.StatusInactive+"/"+string(scan.ReasonInternalError), h.status(stuck))
	assert.True(t, strings.Contains(h.cov(stuck).Message, "abandoned"), "message %q", h.cov(stuck).Message)
	assert.Equal(t, 1, h.scanner.Calls(good), "the image queued behind the stuck scan was not scanned")
}
