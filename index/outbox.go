package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Outbox keys (all under the out/ concern):
//
//	out/e/<seq>       pending entry (seq zero-padded to 20 digits, so key order is seq order)
//	out/d/<seq>       entry delivered to (or given up by) every target, kept until Prune
//	out/i/<event-id>  → seq, so publishing the same event id twice stores it once
//	out/seq           Badger Sequence lease for seq
//	out/c/<name>      a publisher's cursor (e.g. the coverage watcher's high-water mark)
const (
	pfxOutPending = pfxOutbox + "e/"
	pfxOutDone    = pfxOutbox + "d/"
	pfxOutID      = pfxOutbox + "i/"
	pfxOutCursor  = pfxOutbox + "c/"
	keyOutSeq     = pfxOutbox + "seq"
)

// OutboxMessage is one outgoing event as the publisher hands it over: an
// opaque, already-encoded payload (a CloudEvent) with its stable id.
type OutboxMessage struct {
	// ID is the event id; it is the deduplication key (a second Add with the
	// same id is a no-op) and what receivers use to drop redeliveries.
	ID string `json:"id"`
	// Type is the event type, for logs and listings only.
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// OutboxEntry is a stored message with its per-target delivery state.
type OutboxEntry struct {
	Seq uint64 `json:"seq"`
	OutboxMessage
	CreatedAt time.Time `json:"createdAt"`
	// Targets maps a delivery target id (a webhook) to its delivery state.
	// A target missing from the map has not been attempted yet.
	Targets map[string]Delivery `json:"targets,omitempty"`
	// DoneAt is set once every target has delivered or given up.
	DoneAt *time.Time `json:"doneAt,omitempty"`
}

// Delivery is the delivery state of one entry to one target.
type Delivery struct {
	Attempts      int        `json:"attempts"`
	LastAttemptAt *time.Time `json:"lastAttemptAt,omitempty"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"` // nil: due now
	LastStatus    int        `json:"lastStatus,omitempty"`    // HTTP status of the last attempt, 0 if none
	LastError     string     `json:"lastError,omitempty"`
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
	GaveUp        bool       `json:"gaveUp,omitempty"` // attempts exhausted
}

// Finished reports whether no further attempt will be made.
func (d Delivery) Finished() bool { return d.DeliveredAt != nil || d.GaveUp }

// Due reports whether an attempt is due at now.
func (d Delivery) Due(now time.Time) bool {
	return !d.Finished() && (d.NextAttemptAt == nil || !d.NextAttemptAt.After(now))
}

// Outbox is the durable event outbox: messages are stored before Add
// returns (or with the caller's transaction), and stay until a deliverer
// records every target's outcome. Safe for concurrent use.
type Outbox struct {
	db  *DB
	seq *badger.Sequence
	now func() time.Time
}

// NewOutbox opens the outbox on db. Release it with Close before closing db.
func NewOutbox(db *DB) (*Outbox, error) {
	seq, err := db.bdb.GetSequence([]byte(keyOutSeq), 64)
	if err != nil {
		return nil, fmt.Errorf("index: outbox sequence: %w", err)
	}
	return &Outbox{db: db, seq: seq, now: time.Now}, nil
}

// Close returns the unused part of the sequence lease.
func (o *Outbox) Close() error {
	if err := o.seq.Release(); err != nil {
		return fmt.Errorf("index: outbox release sequence: %w", err)
	}
	return nil
}

func seqKey(prefix string, seq uint64) []byte {
	return fmt.Appendf(nil, "%s%020d", prefix, seq)
}

// Add stores msgs in their own transaction, durably, before returning.
// Messages whose id is already stored are skipped.
func (o *Outbox) Add(ctx context.Context, msgs ...OutboxMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.update(func(txn *badger.Txn) error { return o.AddTxn(txn, msgs...) })
}

// AddTxn stores msgs within txn, so that a caller's state change and the
// events announcing it commit together (or not at all). Messages whose id is
// already stored are skipped. A discarded txn leaves a gap in seq, nothing else.
func (o *Outbox) AddTxn(txn *badger.Txn, msgs ...OutboxMessage) error {
	now := o.now().UTC()
	for _, m := range msgs {
		if m.ID == "" {
			return errors.New("index: outbox: message without id")
		}
		idKey := key(pfxOutID, m.ID)
		if _, err := txn.Get(idKey); err == nil {
			continue
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("index: outbox get id: %w", err)
		}
		seq, err := o.seq.Next()
		if err != nil {
			return fmt.Errorf("index: outbox next seq: %w", err)
		}
		// Badger sequences start at 0; keep 0 free so it can mean "none".
		seq++
		if err := txn.Set(idKey, []byte(strconv.FormatUint(seq, 10))); err != nil {
			return fmt.Errorf("index: outbox set id: %w", err)
		}
		e := OutboxEntry{Seq: seq, OutboxMessage: m, CreatedAt: now}
		if err := setJSON(txn, seqKey(pfxOutPending, seq), e); err != nil {
			return err
		}
	}
	return nil
}

// Pending returns up to limit (0: all) entries not yet finished, in seq order,
// starting after seq after.
func (o *Outbox) Pending(ctx context.Context, after uint64, limit int) ([]OutboxEntry, error) {
	return o.list(ctx, pfxOutPending, after, limit)
}

// Done returns up to limit (0: all) finished entries, in seq order, starting
// after seq after.
func (o *Outbox) Done(ctx context.Context, after uint64, limit int) ([]OutboxEntry, error) {
	return o.list(ctx, pfxOutDone, after, limit)
}

func (o *Outbox) list(ctx context.Context, prefix string, after uint64, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := o.db.bdb.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seqKey(prefix, after+1)); it.ValidForPrefix(opts.Prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e OutboxEntry
			if err := it.Item().Value(func(b []byte) error { return decode(b, &e) }); err != nil {
				return err
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: outbox list: %w", err)
	}
	return out, nil
}

// Get returns the entry with seq, pending or done; ErrNotFound when absent.
func (o *Outbox) Get(ctx context.Context, seq uint64) (*OutboxEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var e OutboxEntry
	err := o.db.bdb.View(func(txn *badger.Txn) error {
		err := getJSON(txn, seqKey(pfxOutPending, seq), &e)
		if errors.Is(err, ErrNotFound) {
			err = getJSON(txn, seqKey(pfxOutDone, seq), &e)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// Record stores target's delivery state d for pending entry seq. When every
// target in targets (the deliverer's current target ids) has finished, the
// entry moves to the done set. Recording on an entry that is already done,
// or gone, is a no-op.
func (o *Outbox) Record(ctx context.Context, seq uint64, target string, d Delivery, targets []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.update(func(txn *badger.Txn) error {
		pk := seqKey(pfxOutPending, seq)
		var e OutboxEntry
		if err := getJSON(txn, pk, &e); errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if e.Targets == nil {
			e.Targets = map[string]Delivery{}
		}
		e.Targets[target] = d
		finished := true
		for _, t := range targets {
			if !e.Targets[t].Finished() {
				finished = false
				break
			}
		}
		if !finished {
			return setJSON(txn, pk, e)
		}
		now := o.now().UTC()
		e.DoneAt = &now
		if err := txn.Delete(pk); err != nil {
			return fmt.Errorf("index: outbox delete pending: %w", err)
		}
		return setJSON(txn, seqKey(pfxOutDone, seq), e)
	})
}

// Prune deletes finished entries whose DoneAt is before cutoff, with their
// id index (so their ids could be published again). It returns how many went.
func (o *Outbox) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	done, err := o.Done(ctx, 0, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	wb := o.db.newWriteBatch()
	defer wb.Cancel()
	for _, e := range done {
		if e.DoneAt == nil || !e.DoneAt.Before(cutoff) {
			continue
		}
		if err := wb.Delete(seqKey(pfxOutDone, e.Seq)); err != nil {
			return 0, fmt.Errorf("index: outbox prune: %w", err)
		}
		if err := wb.Delete(key(pfxOutID, e.ID)); err != nil {
			return 0, fmt.Errorf("index: outbox prune: %w", err)
		}
		n++
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("index: outbox prune: %w", err)
	}
	return n, nil
}

// Cursor returns the time stored under name by SetCursorTxn, zero when none.
// Publishers that derive events from state (a watcher) keep their position
// here, committed with the events they published.
func (o *Outbox) Cursor(ctx context.Context, name string) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	err := o.db.bdb.View(func(txn *badger.Txn) error {
		err := getJSON(txn, key(pfxOutCursor, name), &t)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	return t, err
}

// SetCursorTxn stores t under name within txn.
func (o *Outbox) SetCursorTxn(txn *badger.Txn, name string, t time.Time) error {
	return setJSON(txn, key(pfxOutCursor, name), t.UTC())
}

// update runs fn in a read-write transaction, retrying on conflicts (several
// deliverer goroutines record on the same entry).
func (o *Outbox) update(fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := o.db.update(fn)
		if errors.Is(err, badger.ErrConflict) && attempt < 16 {
			continue
		}
		if err != nil {
			return fmt.Errorf("index: outbox: %w", err)
		}
		return nil
	}
}
