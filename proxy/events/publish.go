package events

import (
	"context"
	"encoding/json"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/tollgate-registry/tollgate/index"
)

// Outbox is the part of index.Outbox a Publisher writes to.
type Outbox interface {
	Add(ctx context.Context, msgs ...index.OutboxMessage) error
	AddTxn(txn *badger.Txn, msgs ...index.OutboxMessage) error
}

// Publisher writes events to the durable outbox. A nil *Publisher discards
// events (no webhook configured), so callers need no nil checks.
type Publisher struct {
	ob   Outbox
	wake func()
}

// NewPublisher returns a publisher writing to ob. wake (may be nil) is called
// after each Publish, typically (*Deliverer).Wake, so delivery starts without
// waiting for the deliverer's poll.
func NewPublisher(ob Outbox, wake func()) *Publisher {
	return &Publisher{ob: ob, wake: wake}
}

// Publish stores evs durably, in one transaction, before returning. An event
// whose id is already in the outbox is stored once. Invalid events are an
// error and nothing is stored.
func (p *Publisher) Publish(ctx context.Context, evs ...Event) error {
	if p == nil || len(evs) == 0 {
		return nil
	}
	msgs, err := messages(evs)
	if err != nil {
		return err
	}
	if err := p.ob.Add(ctx, msgs...); err != nil {
		return fmt.Errorf("events: publish: %w", err)
	}
	if p.wake != nil {
		p.wake()
	}
	return nil
}

// PublishTxn stores evs within the caller's Badger transaction, so the state
// change and the events announcing it commit together. Delivery starts at the
// deliverer's next poll (or call Wake after the commit).
func (p *Publisher) PublishTxn(txn *badger.Txn, evs ...Event) error {
	if p == nil || len(evs) == 0 {
		return nil
	}
	msgs, err := messages(evs)
	if err != nil {
		return err
	}
	if err := p.ob.AddTxn(txn, msgs...); err != nil {
		return fmt.Errorf("events: publish: %w", err)
	}
	return nil
}

// Wake nudges the deliverer (after a PublishTxn commit).
func (p *Publisher) Wake() {
	if p != nil && p.wake != nil {
		p.wake()
	}
}

func messages(evs []Event) ([]index.OutboxMessage, error) {
	msgs := make([]index.OutboxMessage, 0, len(evs))
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("events: encode: %w", err)
		}
		msgs = append(msgs, index.OutboxMessage{ID: e.ID, Type: e.Type, Payload: b})
	}
	return msgs, nil
}
