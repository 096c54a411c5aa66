package events

import (
	"context"
	"fmt"
	"sort"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// CoverageSource iterates stored coverage; *index.Coverages implements it.
type CoverageSource interface {
	Each(ctx context.Context, fn func(c *index.Coverage) error) error
}

// CoverageWatcher publishes "Inspector2 Coverage" for every coverage whose
// UpdatedAt moved past its cursor, one event per repository holding the
// image. The cursor is committed with the events (index.Outbox cursors), so
// a restart neither repeats nor skips changes. On its very first run it
// starts from now: existing coverage is not announced.
type CoverageWatcher struct {
	DB        *index.DB
	Outbox    *index.Outbox
	Publisher *Publisher
	Builder   Builder
	Coverages CoverageSource
	// Repos lists the repositories holding image (an image in none is skipped).
	Repos func(ctx context.Context, image digest.Digest) []string
	// Interval between polls (default 10s). Settle is how old a change must
	// be before it is announced (default 2s), so a write that took its
	// timestamp before a newer one committed is not skipped.
	Interval, Settle time.Duration
	Now              func() time.Time
	Logger           zerolog.Logger
}

const (
	coverageCursor     = "coverage"
	maxCoveragePerPoll = 500
)

// Run polls until ctx is done.
func (w *CoverageWatcher) Run(ctx context.Context) error {
	iv := w.Interval
	if iv <= 0 {
		iv = 10 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if _, err := w.Poll(ctx); err != nil && ctx.Err() == nil {
			w.Logger.Error().Err(err).Str("op", "events").Msg("coverage watch")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Poll announces the coverage changes since the cursor and returns how many
// events it published.
func (w *CoverageWatcher) Poll(ctx context.Context) (int, error) {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	settle := w.Settle
	if settle <= 0 {
		settle = 2 * time.Second
	}
	cursor, err := w.Outbox.Cursor(ctx, coverageCursor)
	if err != nil {
		return 0, err
	}
	upto := now().Add(-settle)
	if cursor.IsZero() {
		return 0, w.commit(nil, upto)
	}
	var changed []index.Coverage
	err = w.Coverages.Each(ctx, func(c *index.Coverage) error {
		if c.UpdatedAt.After(cursor) && !c.UpdatedAt.After(upto) {
			changed = append(changed, *c)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("events: coverage: %w", err)
	}
	if len(changed) == 0 {
		return 0, nil
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].UpdatedAt.Before(changed[j].UpdatedAt) })
	if len(changed) > maxCoveragePerPoll {
		// Bound the transaction; keep every change sharing the last timestamp.
		n := maxCoveragePerPoll
		for n < len(changed) && changed[n].UpdatedAt.Equal(changed[n-1].UpdatedAt) {
			n++
		}
		changed = changed[:n]
	}
	var evs []Event
	for _, c := range changed {
		for _, repo := range w.Repos(ctx, c.Image) {
			ev, err := w.Builder.Coverage(repo, c)
			if err != nil {
				return 0, err
			}
			evs = append(evs, ev)
		}
	}
	if err := w.commit(evs, changed[len(changed)-1].UpdatedAt); err != nil {
		return 0, err
	}
	w.Publisher.Wake()
	return len(evs), nil
}

// commit publishes evs and moves the cursor in one transaction.
func (w *CoverageWatcher) commit(evs []Event, cursor time.Time) error {
	err := w.DB.Badger().Update(func(txn *badger.Txn) error {
		if err := w.Publisher.PublishTxn(txn, evs...); err != nil {
			return err
		}
		return w.Outbox.SetCursorTxn(txn, coverageCursor, cursor)
	})
	if err != nil {
		return fmt.Errorf("events: coverage commit: %w", err)
	}
	return nil
}
