package index

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
)

func openOutbox(t *testing.T, dir string) (*DB, *Outbox) {
	t.Helper()
	db, err := Open(dir, Options{})
	require.NoError(t, err)
	ob, err := NewOutbox(db)
	require.NoError(t, err)
	return db, ob
}

func closeOutbox(t *testing.T, db *DB, ob *Outbox) {
	t.Helper()
	require.NoError(t, ob.Close())
	require.NoError(t, db.Close())
}

func msg(id string) OutboxMessage {
	return OutboxMessage{ID: id, Type: "test", Payload: []byte(`{"id":"` + id + `"}`)}
}

func TestOutboxAddDedupAndOrder(t *testing.T) {
	ctx := context.Background()
	db, ob := openOutbox(t, t.TempDir())
	defer closeOutbox(t, db, ob)

	require.NoError(t, ob.Add(ctx, msg("a"), msg("b")))
	require.NoError(t, ob.Add(ctx, msg("a"), msg("c"), msg("c")))
	require.Error(t, ob.Add(ctx, OutboxMessage{Payload: []byte("{}")}))

	got, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	var ids []string
	for i, e := range got {
		ids = append(ids, e.ID)
		if i > 0 {
			require.Greater(t, e.Seq, got[i-1].Seq, "seq order")
		}
		require.JSONEq(t, `{"id":"`+e.ID+`"}`, string(e.Payload))
	}
	require.Equal(t, []string{"a", "b", "c"}, ids)

	page, err := ob.Pending(ctx, got[0].Seq, 1)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, "b", page[0].ID)
}

func TestOutboxAddTxnCommitsWithCaller(t *testing.T) {
	ctx := context.Background()
	db, ob := openOutbox(t, t.TempDir())
	defer closeOutbox(t, db, ob)

	// A failed caller transaction stores neither its state nor its event.
	boom := errors.New("boom")
	err := db.Badger().Update(func(txn *badger.Txn) error {
		require.NoError(t, txn.Set([]byte("cfg/x"), []byte("1")))
		require.NoError(t, ob.AddTxn(txn, msg("lost")))
		return boom
	})
	require.ErrorIs(t, err, boom)
	got, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Empty(t, got)

	require.NoError(t, db.Badger().Update(func(txn *badger.Txn) error {
		require.NoError(t, txn.Set([]byte("cfg/x"), []byte("1")))
		return ob.AddTxn(txn, msg("kept"))
	}))
	got, err = ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "kept", got[0].ID)
}

func TestOutboxRecordMovesToDoneAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, ob := openOutbox(t, dir)
	require.NoError(t, ob.Add(ctx, msg("e1"), msg("e2")))
	pend, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, pend, 2)
	targets := []string{"t1", "t2"}
	now := time.Now().UTC()
	next := now.Add(time.Hour)

	// t1 delivered, t2 failed once: still pending, state kept per target.
	require.NoError(t, ob.Record(ctx, pend[0].Seq, "t1", Delivery{Attempts: 1, DeliveredAt: &now}, targets))
	require.NoError(t, ob.Record(ctx, pend[0].Seq, "t2", Delivery{Attempts: 1, LastStatus: 500, NextAttemptAt: &next}, targets))
	closeOutbox(t, db, ob)

	db, ob = openOutbox(t, dir)
	defer closeOutbox(t, db, ob)
	e, err := ob.Get(ctx, pend[0].Seq)
	require.NoError(t, err)
	require.Nil(t, e.DoneAt)
	require.True(t, e.Targets["t1"].Finished())
	require.False(t, e.Targets["t2"].Due(now), "backoff not elapsed")
	require.True(t, e.Targets["t2"].Due(next))

	require.NoError(t, ob.Add(ctx, msg("e3")))
	pend2, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, pend2, 3)
	require.Greater(t, pend2[2].Seq, pend[1].Seq, "seq keeps growing after reopen")

	require.NoError(t, ob.Record(ctx, pend[0].Seq, "t2", Delivery{Attempts: 5, GaveUp: true}, targets))
	pend3, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, pend3, 2)
	done, err := ob.Done(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, done, 1)
	require.NotNil(t, done[0].DoneAt)

	// Recording on a done entry changes nothing; a done id still dedups.
	require.NoError(t, ob.Record(ctx, pend[0].Seq, "t2", Delivery{}, targets))
	require.NoError(t, ob.Add(ctx, msg("e1")))
	pend4, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, pend4, 2)

	// Prune drops done entries older than the cutoff and frees their ids.
	n, err := ob.Prune(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = ob.Prune(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = ob.Get(ctx, pend[0].Seq)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestOutboxConcurrentRecord(t *testing.T) {
	ctx := context.Background()
	db, ob := openOutbox(t, t.TempDir())
	defer closeOutbox(t, db, ob)
	require.NoError(t, ob.Add(ctx, msg("x")))
	pend, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	var targets []string
	for i := range 8 {
		targets = append(targets, fmt.Sprintf("t%d", i))
	}
	now := time.Now()
	var wg sync.WaitGroup
	for _, tg := range targets {
		wg.Go(func() {
			require.NoError(t, ob.Record(ctx, pend[0].Seq, tg, Delivery{Attempts: 1, DeliveredAt: &now}, targets))
		})
	}
	wg.Wait()
	e, err := ob.Get(ctx, pend[0].Seq)
	require.NoError(t, err)
	require.Len(t, e.Targets, len(targets), "no lost update")
	require.NotNil(t, e.DoneAt)
}

func TestOutboxCursor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, ob := openOutbox(t, dir)
	c, err := ob.Cursor(ctx, "coverage")
	require.NoError(t, err)
	require.True(t, c.IsZero())
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	require.NoError(t, db.Badger().Update(func(txn *badger.Txn) error {
		if err := ob.AddTxn(txn, msg("with-cursor")); err != nil {
			return err
		}
		return ob.SetCursorTxn(txn, "coverage", at)
	}))
	closeOutbox(t, db, ob)
	db, ob = openOutbox(t, dir)
	defer closeOutbox(t, db, ob)
	c, err = ob.Cursor(ctx, "coverage")
	require.NoError(t, err)
	require.True(t, at.Equal(c))
	pend, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, pend, 1, "cursor keys are not outbox entries")
}
