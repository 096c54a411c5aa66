package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// Get returns the record of manifest digest d; ErrNotFound (wrapped) if none.
func (r *Records) Get(ctx context.Context, d digest.Digest) (*ImageRecord, error) {
	var rec ImageRecord
	err := r.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, imageKey(d), &rec) })
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// Status returns the status of image d in repo (ImageActive or
// ImageArchived); ErrNotFound (wrapped) when unknown or deleted there.
func (r *Records) Status(ctx context.Context, repo string, d digest.Digest) (string, error) {
	rec, err := r.Get(ctx, d)
	if err != nil {
		return "", err
	}
	ri := rec.Repo(repo)
	if ri == nil || ri.Deleted {
		return "", fmt.Errorf("%s@%s: %w", repo, d, ErrNotFound)
	}
	return ri.Status, nil
}

// Tag returns the digest repo:tag points at; ErrNotFound (wrapped) if none.
func (r *Records) Tag(ctx context.Context, repo, tag string) (digest.Digest, error) {
	var tv tagValue
	err := r.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, tagKey(repo, tag), &tv) })
	return tv.Digest, err
}

// ListOptions pages through List.
type ListOptions struct {
	// Repository restricts the listing to images in that repository.
	Repository string
	// After is the page token: the last digest of the previous page.
	After digest.Digest
	// Limit is the page size (default 100, max 1000).
	Limit int
}

// List returns image records in digest order, a page at a time, and the
// token (the last digest) for the next page, empty at the end.
func (r *Records) List(ctx context.Context, o ListOptions) ([]ImageRecord, digest.Digest, error) {
	if o.Limit <= 0 {
		o.Limit = 100
	}
	o.Limit = min(o.Limit, 1000)
	var out []ImageRecord
	var next digest.Digest
	err := r.db.bdb.View(func(txn *badger.Txn) error {
		prefix := []byte(pfxImage)
		if o.Repository != "" {
			prefix = []byte(pfxRepoImage + o.Repository + "@")
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: o.Repository == "", PrefetchSize: 64})
		defer it.Close()
		start := prefix
		if o.After != "" {
			start = append(slices.Clone(prefix), o.After...)
		}
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			d := digest.Digest(it.Item().Key()[len(prefix):])
			if d == o.After {
				continue
			}
			if len(out) == o.Limit {
				next = out[len(out)-1].Digest
				return nil
			}
			var rec ImageRecord
			var err error
			if o.Repository == "" {
				err = it.Item().Value(func(b []byte) error { return decode(b, &rec) })
			} else {
				err = getJSON(txn, imageKey(d), &rec)
			}
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("index: list images: %w", err)
	}
	return out, next, nil
}

// ListRepositories returns every repository that has (or had) an image
// record, sorted.
func (r *Records) ListRepositories(ctx context.Context) ([]string, error) {
	var out []string
	err := r.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxRepoImage), true, func(item *badger.Item) error {
			k := string(item.Key()[len(pfxRepoImage):])
			repo, _, _ := strings.Cut(k, "@")
			if len(out) == 0 || out[len(out)-1] != repo {
				out = append(out, repo)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("index: list repositories: %w", err)
	}
	slices.Sort(out) // keys order "a/b@" before "a@"
	return out, nil
}

// TagHistory returns the moves of repo:tag, oldest first.
func (r *Records) TagHistory(ctx context.Context, repo, tag string) ([]TagChange, error) {
	prefix := key(pfxTagHist, repo, tag, "")
	var out []TagChange
	err := r.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, prefix, false, func(item *badger.Item) error {
			rest := item.Key()[len(prefix):]
			if len(rest) != 20 || strings.ContainsRune(string(rest), '/') {
				return nil // a longer repository or tag sharing the prefix
			}
			var tc TagChange
			if err := item.Value(func(b []byte) error { return decode(b, &tc) }); err != nil {
				return err
			}
			out = append(out, tc)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("index: tag history: %w", err)
	}
	return out, nil
}

// Image returns the record of d (admin.ImageSource); ErrNotFound (wrapped)
// if none.
func (r *Records) Image(ctx context.Context, d digest.Digest) (*ImageRecord, error) {
	return r.Get(ctx, d)
}

// EachImage calls fn for every image record in digest order; an error
// from fn stops the walk and is returned.
func (r *Records) EachImage(ctx context.Context, fn func(rec *ImageRecord) error) error {
	return r.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxImage), false, func(item *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec ImageRecord
			if err := item.Value(func(b []byte) error { return decode(b, &rec) }); err != nil {
				return err
			}
			return fn(&rec)
		})
	})
}
