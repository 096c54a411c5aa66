package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// Findings keyspace.
//
//	fnd/<manifest-digest>/<finding-id>  scan.Finding
//	fni/<finding-id>                    manifest digest (Get by id)
const pfxFindingByID = "fni/"

// FindingStore keeps each image's findings with their lifecycle: created
// ACTIVE, kept (FirstObservedAt unchanged) while rescans find them, CLOSED
// when a rescan no longer does, deleted some time after closing.
type FindingStore struct{ db *DB }

// NewFindingStore returns the findings store of db.
func NewFindingStore(db *DB) *FindingStore { return &FindingStore{db: db} }

// ReplaceResult says what a Replace changed.
type ReplaceResult struct {
	Created  []scan.Finding // new, or reopened after being CLOSED
	Updated  []scan.Finding // still found, content changed (severity, fix, ...)
	Closed   []scan.Finding // no longer found
	Observed int            // still found, unchanged
}

// Changed reports whether any finding was created, updated or closed.
func (r ReplaceResult) Changed() bool { return len(r.Created)+len(r.Updated)+len(r.Closed) > 0 }

// Replace makes found the image's current findings at now: new ids are
// created ACTIVE (FirstObservedAt = now), known ids keep FirstObservedAt and
// status (SUPPRESSED stays; CLOSED reopens as ACTIVE) and get LastObservedAt
// = now, and findings not in found are CLOSED (ClosedAt = now).
func (s *FindingStore) Replace(ctx context.Context, image digest.Digest, found []scan.Finding, now time.Time) (ReplaceResult, error) {
	return s.replace(ctx, image, nil, found, now)
}

// ReplaceFor is Replace limited to the findings of packages filed under
// keys (match.LookupKey): other findings of the image are left as they are.
// It is what a delta re-match uses.
func (s *FindingStore) ReplaceFor(ctx context.Context, image digest.Digest, keys []match.PackageKey, found []scan.Finding, now time.Time) (ReplaceResult, error) {
	if keys == nil {
		keys = []match.PackageKey{}
	}
	return s.replace(ctx, image, keys, found, now)
}

func (s *FindingStore) replace(ctx context.Context, image digest.Digest, keys []match.PackageKey, found []scan.Finding, now time.Time) (ReplaceResult, error) {
	rs, err := s.ReplaceMany(ctx, []ReplaceRequest{{Image: image, Keys: keys, Found: found}}, now)
	if err != nil {
		return ReplaceResult{}, err
	}
	return rs[0], nil
}

// ReplaceRequest is one image's part of a ReplaceMany: Keys nil replaces
// all the image's findings (Replace), non-nil only those of packages filed
// under Keys (ReplaceFor).
type ReplaceRequest struct {
	Image digest.Digest
	Keys  []match.PackageKey
	Found []scan.Finding
}

// ReplaceMany applies many Replace/ReplaceFor at once: the current findings
// are read in one transaction and the changes written in one write batch,
// which is what makes re-matching tens of thousands of images cheap. A
// concurrent writer to the same image between the read and the write is
// not detected (images are re-matched by one Rematcher at a time).
func (s *FindingStore) ReplaceMany(ctx context.Context, reqs []ReplaceRequest, now time.Time) ([]ReplaceResult, error) {
	now = now.UTC()
	out := make([]ReplaceResult, len(reqs))
	var writes []scan.Finding
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		// One iterator for all images: seeking is much cheaper than opening
		// an iterator per image.
		io := badger.DefaultIteratorOptions
		io.Prefix = []byte(pfxFinding)
		io.PrefetchValues = false // a seek would prefetch the next images' findings
		it := txn.NewIterator(io)
		defer it.Close()
		for i := range reqs {
			if err := ctx.Err(); err != nil {
				return err
			}
			w, err := planReplace(it, &reqs[i], now, &out[i])
			if err != nil {
				return fmt.Errorf("findings of %s: %w", reqs[i].Image, err)
			}
			writes = append(writes, w...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if err := s.putBatch(writes); err != nil {
		return nil, fmt.Errorf("index: write findings: %w", err)
	}
	return out, nil
}

func planReplace(it *badger.Iterator, req *ReplaceRequest, now time.Time, res *ReplaceResult) ([]scan.Finding, error) {
	image, keys := req.Image, req.Keys
	var writes []scan.Finding
	existing := map[string]scan.Finding{}
	pfx := key(pfxFinding, image.String(), "")
	for it.Seek(pfx); it.ValidForPrefix(pfx); it.Next() {
		var f scan.Finding
		if err := it.Item().Value(func(b []byte) error { return decode(b, &f) }); err != nil {
			return nil, err
		}
		if keys != nil {
			k, _, ok := match.LookupKey(&f.Package)
			if !ok || !slices.Contains(keys, k) {
				continue
			}
		}
		existing[f.ID] = f
	}
	seen := map[string]bool{}
	for _, f := range req.Found {
		if seen[f.ID] {
			continue
		}
		seen[f.ID] = true
		f.Image = image
		old, had := existing[f.ID]
		switch {
		case !had:
			f.Status, f.FirstObservedAt, f.LastObservedAt, f.UpdatedAt, f.ClosedAt = scan.FindingActive, now, now, now, nil
			res.Created = append(res.Created, f)
		case old.Status == scan.FindingClosed:
			f.Status, f.FirstObservedAt, f.LastObservedAt, f.UpdatedAt, f.ClosedAt = scan.FindingActive, old.FirstObservedAt, now, now, nil
			res.Created = append(res.Created, f)
		default:
			f.Status, f.FirstObservedAt, f.LastObservedAt, f.ClosedAt = old.Status, old.FirstObservedAt, now, nil
			f.UpdatedAt = old.UpdatedAt
			if !sameContent(old, f) {
				f.UpdatedAt = now
				res.Updated = append(res.Updated, f)
			} else {
				res.Observed++
			}
		}
		writes = append(writes, f)
	}
	for id, old := range existing {
		if seen[id] || old.Status == scan.FindingClosed {
			continue
		}
		t := now
		old.Status, old.ClosedAt, old.UpdatedAt = scan.FindingClosed, &t, now
		res.Closed = append(res.Closed, old)
		writes = append(writes, old)
	}
	return writes, nil
}

// putBatch writes findings (and their id index) with one write batch.
func (s *FindingStore) putBatch(fs []scan.Finding) error {
	if len(fs) == 0 {
		return nil
	}
	wb := s.db.newWriteBatch()
	defer wb.Cancel()
	for i := range fs {
		b, err := encode(fs[i])
		if err != nil {
			return err
		}
		img := fs[i].Image.String()
		if err := wb.Set(key(pfxFinding, img, fs[i].ID), b); err != nil {
			return err
		}
		if err := wb.Set(key(pfxFindingByID, fs[i].ID), []byte(img)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// sameContent compares what a rescan can change, ignoring times and status.
func sameContent(a, b scan.Finding) bool {
	return a.VulnerabilityID == b.VulnerabilityID && a.AdvisoryID == b.AdvisoryID &&
		a.Title == b.Title && a.Description == b.Description && a.Severity == b.Severity &&
		a.VendorSeverity == b.VendorSeverity && a.FixAvailable == b.FixAvailable &&
		a.SourceURL == b.SourceURL && slices.Equal(a.RelatedIDs, b.RelatedIDs) &&
		slices.Equal(a.FixedVersions, b.FixedVersions) && slices.Equal(a.CVSS, b.CVSS) &&
		slices.Equal(a.References, b.References) && samePackage(a.Package, b.Package)
}

// samePackage compares package identity (not licences or analyzer
// metadata, which the package index does not keep).
func samePackage(a, b scan.Package) bool {
	return a.Ecosystem == b.Ecosystem && a.Name == b.Name && a.Version == b.Version &&
		a.SourceName == b.SourceName && a.SourceVersion == b.SourceVersion && a.Path == b.Path &&
		a.Layer == b.Layer && a.PURL == b.PURL && a.Kind == b.Kind && a.OSManaged == b.OSManaged
}

// CloseAll closes every open finding of image at now (image deleted,
// archived or no longer eligible) and returns how many it closed.
func (s *FindingStore) CloseAll(ctx context.Context, image digest.Digest, now time.Time) (int, error) {
	res, err := s.replace(ctx, image, nil, nil, now)
	return len(res.Closed), err
}

// DeleteClosedBefore deletes every finding CLOSED before t and returns how
// many it deleted.
func (s *FindingStore) DeleteClosedBefore(ctx context.Context, t time.Time) (int, error) {
	var del []scan.Finding
	err := s.Each(ctx, func(f scan.Finding) error {
		if f.Status == scan.FindingClosed && f.ClosedAt != nil && f.ClosedAt.Before(t) {
			del = append(del, f)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = updateChunked(s.db, func(txn *badger.Txn, i int) (bool, error) {
		if i >= len(del) {
			return true, nil
		}
		if err := txn.Delete(key(pfxFinding, del[i].Image.String(), del[i].ID)); err != nil {
			return false, err
		}
		return false, txn.Delete(key(pfxFindingByID, del[i].ID))
	})
	return len(del), err
}

// ForImage returns the image's findings (every status), highest severity first.
func (s *FindingStore) ForImage(ctx context.Context, image digest.Digest) ([]scan.Finding, error) {
	var out []scan.Finding
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, key(pfxFinding, image.String(), ""), false, func(it *badger.Item) error {
			var f scan.Finding
			if err := it.Value(func(b []byte) error { return decode(b, &f) }); err != nil {
				return err
			}
			out = append(out, f)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("index: findings of %s: %w", image, err)
	}
	match.SortFindings(out)
	return out, ctx.Err()
}

// Get returns the finding with id; errors wrap ErrNotFound.
func (s *FindingStore) Get(ctx context.Context, id string) (scan.Finding, error) {
	var f scan.Finding
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key(pfxFindingByID, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("finding %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		img, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		return getJSON(txn, key(pfxFinding, string(img), id), &f)
	})
	return f, err
}

// Each calls fn for every stored finding, by image then id. Returning an
// error from fn stops and returns it.
func (s *FindingStore) Each(ctx context.Context, fn func(scan.Finding) error) error {
	return s.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxFinding), false, func(it *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var f scan.Finding
			if err := it.Value(func(b []byte) error { return decode(b, &f) }); err != nil {
				return err
			}
			return fn(f)
		})
	})
}

// Counts returns the number of ACTIVE findings of image by severity.
func (s *FindingStore) Counts(ctx context.Context, image digest.Digest) (map[scan.Severity]int, error) {
	fs, err := s.ForImage(ctx, image)
	if err != nil {
		return nil, err
	}
	out := map[scan.Severity]int{}
	for _, f := range fs {
		if f.Status == scan.FindingActive {
			out[f.Severity]++
		}
	}
	return out, nil
}

// SetStatus sets a finding's status to ACTIVE or SUPPRESSED (suppression
// rules) at now; errors wrap ErrNotFound.
func (s *FindingStore) SetStatus(ctx context.Context, id string, st scan.FindingStatus, now time.Time) error {
	if st != scan.FindingActive && st != scan.FindingSuppressed {
		return fmt.Errorf("index: finding status %q: want ACTIVE or SUPPRESSED", st)
	}
	f, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if f.Status == scan.FindingClosed {
		return nil
	}
	f.Status, f.UpdatedAt = st, now.UTC()
	return s.db.update(func(txn *badger.Txn) error {
		return setJSON(txn, key(pfxFinding, f.Image.String(), id), f)
	})
}
