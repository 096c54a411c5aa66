package index

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// Coverages stores scan coverage per image manifest digest (key
// cov/<digest>), in Inspector's CoveredResource vocabulary. scan/lifecycle is
// its only writer.
type Coverages struct{ db *DB }

// NewCoverages returns the coverage store over db.
func NewCoverages(db *DB) *Coverages { return &Coverages{db: db} }

func coverageKey(d digest.Digest) []byte { return key(pfxCoverage, d.String()) }

// Get returns the coverage of image d; ErrNotFound (wrapped) when none.
func (s *Coverages) Get(ctx context.Context, d digest.Digest) (*Coverage, error) {
	var c Coverage
	err := s.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, coverageKey(d), &c) })
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Put stores c under c.Image.
func (s *Coverages) Put(ctx context.Context, c *Coverage) error {
	if c.Image == "" {
		return errors.New("index: coverage without image digest")
	}
	return updateRetry(ctx, s.db, func(txn *badger.Txn) error { return setJSON(txn, coverageKey(c.Image), c) })
}

// Update reads the coverage of d (a zero Coverage with Image set and
// exists=false when none), lets fn change it, and stores it when fn returns
// true, all in one transaction (retried on conflict, so fn may run more than
// once and must only change c). It returns the coverage as stored, or as read
// when fn returned false.
func (s *Coverages) Update(ctx context.Context, d digest.Digest, fn func(c *Coverage, exists bool) (bool, error)) (*Coverage, error) {
	var out Coverage
	err := updateRetry(ctx, s.db, func(txn *badger.Txn) error {
		out = Coverage{}
		exists := true
		err := getJSON(txn, coverageKey(d), &out)
		if errors.Is(err, ErrNotFound) {
			exists, out = false, Coverage{Image: d}
		} else if err != nil {
			return err
		}
		write, err := fn(&out, exists)
		if err != nil || !write {
			return err
		}
		out.Image = d
		return setJSON(txn, coverageKey(d), &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes the coverage of d (no error when absent).
func (s *Coverages) Delete(ctx context.Context, d digest.Digest) error {
	return updateRetry(ctx, s.db, func(txn *badger.Txn) error {
		if err := txn.Delete(coverageKey(d)); err != nil {
			return fmt.Errorf("index: delete coverage %s: %w", d, err)
		}
		return nil
	})
}

// Each calls fn for every stored coverage in digest order, from one
// consistent snapshot. fn may write through other methods.
func (s *Coverages) Each(ctx context.Context, fn func(c *Coverage) error) error {
	return s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxCoverage), false, func(item *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var c Coverage
			if err := item.Value(func(b []byte) error { return decode(b, &c) }); err != nil {
				return err
			}
			return fn(&c)
		})
	})
}

// All returns every stored coverage keyed by image digest.
func (s *Coverages) All(ctx context.Context) (map[digest.Digest]*Coverage, error) {
	out := make(map[digest.Digest]*Coverage)
	err := s.Each(ctx, func(c *Coverage) error { out[c.Image] = c; return nil })
	return out, err
}

// PutMany stores many coverages in one write batch (imports, benchmarks);
// it does not read, so it overwrites.
func (s *Coverages) PutMany(ctx context.Context, cs []*Coverage) error {
	wb := s.db.newWriteBatch()
	defer wb.Cancel()
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := encode(c)
		if err != nil {
			return err
		}
		if err := wb.Set(coverageKey(c.Image), b); err != nil {
			return fmt.Errorf("index: put coverage %s: %w", c.Image, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index: put coverages: %w", err)
	}
	return nil
}

// DeleteClosedOf deletes image's CLOSED findings (both the fnd/ entry and
// the fni/ id index, as DeleteClosedBefore does) and returns how many. The
// lifecycle calls it 3 days after an image became INACTIVE or ARCHIVED.
func (s *FindingStore) DeleteClosedOf(ctx context.Context, image digest.Digest) (int, error) {
	fs, err := s.ForImage(ctx, image)
	if err != nil {
		return 0, err
	}
	var del []string
	for _, f := range fs {
		if f.Status == scan.FindingClosed {
			del = append(del, f.ID)
		}
	}
	if len(del) == 0 {
		return 0, nil
	}
	err = updateRetry(ctx, s.db, func(txn *badger.Txn) error {
		for _, id := range del {
			if err := txn.Delete(key(pfxFinding, image.String(), id)); err != nil {
				return err
			}
			if err := txn.Delete(key(pfxFindingByID, id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("index: delete closed findings of %s: %w", image, err)
	}
	return len(del), nil
}
