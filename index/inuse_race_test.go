package index

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInUsePruneKeepsConcurrentFreshReports: a container reported again
// while Prune runs keeps its fresh report. Prune used to collect the old
// keys in one read transaction and delete them in a later write batch, so a
// fresh report stored in between was deleted with the old one it replaced.
func TestInUsePruneKeepsConcurrentFreshReports(t *testing.T) {
	ctx := context.Background()
	db := openQueueDB(t, t.TempDir())
	defer db.Close()
	s := NewInUse(db)
	img := digest.FromString("img")
	old, fresh := qt0, qt0.Add(200*24*time.Hour)
	const containers = 400
	report := func(i int, at time.Time) InUseReport {
		return InUseReport{Cluster: "prod", Workload: "web", ContainerID: fmt.Sprint(i), Image: img, ObservedAt: at}
	}
	for round := range 10 {
		olds := make([]InUseReport, containers)
		for i := range olds {
			olds[i] = report(i, old)
		}
		require.NoError(t, s.Put(ctx, olds))

		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() { // a sweep pruning reports older than old+1h
			defer wg.Done()
			<-start
			_, err := s.Prune(ctx, old.Add(time.Hour))
			assert.NoError(t, err)
		}()
		go func() { // agents reporting every container again, one by one
			defer wg.Done()
			<-start
			for i := range containers {
				if !assert.NoError(t, s.Put(ctx, []InUseReport{report(i, fresh)})) {
					return
				}
			}
		}()
		close(start)
		wg.Wait()

		st, err := s.Stats(ctx, img, fresh)
		require.NoError(t, err)
		require.Equal(t, containers, st.Count, "round %d: every fresh report survives the concurrent prune", round)

		// Age them again for the next round: prune everything, check empty.
		n, err := s.Prune(ctx, fresh.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, containers, n)
	}
}
