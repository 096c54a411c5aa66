// Package index is tollgate's durable state in Badger
// (github.com/dgraph-io/badger/v4): image records, tags, layer and image
// inventories, advisories, findings, the package→image index, the scan queue,
// the event outbox, referrers and configuration.
//
// One prefix per concern (see keys.go); values are versioned JSON encodings.
// The store is split by concern into small types sharing one *badger.DB, so a
// caller takes only what it needs.
package index

import (
	"encoding/json"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// ErrNotFound is returned (wrapped) when a key does not exist.
var ErrNotFound = errors.New("index: not found")

// Options configures Open. The zero value works (with Dir set).
type Options struct {
	// InMemory runs Badger without a directory (tests, `tollgate scan`).
	InMemory bool
	// ReadOnly opens an existing directory read-only.
	ReadOnly bool
	// MinFreeBytes: every write fails with ErrNoSpace (wrapping ENOSPC)
	// while the file system under dir has less free (default 256 MiB;
	// negative disables). A truly full disk under Badger is not an error
	// but a SIGBUS in its mmap'd logs, which kills the process.
	MinFreeBytes int64
	Logger       zerolog.Logger
}

// DB is the open Badger database shared by the concern-specific stores.
type DB struct {
	bdb   *badger.DB
	log   zerolog.Logger
	space *spaceGuard // nil in memory
}

// Open opens (creating if needed) the Badger database in dir.
func Open(dir string, opts Options) (*DB, error) {
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithInMemory(opts.InMemory).
		WithReadOnly(opts.ReadOnly).
		WithNumVersionsToKeep(1).
		// Keep memory flat: small memtables and caches; tollgate's values are small.
		WithMemTableSize(16 << 20).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20)
	if opts.InMemory {
		bo.Dir, bo.ValueDir = "", ""
	}
	bdb, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", dir, err)
	}
	db := &DB{bdb: bdb, log: opts.Logger}
	if !opts.InMemory && !opts.ReadOnly {
		min := opts.MinFreeBytes
		if min == 0 {
			min = defaultMinFreeBytes
		}
		db.space = &spaceGuard{dir: dir, min: min, statfs: freeBytes}
	}
	return db, nil
}

// Close flushes and closes the database.
func (db *DB) Close() error { return db.bdb.Close() }

// Badger exposes the underlying database for stores in this package and for
// tests; other packages use the typed stores.
func (db *DB) Badger() *badger.DB { return db.bdb }

// Size returns the on-disk size of the LSM tree and value log, in bytes.
func (db *DB) Size() (lsm, vlog int64) { return db.bdb.Size() }

// envelope versions every stored value.
type envelope struct {
	V    int             `json:"v"`
	Data json.RawMessage `json:"d"`
}

const encodingVersion = 1

// encode marshals v in the versioned envelope.
func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("index: encode: %w", err)
	}
	return json.Marshal(envelope{V: encodingVersion, Data: b})
}

// decode unmarshals a versioned envelope into v.
func decode(b []byte, v any) error {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("index: decode envelope: %w", err)
	}
	if e.V != encodingVersion {
		return fmt.Errorf("index: unsupported encoding version %d", e.V)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("index: decode: %w", err)
	}
	return nil
}

// getJSON reads key into v within txn; ErrNotFound when absent.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("index: get %s: %w", key, err)
	}
	return item.Value(func(b []byte) error { return decode(b, v) })
}

// setJSON writes v at key within txn.
func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	if err := txn.Set(key, b); err != nil {
		return fmt.Errorf("index: set %s: %w", key, err)
	}
	return nil
}

// scanPrefix calls fn for each key with prefix, in key order, with values
// decoded lazily through the item. Returning errStop ends the scan early.
func scanPrefix(txn *badger.Txn, prefix []byte, keysOnly bool, fn func(item *badger.Item) error) error {
	io := badger.DefaultIteratorOptions
	io.Prefix = prefix
	io.PrefetchValues = !keysOnly
	it := txn.NewIterator(io)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item()); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

var errStop = errors.New("stop")

type badgerLogger struct{ l zerolog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error().Str("op", "badger").Msgf(f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn().Str("op", "badger").Msgf(f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug().Str("op", "badger").Msgf(f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Trace().Str("op", "badger").Msgf(f, a...) }
