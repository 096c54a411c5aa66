package index

import (
	"context"
	"errors"
	"fmt"
	"sort"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// Package → image index.
//
//	pix/<ecosystem>/<name>/<manifest-digest>  []scan.Package: the image's packages filed under that key
//	pxr/<manifest-digest>                     []match.PackageKey: the keys written for the image (to replace them)
//
// Keys are match.LookupKey's: OS packages of source-keyed distributions
// under their source package, OS-managed language packages not at all,
// names normalised (match.NormalizeName: PyPI per PEP 503, NuGet and
// Packagist lowercased). Images indexed before names were normalised keep
// their keys as found until they are re-indexed: a rescan, or a full
// re-match (`tollgate db rematch`, Rematcher.All), which re-indexes them. The
// values carry the packages themselves, so a delta re-match needs no
// inventory read for the packages it concerns.
const pfxPkgIndexRev = "pxr/"

// PkgIndex maps (ecosystem, package name) to the images containing it.
type PkgIndex struct{ db *DB }

// NewPkgIndex returns the package index of db.
func NewPkgIndex(db *DB) *PkgIndex { return &PkgIndex{db: db} }

func pixPrefix(k match.PackageKey) []byte {
	return append(key(pfxPkgIndex, esc(k.Ecosystem), esc(k.Name)), '/')
}

// IndexImage (re)indexes inv.Image from its merged inventory, replacing any
// previous entries of the image. Call it whenever an inventory is stored.
func (x *PkgIndex) IndexImage(ctx context.Context, inv *scan.Inventory) error {
	groups := map[match.PackageKey][]scan.Package{}
	for i := range inv.Packages {
		p := inv.Packages[i]
		k, _, ok := match.LookupKey(&p)
		if !ok {
			continue
		}
		p.Licenses = nil
		groups[k] = append(groups[k], p)
	}
	keys := make([]match.PackageKey, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	img := inv.Image.String()
	return updateChunked(x.db, func(txn *badger.Txn, step int) (bool, error) {
		if step == 0 {
			if err := removeImageTxn(txn, img); err != nil {
				return false, err
			}
			return false, setJSON(txn, key(pfxPkgIndexRev, img), keys)
		}
		i := step - 1
		if i >= len(keys) {
			return true, ctx.Err()
		}
		return false, setJSON(txn, append(pixPrefix(keys[i]), img...), groups[keys[i]])
	})
}

// RemoveImage drops the image from the index (image deleted).
func (x *PkgIndex) RemoveImage(ctx context.Context, image digest.Digest) error {
	return x.db.update(func(txn *badger.Txn) error { return removeImageTxn(txn, image.String()) })
}

func removeImageTxn(txn *badger.Txn, img string) error {
	var keys []match.PackageKey
	err := getJSON(txn, key(pfxPkgIndexRev, img), &keys)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := txn.Delete(append(pixPrefix(k), img...)); err != nil {
			return err
		}
	}
	return txn.Delete(key(pfxPkgIndexRev, img))
}

// ImagesFor lists the images containing a package filed under
// (ecosystem, name), in digest order.
func (x *PkgIndex) ImagesFor(ctx context.Context, ecosystem, name string) ([]digest.Digest, error) {
	var out []digest.Digest
	p := pixPrefix(match.PackageKey{Ecosystem: ecosystem, Name: name})
	err := x.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, p, true, func(it *badger.Item) error {
			out = append(out, digest.Digest(it.Key()[len(p):]))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("index: images for %s/%s: %w", ecosystem, name, err)
	}
	return out, ctx.Err()
}

// Instances calls fn for each image containing a package filed under k,
// with the image's packages under that key, in digest order.
func (x *PkgIndex) Instances(ctx context.Context, k match.PackageKey, fn func(image digest.Digest, pkgs []scan.Package) error) error {
	p := pixPrefix(k)
	return x.db.bdb.View(func(txn *badger.Txn) error {
		// Values are small and read in order: lazy reads beat prefetch goroutines.
		return scanPrefix(txn, p, true, func(it *badger.Item) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var pkgs []scan.Package
			if err := it.Value(func(b []byte) error { return decode(b, &pkgs) }); err != nil {
				return err
			}
			return fn(digest.Digest(it.Key()[len(p):]), pkgs)
		})
	})
}

// Images lists every indexed image, in digest order.
func (x *PkgIndex) Images(ctx context.Context) ([]digest.Digest, error) {
	var out []digest.Digest
	err := x.db.bdb.View(func(txn *badger.Txn) error {
		return scanPrefix(txn, []byte(pfxPkgIndexRev), true, func(it *badger.Item) error {
			out = append(out, digest.Digest(it.Key()[len(pfxPkgIndexRev):]))
			return nil
		})
	})
	return out, err
}

// updateChunked runs step(txn, 0), step(txn, 1), ... until it reports done,
// committing and opening a new transaction whenever Badger's transaction
// size limit is reached (ErrTxnTooBig), so large writes succeed; a step is
// never split. Atomic when everything fits one transaction.
func updateChunked(db *DB, step func(txn *badger.Txn, i int) (done bool, err error)) error {
	i := 0
	for {
		if err := db.space.check(); err != nil {
			return err
		}
		txn := db.bdb.NewTransaction(true)
		start := i
		for {
			done, err := step(txn, i)
			if errors.Is(err, badger.ErrTxnTooBig) && i > start {
				break // commit what we have; retry step i in a fresh txn
			}
			if err != nil {
				txn.Discard()
				return err
			}
			if done {
				err := txn.Commit()
				return err
			}
			i++
		}
		if err := txn.Commit(); err != nil {
			return err
		}
	}
}

// Inventory rebuilds the matchable part of image's inventory from the index
// (every package LookupKey files, in key order); ErrNotFound when the image
// is not indexed. A full re-match uses it: no blob and no layer inventory is
// read.
func (x *PkgIndex) Inventory(ctx context.Context, image digest.Digest) (*scan.Inventory, error) {
	inv, _, err := x.inventory(ctx, image)
	return inv, err
}

// inventory is Inventory; stale reports that some of the image's keys are
// not normalised (indexed before match.NormalizeName), so the image must be
// re-indexed for delta re-matches to find it.
func (x *PkgIndex) inventory(ctx context.Context, image digest.Digest) (inv *scan.Inventory, stale bool, err error) {
	inv = &scan.Inventory{Image: image}
	img := image.String()
	err = x.db.bdb.View(func(txn *badger.Txn) error {
		var keys []match.PackageKey
		if err := getJSON(txn, key(pfxPkgIndexRev, img), &keys); err != nil {
			return err
		}
		for _, k := range keys {
			var pkgs []scan.Package
			if err := getJSON(txn, append(pixPrefix(k), img...), &pkgs); err != nil {
				return err
			}
			stale = stale || k != match.NormalizeKey(k)
			inv.Packages = append(inv.Packages, pkgs...)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, false, fmt.Errorf("index: indexed inventory of %s: %w", image, err)
	}
	return inv, stale, nil
}

// IndexNewImages indexes many images that are not indexed yet with write
// batches (bulk loads and rebuilds: no per-image transaction). Indexing an
// image already present leaves stale keys; use IndexImage for those.
func (x *PkgIndex) IndexNewImages(ctx context.Context, invs []*scan.Inventory) error {
	wb := x.db.newWriteBatch()
	defer wb.Cancel()
	for _, inv := range invs {
		if err := ctx.Err(); err != nil {
			return err
		}
		groups := map[match.PackageKey][]scan.Package{}
		var keys []match.PackageKey
		for i := range inv.Packages {
			p := inv.Packages[i]
			k, _, ok := match.LookupKey(&p)
			if !ok {
				continue
			}
			if _, seen := groups[k]; !seen {
				keys = append(keys, k)
			}
			p.Licenses = nil
			groups[k] = append(groups[k], p)
		}
		img := inv.Image.String()
		b, err := encode(keys)
		if err != nil {
			return err
		}
		if err := wb.Set(key(pfxPkgIndexRev, img), b); err != nil {
			return err
		}
		for _, k := range keys {
			b, err := encode(groups[k])
			if err != nil {
				return err
			}
			if err := wb.Set(append(pixPrefix(k), img...), b); err != nil {
				return err
			}
		}
	}
	return wb.Flush()
}
