package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// The scan queue (DESIGN.md "every state change is durable before it is
// acknowledged"):
//
//	job/<due: 20-digit unix nanoseconds>/<id>  Job, ordered by due time
//	jid/<id>                                   → the job's current job/ key (coalescing index)
//
// A job is leased by moving it to due = now+lease with a lease token; Ack
// deletes it, Retry moves it to a later due time. A process that dies while
// holding leases leaves them in place; Recover (at start, when this process
// alone owns the directory) makes them due again. Jobs are at-least-once:
// the work they name must be idempotent.
const pfxJobID = "jid/"

// ErrLeaseLost is returned (wrapped) by Ack and Retry when the job's lease is
// no longer the caller's (it was recovered and leased again).
var ErrLeaseLost = errors.New("index: job lease lost")

// Job is one scan job. ID is the coalescing key (tollgate uses the image
// manifest digest): enqueueing an ID that is already queued merges into it.
type Job struct {
	ID         string        `json:"id"`
	Image      digest.Digest `json:"image"`
	Repository string        `json:"repository,omitempty"`
	// Parent is the image index that named Image, when the job came from one.
	Parent digest.Digest `json:"parent,omitempty"`
	// Triggers says why the job exists (push, pull, delta, manual, restore,
	// revival, backfill, retry), merged on coalescing, sorted.
	Triggers   []string  `json:"triggers"`
	Attempts   int       `json:"attempts"` // failed attempts so far
	EnqueuedAt time.Time `json:"enqueuedAt"`
	Due        time.Time `json:"due"`
	Leased     bool      `json:"leased,omitempty"`
	Lease      string    `json:"lease,omitempty"` // token of the current lease
	// Again is set when the job was enqueued while leased: Ack then requeues
	// it at once with the Pending triggers instead of deleting it.
	Again     bool     `json:"again,omitempty"`
	Pending   []string `json:"pending,omitempty"`
	LastError string   `json:"lastError,omitempty"`
}

// Queue is the durable scan queue.
type Queue struct{ db *DB }

// NewQueue returns the queue over db.
func NewQueue(db *DB) *Queue { return &Queue{db: db} }

func jobKey(due time.Time, id string) []byte {
	n := max(due.UnixNano(), 0)
	return key(pfxJob, fmt.Sprintf("%020d", n), id)
}

func jobIDKey(id string) []byte { return key(pfxJobID, id) }

// dueOf parses the due time from a job/ key.
func dueOf(k []byte) (time.Time, error) {
	rest := k[len(pfxJob):]
	i := bytes.IndexByte(rest, '/')
	if i < 0 {
		return time.Time{}, fmt.Errorf("index: bad job key %q", k)
	}
	n, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("index: bad job key %q: %w", k, err)
	}
	return time.Unix(0, n).UTC(), nil
}

// loadJob reads the job with id through the id index; ErrNotFound when absent.
func loadJob(txn *badger.Txn, id string) (*Job, []byte, error) {
	var k string
	if err := getJSON(txn, jobIDKey(id), &k); err != nil {
		return nil, nil, err
	}
	var j Job
	if err := getJSON(txn, []byte(k), &j); err != nil {
		return nil, nil, fmt.Errorf("index: job %s: dangling id index: %w", id, err)
	}
	return &j, []byte(k), nil
}

// storeJob writes j at its due key (deleting old when it differs) and points
// the id index at it.
func storeJob(txn *badger.Txn, j *Job, old []byte) error {
	k := jobKey(j.Due, j.ID)
	if old != nil && !bytes.Equal(old, k) {
		if err := txn.Delete(old); err != nil {
			return fmt.Errorf("index: delete %s: %w", old, err)
		}
	}
	if err := setJSON(txn, k, j); err != nil {
		return err
	}
	return setJSON(txn, jobIDKey(j.ID), string(k))
}

func deleteJob(txn *badger.Txn, id string, k []byte) error {
	if err := txn.Delete(k); err != nil {
		return fmt.Errorf("index: delete %s: %w", k, err)
	}
	if err := txn.Delete(jobIDKey(id)); err != nil {
		return fmt.Errorf("index: delete job id %s: %w", id, err)
	}
	return nil
}

func mergeTriggers(a, b []string) []string {
	out := slices.Clone(a)
	for _, t := range b {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// Enqueue stores j durably. When a job with j.ID is queued, j merges into it:
// triggers are united and the earlier due time wins; when that job is leased
// (running), it is marked to run again after its Ack. coalesced reports a
// merge. j.ID and j.Due must be set.
func (q *Queue) Enqueue(ctx context.Context, j Job) (coalesced bool, err error) {
	if j.ID == "" || j.Due.IsZero() {
		return false, errors.New("index: enqueue: job needs ID and Due")
	}
	j.Triggers = mergeTriggers(nil, j.Triggers)
	if j.EnqueuedAt.IsZero() {
		j.EnqueuedAt = j.Due
	}
	j.Leased, j.Lease, j.Again, j.Pending = false, "", false, nil
	err = updateRetry(ctx, q.db, func(txn *badger.Txn) error {
		coalesced = false
		old, k, err := loadJob(txn, j.ID)
		if errors.Is(err, ErrNotFound) {
			nj := j
			return storeJob(txn, &nj, nil)
		}
		if err != nil {
			return err
		}
		coalesced = true
		if old.Leased {
			old.Again = true
			old.Pending = mergeTriggers(old.Pending, j.Triggers)
			return storeJob(txn, old, k)
		}
		old.Triggers = mergeTriggers(old.Triggers, j.Triggers)
		if j.Due.Before(old.Due) {
			old.Due = j.Due
		}
		if old.Repository == "" {
			old.Repository = j.Repository
		}
		if old.Parent == "" {
			old.Parent = j.Parent
		}
		return storeJob(txn, old, k)
	})
	return coalesced, err
}

// Lease takes the first job due at or before now and leases it until
// now+leaseFor (it becomes due again then, if neither acked nor retried).
// With nothing due it returns a nil job and the next due time (zero when the
// queue is empty).
func (q *Queue) Lease(ctx context.Context, now time.Time, leaseFor time.Duration) (*Job, time.Time, error) {
	var (
		out  *Job
		next time.Time
	)
	token, err := newToken()
	if err != nil {
		return nil, time.Time{}, err
	}
	err = updateRetry(ctx, q.db, func(txn *badger.Txn) error {
		out, next = nil, time.Time{}
		var k []byte
		var j Job
		err := scanPrefix(txn, []byte(pfxJob), false, func(item *badger.Item) error {
			due, err := dueOf(item.Key())
			if err != nil {
				return err
			}
			if due.After(now) {
				next = due
				return errStop
			}
			k = item.KeyCopy(nil)
			if err := item.Value(func(b []byte) error { return decode(b, &j) }); err != nil {
				return err
			}
			return errStop
		})
		if err != nil || k == nil {
			return err
		}
		j.Leased, j.Lease, j.Due = true, token, now.Add(leaseFor)
		if err := storeJob(txn, &j, k); err != nil {
			return err
		}
		out = &j
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("index: lease job: %w", err)
	}
	return out, next, nil
}

func (q *Queue) leased(txn *badger.Txn, j *Job) (*Job, []byte, error) {
	cur, k, err := loadJob(txn, j.ID)
	if err != nil {
		return nil, nil, err
	}
	if !cur.Leased || cur.Lease != j.Lease {
		return nil, nil, fmt.Errorf("job %s: %w", j.ID, ErrLeaseLost)
	}
	return cur, k, nil
}

// Ack completes leased job j: it is deleted, or requeued due now with its
// pending triggers when it was enqueued again while running. A job removed
// meanwhile is no error; a lease taken over returns ErrLeaseLost.
func (q *Queue) Ack(ctx context.Context, j *Job, now time.Time) error {
	return updateRetry(ctx, q.db, func(txn *badger.Txn) error {
		cur, k, err := q.leased(txn, j)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !cur.Again {
			return deleteJob(txn, cur.ID, k)
		}
		cur.Triggers, cur.Pending, cur.Again = cur.Pending, nil, false
		cur.Leased, cur.Lease, cur.Attempts, cur.LastError = false, "", 0, ""
		cur.Due = now
		return storeJob(txn, cur, k)
	})
}

// Retry releases leased job j after a failed attempt: Attempts grows by one,
// the job becomes due at due, and lastErr is kept for operators.
func (q *Queue) Retry(ctx context.Context, j *Job, due time.Time, lastErr string) error {
	return updateRetry(ctx, q.db, func(txn *badger.Txn) error {
		cur, k, err := q.leased(txn, j)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		cur.Attempts++
		cur.LastError = lastErr
		cur.Leased, cur.Lease = false, ""
		if cur.Again {
			cur.Triggers, cur.Pending, cur.Again = mergeTriggers(cur.Triggers, cur.Pending), nil, false
		}
		cur.Due = due
		return storeJob(txn, cur, k)
	})
}

// Remove deletes the job with id, leased or not (no error when absent); the
// holder of a lease then finds its Ack a no-op.
func (q *Queue) Remove(ctx context.Context, id string) error {
	return updateRetry(ctx, q.db, func(txn *badger.Txn) error {
		_, k, err := loadJob(txn, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return deleteJob(txn, id, k)
	})
}

// Get returns the job with id; ErrNotFound (wrapped) when none is queued.
func (q *Queue) Get(ctx context.Context, id string) (*Job, error) {
	var j *Job
	err := q.db.bdb.View(func(txn *badger.Txn) error {
		var err error
		j, _, err = loadJob(txn, id)
		return err
	})
	return j, err
}

// Each calls fn for every queued job in due order (leased ones included).
func (q *Queue) Each(ctx context.Context, fn func(j *Job) error) error {
	return q.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxJob), false, func(item *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var j Job
			if err := item.Value(func(b []byte) error { return decode(b, &j) }); err != nil {
				return err
			}
			return fn(&j)
		})
	})
}

// Len returns the number of queued jobs, leased ones included.
func (q *Queue) Len(ctx context.Context) (int, error) {
	n := 0
	err := q.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxJobID), true, func(*badger.Item) error { n++; return nil })
	})
	return n, err
}

// Recover makes every leased job due at now and unleased. Call it once at
// start, before any worker leases: Badger's directory lock guarantees that
// leases found then belong to a dead process. It returns how many it freed.
func (q *Queue) Recover(ctx context.Context, now time.Time) (int, error) {
	var ids []string
	err := q.Each(ctx, func(j *Job) error {
		if j.Leased {
			ids = append(ids, j.ID)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		freed := false
		err := updateRetry(ctx, q.db, func(txn *badger.Txn) error {
			freed = false
			j, k, err := loadJob(txn, id)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil || !j.Leased {
				return err
			}
			if j.Again {
				j.Triggers, j.Pending, j.Again = mergeTriggers(j.Triggers, j.Pending), nil, false
			}
			j.Leased, j.Lease, j.Due = false, "", now
			freed = true
			return storeJob(txn, j, k)
		})
		if err != nil {
			return n, fmt.Errorf("index: recover job %s: %w", id, err)
		}
		if freed {
			n++
		}
	}
	return n, nil
}

func newToken() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("index: lease token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
