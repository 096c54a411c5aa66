package index

import (
	"context"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// Inventories keys (owned by this file):
//
//	lay/<layer-digest>/<analyzers-version>  scan.LayerInventory
//	inv/<manifest-digest>                   scan.Inventory (merged, per image manifest)
//
// A layer is analysed once per (digest, analyzer-set version): bumping one
// analyzer's version changes the key, so only stale results are recomputed.
// Inventories implements scan.LayerCache. Safe for concurrent use.
type Inventories struct {
	db *DB
}

// NewInventories returns the inventory store over db.
func NewInventories(db *DB) *Inventories { return &Inventories{db: db} }

var _ scan.LayerCache = (*Inventories)(nil)

func layerKey(d digest.Digest, av string) []byte { return key(pfxLayer, d.String(), av) }

// GetLayer returns the layer inventory of d analysed by analyzers version av;
// an error wrapping ErrNotFound when absent.
func (s *Inventories) GetLayer(ctx context.Context, d digest.Digest, av string) (*scan.LayerInventory, error) {
	var li scan.LayerInventory
	err := s.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, layerKey(d, av), &li) })
	if err != nil {
		return nil, err
	}
	return &li, nil
}

// PutLayer stores li under (li.Digest, li.AnalyzersVersion).
func (s *Inventories) PutLayer(ctx context.Context, li *scan.LayerInventory) error {
	if li == nil || li.Digest == "" {
		return fmt.Errorf("index: put layer: no digest")
	}
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, layerKey(li.Digest, li.AnalyzersVersion), li) })
}

// HasLayer reports whether d has an inventory for analyzers version av.
func (s *Inventories) HasLayer(ctx context.Context, d digest.Digest, av string) (bool, error) {
	found := false
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		_, err := txn.Get(layerKey(d, av))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("index: has layer %s: %w", d, err)
	}
	return found, nil
}

// GetImage returns the merged inventory of image manifest d; an error
// wrapping ErrNotFound when absent.
func (s *Inventories) GetImage(ctx context.Context, d digest.Digest) (*scan.Inventory, error) {
	var inv scan.Inventory
	err := s.db.bdb.View(func(txn *badger.Txn) error { return getJSON(txn, key(pfxInventory, d.String()), &inv) })
	if err != nil {
		return nil, err
	}
	return &inv, nil
}

// PutImage stores inv under inv.Image.
func (s *Inventories) PutImage(ctx context.Context, inv *scan.Inventory) error {
	if inv == nil || inv.Image == "" {
		return fmt.Errorf("index: put image inventory: no image digest")
	}
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, key(pfxInventory, inv.Image.String()), inv) })
}

// DeleteImage removes the merged inventory of d (layer inventories stay:
// other images may share them).
func (s *Inventories) DeleteImage(ctx context.Context, d digest.Digest) error {
	return s.db.update(func(txn *badger.Txn) error {
		if err := txn.Delete(key(pfxInventory, d.String())); err != nil {
			return fmt.Errorf("index: delete image inventory %s: %w", d, err)
		}
		return nil
	})
}
