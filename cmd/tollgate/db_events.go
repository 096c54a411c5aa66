package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/events"
)

// rematchAnnouncer publishes the "Inspector2 Finding" events (CREATED,
// UPDATED, CLOSED; docs/events.md) of the re-matches `tollgate db update`,
// `db import` and `db rematch` run on a stopped server's index: into the
// durable outbox, which the next `tollgate serve` delivers to the webhooks.
// The events are those a scan would publish for the same changes (same
// ids, one per repository holding the image). Without webhooks configured
// there is none (nothing is written to the outbox). The outbox is opened
// at the first change; release it with Close before closing the index.
type rematchAnnouncer struct {
	db      *index.DB
	records *index.Records
	builder events.Builder

	mu  sync.Mutex
	ob  *index.Outbox
	pub *events.Publisher
}

// newRematchAnnouncer returns nil when c configures no webhook.
func newRematchAnnouncer(c config.Config, db *index.DB) *rematchAnnouncer {
	if len(c.Admin.Webhooks) == 0 {
		return nil
	}
	return &rematchAnnouncer{db: db, records: index.NewRecords(db, index.RecordsOptions{}),
		builder: events.Builder{Region: c.Admin.Region}}
}

// OnChange is index.Rematcher.OnChange: it publishes rr's finding changes
// for image in every repository holding it (not deleted), with that
// repository's tags. An image without a record (never pushed or pulled
// through the proxy) has no repository to announce in. Errors: the
// record's or the outbox's, wrapped.
func (a *rematchAnnouncer) OnChange(ctx context.Context, image digest.Digest, rr index.ReplaceResult) error {
	rec, err := a.records.Get(ctx, image)
	if errors.Is(err, index.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("announce finding changes of %s: %w", image, err)
	}
	var evs []events.Event
	for _, ri := range rec.Repos {
		if ri.Deleted {
			continue
		}
		e, err := a.builder.FindingChanges(ri.Repository, ri.Tags, rr)
		if err != nil {
			return fmt.Errorf("announce finding changes of %s: %w", image, err)
		}
		evs = append(evs, e...)
	}
	if len(evs) == 0 {
		return nil
	}
	pub, err := a.publisher()
	if err != nil {
		return err
	}
	return pub.Publish(ctx, evs...)
}

func (a *rematchAnnouncer) publisher() (*events.Publisher, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pub == nil {
		ob, err := index.NewOutbox(a.db)
		if err != nil {
			return nil, fmt.Errorf("announce finding changes: %w", err)
		}
		a.ob, a.pub = ob, events.NewPublisher(ob, nil)
	}
	return a.pub, nil
}

// Close releases the outbox if one was opened. A nil announcer is fine.
func (a *rematchAnnouncer) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ob == nil {
		return nil
	}
	err := a.ob.Close()
	a.ob, a.pub = nil, nil
	return err
}

// dbCommandIndex is the index a `tollgate db` command opened, with the
// announcer of its re-matches, released first by Close.
type dbCommandIndex struct {
	db  *index.DB
	ann *rematchAnnouncer
}

// Close releases the announcer's outbox, then closes the index.
func (d dbCommandIndex) Close() error {
	return errors.Join(d.ann.Close(), d.db.Close())
}
