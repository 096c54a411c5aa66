package index

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var qt0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func openQueueDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	return db
}

func TestQueueOrderAndCoalescing(t *testing.T) {
	ctx := context.Background()
	db := openQueueDB(t, t.TempDir())
	defer db.Close()
	q := NewQueue(db)

	c, err := q.Enqueue(ctx, Job{ID: "b", Triggers: []string{"push"}, Due: qt0.Add(2 * time.Second)})
	require.NoError(t, err)
	assert.False(t, c)
	_, err = q.Enqueue(ctx, Job{ID: "a", Triggers: []string{"push"}, Due: qt0.Add(3 * time.Second)})
	require.NoError(t, err)
	// Coalesce into a: triggers united, earlier due wins.
	c, err = q.Enqueue(ctx, Job{ID: "a", Triggers: []string{"delta", "push"}, Due: qt0.Add(time.Second)})
	require.NoError(t, err)
	assert.True(t, c)
	n, err := q.Len(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "same ID coalesces")

	j, next, err := q.Lease(ctx, qt0, time.Minute)
	require.NoError(t, err)
	assert.Nil(t, j, "nothing due yet")
	assert.Equal(t, qt0.Add(time.Second), next)

	j, _, err = q.Lease(ctx, qt0.Add(5*time.Second), time.Minute)
	require.NoError(t, err)
	require.NotNil(t, j)
	assert.Equal(t, "a", j.ID)
	assert.Equal(t, []string{"delta", "push"}, j.Triggers)
	j2, _, err := q.Lease(ctx, qt0.Add(5*time.Second), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "b", j2.ID)
	j3, _, err := q.Lease(ctx, qt0.Add(5*time.Second), time.Minute)
	require.NoError(t, err)
	assert.Nil(t, j3, "leased jobs are not handed out twice")

	// Enqueued while leased: runs again after the ack with the new trigger.
	_, err = q.Enqueue(ctx, Job{ID: "a", Triggers: []string{"manual"}, Due: qt0.Add(6 * time.Second)})
	require.NoError(t, err)
	require.NoError(t, q.Ack(ctx, j, qt0.Add(7*time.Second)))
	again, err := q.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, []string{"manual"}, again.Triggers)
	assert.False(t, again.Leased)
	assert.Equal(t, qt0.Add(7*time.Second), again.Due)

	require.NoError(t, q.Ack(ctx, j2, qt0.Add(7*time.Second)))
	_, err = q.Get(ctx, "b")
	assert.ErrorIs(t, err, ErrNotFound, "acked job is gone")

	// The lease expires: the job is due again and a stale ack is refused.
	j4, _, err := q.Lease(ctx, qt0.Add(8*time.Second), time.Minute)
	require.NoError(t, err)
	j5, _, err := q.Lease(ctx, qt0.Add(8*time.Second+time.Minute), time.Minute)
	require.NoError(t, err)
	require.NotNil(t, j5)
	assert.Equal(t, j4.ID, j5.ID)
	assert.ErrorIs(t, q.Ack(ctx, j4, qt0), ErrLeaseLost)
	require.NoError(t, q.Ack(ctx, j5, qt0))
	n, err = q.Len(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestQueueRetryAndRemove(t *testing.T) {
	ctx := context.Background()
	db := openQueueDB(t, t.TempDir())
	defer db.Close()
	q := NewQueue(db)
	_, err := q.Enqueue(ctx, Job{ID: "x", Triggers: []string{"push"}, Due: qt0})
	require.NoError(t, err)
	j, _, err := q.Lease(ctx, qt0, time.Hour)
	require.NoError(t, err)
	require.NoError(t, q.Retry(ctx, j, qt0.Add(30*time.Second), "upstream 503"))
	got, err := q.Get(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, 1, got.Attempts)
	assert.Equal(t, "upstream 503", got.LastError)
	assert.Equal(t, qt0.Add(30*time.Second), got.Due)
	j, _, err = q.Lease(ctx, qt0.Add(29*time.Second), time.Hour)
	require.NoError(t, err)
	assert.Nil(t, j, "not before the backoff")
	j, _, err = q.Lease(ctx, qt0.Add(30*time.Second), time.Hour)
	require.NoError(t, err)
	require.NotNil(t, j)
	assert.Equal(t, 1, j.Attempts)

	require.NoError(t, q.Remove(ctx, "x"))
	require.NoError(t, q.Ack(ctx, j, qt0), "ack after remove is a no-op")
	n, err := q.Len(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestQueueRecoverAfterReopen leaves leases behind as a killed process does,
// re-opens the directory and checks every job comes back exactly once.
func TestQueueRecoverAfterReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openQueueDB(t, dir)
	q := NewQueue(db)
	for i := range 10 {
		_, err := q.Enqueue(ctx, Job{ID: fmt.Sprint("job", i), Triggers: []string{"push"}, Due: qt0})
		require.NoError(t, err)
	}
	for range 4 {
		j, _, err := q.Lease(ctx, qt0, 24*time.Hour)
		require.NoError(t, err)
		require.NotNil(t, j)
	}
	// One leased job was re-enqueued meanwhile.
	_, err := q.Enqueue(ctx, Job{ID: "job0", Triggers: []string{"delta"}, Due: qt0})
	require.NoError(t, err)
	require.NoError(t, db.Close())

	db = openQueueDB(t, dir)
	defer db.Close()
	q = NewQueue(db)
	n, err := q.Recover(ctx, qt0.Add(time.Second))
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	seen := map[string]int{}
	for {
		j, _, err := q.Lease(ctx, qt0.Add(time.Second), time.Hour)
		require.NoError(t, err)
		if j == nil {
			break
		}
		seen[j.ID]++
		if j.ID == "job0" {
			assert.Equal(t, []string{"delta", "push"}, j.Triggers)
		}
		require.NoError(t, q.Ack(ctx, j, qt0))
	}
	assert.Len(t, seen, 10)
	for id, c := range seen {
		assert.Equal(t, 1, c, id)
	}
}

// TestQueueConcurrentLease: many workers leasing at once hand each job out once.
func TestQueueConcurrentLease(t *testing.T) {
	ctx := context.Background()
	db := openQueueDB(t, t.TempDir())
	defer db.Close()
	q := NewQueue(db)
	const jobs = 200
	for i := range jobs {
		_, err := q.Enqueue(ctx, Job{ID: fmt.Sprintf("j%03d", i), Triggers: []string{"push"}, Due: qt0})
		require.NoError(t, err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, _, err := q.Lease(ctx, qt0, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if j == nil {
					return
				}
				mu.Lock()
				seen[j.ID]++
				mu.Unlock()
				if err := q.Ack(ctx, j, qt0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, jobs)
	for id, c := range seen {
		assert.Equal(t, 1, c, id)
	}
}

func BenchmarkQueueEnqueueLeaseAck(b *testing.B) {
	ctx := context.Background()
	db := openQueueDB(b, b.TempDir())
	defer db.Close()
	q := NewQueue(db)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := q.Enqueue(ctx, Job{ID: fmt.Sprint("sha256:", i), Triggers: []string{"push"}, Due: qt0}); err != nil {
			b.Fatal(err)
		}
	}
	for {
		j, _, err := q.Lease(ctx, qt0, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if j == nil {
			break
		}
		if err := q.Ack(ctx, j, qt0); err != nil {
			b.Fatal(err)
		}
	}
}
