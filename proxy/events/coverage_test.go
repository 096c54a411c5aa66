package events

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

func TestCoverageWatcher(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	img := digest.FromString("img")
	watcher := func(n node) *CoverageWatcher {
		return &CoverageWatcher{DB: n.db, Outbox: n.ob, Publisher: NewPublisher(n.ob, nil),
			Coverages: index.NewCoverages(n.db), Now: func() time.Time { return now },
			Repos: func(context.Context, digest.Digest) []string { return []string{"a/app", "b/app"} }}
	}
	n := openNode(t, dir)
	covs := index.NewCoverages(n.db)
	require.NoError(t, covs.Put(ctx, &index.Coverage{Image: digest.FromString("old"), StatusCode: index.StatusActive,
		Reason: scan.ReasonSuccessful, UpdatedAt: t0.Add(-time.Hour)}))
	w := watcher(n)

	published, err := w.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, published, "first run starts from now")

	require.NoError(t, covs.Put(ctx, &index.Coverage{Image: img, StatusCode: index.StatusActive,
		Reason: scan.ReasonPendingInitialScan, UpdatedAt: t0.Add(time.Second)}))
	now = t0.Add(time.Second)
	published, err = w.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, published, "not settled yet")
	now = t0.Add(5 * time.Second)
	published, err = w.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, published, "one event per repository")
	published, err = w.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, published, "no repeats")
	n.close(t)

	n = openNode(t, dir)
	defer n.close(t)
	w = watcher(n)
	published, err = w.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, published, "the cursor survived the restart")
	require.NoError(t, index.NewCoverages(n.db).Put(ctx, &index.Coverage{Image: img, StatusCode: index.StatusActive,
		Reason: scan.ReasonSuccessful, UpdatedAt: t0.Add(10 * time.Second)}))
	now = t0.Add(20 * time.Second)
	published, err = w.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, published)

	evs, _ := pendingEvents(t, n.ob, 0)
	require.Len(t, evs, 4)
	var reasons []string
	for _, ev := range evs {
		require.Equal(t, TypeCoverage, ev.Type)
		var d CoverageDetail
		require.NoError(t, json.Unmarshal(ev.Data, &d))
		reasons = append(reasons, d.ScanStatus.Reason)
	}
	require.Equal(t, []string{"PENDING_INITIAL_SCAN", "PENDING_INITIAL_SCAN", "SUCCESSFUL", "SUCCESSFUL"}, reasons)
}
