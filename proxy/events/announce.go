package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// FindingLister lists an image's stored findings (every status).
// *index.FindingStore implements it.
type FindingLister interface {
	ForImage(ctx context.Context, image digest.Digest) ([]scan.Finding, error)
}

// Announcer turns a finished scan into events: "Inspector2 Finding" for each
// finding the scan created, updated or closed, and "Inspector2 Scan" after
// an image's initial scan. A nil *Announcer does nothing.
type Announcer struct {
	Publisher *Publisher
	Builder   Builder
	Findings  FindingLister
	// Tags returns the image's tags in repo for event details (optional).
	Tags func(ctx context.Context, repo string, image digest.Digest) []string
	// Now is the clock for the scan event time (default time.Now).
	Now func() time.Time
}

// Before snapshots image's findings before a scan, for ScanDone.
func (a *Announcer) Before(ctx context.Context, image digest.Digest) ([]scan.Finding, error) {
	if a == nil || a.Publisher == nil {
		return nil, nil
	}
	fs, err := a.Findings.ForImage(ctx, image)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return nil, fmt.Errorf("events: findings of %s: %w", image, err)
	}
	return fs, nil
}

// ScanDone publishes the events of a successful scan of image in repo,
// comparing the stored findings with before (from Before): created (new
// id, or reopened), updated (UpdatedAt moved), closed (now CLOSED). initial
// adds "Inspector2 Scan" with the ACTIVE counts by severity. All events are
// published in one outbox transaction.
func (a *Announcer) ScanDone(ctx context.Context, repo string, image digest.Digest, before []scan.Finding, initial bool) error {
	if a == nil || a.Publisher == nil {
		return nil
	}
	after, err := a.Findings.ForImage(ctx, image)
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return fmt.Errorf("events: findings of %s: %w", image, err)
	}
	var tags []string
	if a.Tags != nil {
		tags = a.Tags(ctx, repo, image)
	}
	prev := make(map[string]scan.Finding, len(before))
	for _, f := range before {
		prev[f.ID] = f
	}
	var evs []Event
	counts := map[scan.Severity]int{}
	for _, f := range after {
		if f.Status == scan.FindingActive {
			counts[f.Severity]++
		}
		old, seen := prev[f.ID]
		var change FindingChange
		switch {
		case f.Status == scan.FindingClosed:
			if seen && old.Status != scan.FindingClosed {
				change = FindingClosed
			}
		case !seen || old.Status == scan.FindingClosed: // new, or reopened (as index.ReplaceResult.Created)
			change = FindingCreated
		case !old.UpdatedAt.Equal(f.UpdatedAt):
			change = FindingUpdated
		}
		if change == "" {
			continue
		}
		ev, err := a.Builder.Finding(repo, tags, f, change)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if initial {
		now := time.Now
		if a.Now != nil {
			now = a.Now
		}
		ev, err := a.Builder.ScanComplete(repo, image, tags, counts, now())
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	return a.Publisher.Publish(ctx, evs...)
}

// FindingChanges builds the "Inspector2 Finding" events of one
// index.ReplaceResult (a scan's or a re-match's), for the image as seen in
// repo: Created → CREATED, Updated → UPDATED, Closed → CLOSED. Callers that
// know every repository of the image call it once per repository.
func (b Builder) FindingChanges(repo string, tags []string, res index.ReplaceResult) ([]Event, error) {
	var evs []Event
	for _, g := range []struct {
		fs     []scan.Finding
		change FindingChange
	}{{res.Created, FindingCreated}, {res.Updated, FindingUpdated}, {res.Closed, FindingClosed}} {
		for _, f := range g.fs {
			ev, err := b.Finding(repo, tags, f, g.change)
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
	}
	return evs, nil
}
