package index

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInUseStatsClustersAndPrune(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openQueueDB(t, dir)
	s := NewInUse(db)
	img, other := digest.FromString("img"), digest.FromString("other")
	now := qt0.Add(100 * time.Hour)
	require.NoError(t, s.Put(ctx, []InUseReport{
		{Cluster: "prod", Namespace: "a", Workload: "web", ContainerID: "1", Image: img, ObservedAt: now.Add(-time.Hour)},
		{Cluster: "prod", Namespace: "a", Workload: "web", ContainerID: "2", Image: img, ObservedAt: now.Add(-23 * time.Hour)},
		{Cluster: "prod", Namespace: "a", Workload: "web", ContainerID: "3", Image: img, ObservedAt: now.Add(-24 * time.Hour)},
		{Cluster: "dev", Workload: "job", ContainerID: "1", Image: img, ObservedAt: now.Add(-90 * time.Hour)},
		{Cluster: "prod", Workload: "x", ContainerID: "9", Image: other, ObservedAt: now},
	}))
	// A repeated report of container 1, older: ignored; newer: kept.
	require.NoError(t, s.Put(ctx, []InUseReport{{Cluster: "prod", Namespace: "a", Workload: "web", ContainerID: "1", Image: img, ObservedAt: now.Add(-2 * time.Hour)}}))
	require.NoError(t, db.Close())

	db = openQueueDB(t, dir) // durable
	defer db.Close()
	s = NewInUse(db)
	st, err := s.Stats(ctx, img, now)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Count, "distinct containers seen within the last 24 h (24 h ago excluded)")
	assert.Equal(t, now.Add(-time.Hour), *st.LastInUseAt)

	all, err := s.AllStats(ctx, now)
	require.NoError(t, err)
	assert.Len(t, all, 2)
	assert.Equal(t, 1, all[other].Count)

	cl, err := s.Clusters(ctx, img, now)
	require.NoError(t, err)
	require.Len(t, cl, 2)
	assert.Equal(t, ClusterUse{Cluster: "prod", LastSeen: now.Add(-time.Hour), Running: 2, Stopped: 1,
		Workloads: []WorkloadUse{{Namespace: "a", Workload: "web", LastSeen: now.Add(-time.Hour)}}}, cl[0])
	assert.Equal(t, "dev", cl[1].Cluster)

	n, err := s.Prune(ctx, now.Add(-50*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	cl, err = s.Clusters(ctx, img, now)
	require.NoError(t, err)
	assert.Len(t, cl, 1)

	none, err := s.Stats(ctx, digest.FromString("never"), now)
	require.NoError(t, err)
	assert.Equal(t, InUseStats{}, none)
	assert.Error(t, s.Put(ctx, []InUseReport{{Cluster: "c"}}), "image and observedAt required")
}

func TestSettingsSeedOnceAndCoverageUpdate(t *testing.T) {
	ctx := context.Background()
	db := openQueueDB(t, t.TempDir())
	defer db.Close()
	s := NewSettings(db)
	_, err := s.Scanning(ctx)
	assert.ErrorIs(t, err, ErrNotFound)
	c, seeded, err := s.SeedScanning(ctx, ScanningConfiguration{ScanType: "ENHANCED"})
	require.NoError(t, err)
	assert.True(t, seeded)
	assert.Equal(t, int64(1), c.Generation)
	c, seeded, err = s.SeedScanning(ctx, ScanningConfiguration{ScanType: "BASIC"})
	require.NoError(t, err)
	assert.False(t, seeded)
	assert.Equal(t, "ENHANCED", c.ScanType)
	c.RescanDuration = "LIFETIME"
	c, err = s.PutScanning(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, int64(2), c.Generation)
	got, err := s.Scanning(ctx)
	require.NoError(t, err)
	assert.Equal(t, "LIFETIME", got.RescanDuration)

	cs := NewCoverages(db)
	d := digest.FromString("x")
	_, err = cs.Get(ctx, d)
	assert.ErrorIs(t, err, ErrNotFound)
	out, err := cs.Update(ctx, d, func(c *Coverage, exists bool) (bool, error) {
		assert.False(t, exists)
		c.StatusCode = StatusActive
		return true, nil
	})
	require.NoError(t, err)
	assert.Equal(t, d, out.Image)
	_, err = cs.Update(ctx, d, func(c *Coverage, exists bool) (bool, error) {
		assert.True(t, exists)
		c.StatusCode = StatusInactive
		return false, nil // not written
	})
	require.NoError(t, err)
	got2, err := cs.Get(ctx, d)
	require.NoError(t, err)
	assert.Equal(t, StatusActive, got2.StatusCode)
	require.NoError(t, cs.Delete(ctx, d))
	all, err := cs.All(ctx)
	require.NoError(t, err)
	assert.Empty(t, all)
}
