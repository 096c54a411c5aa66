package index

import (
	"fmt"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// ErrNoSpace is returned (wrapped) by every write while the file system
// under the index directory has less than Options.MinFreeBytes free. It
// wraps syscall.ENOSPC.
var ErrNoSpace = fmt.Errorf("index: too little free space under the index directory: %w", syscall.ENOSPC)

// defaultMinFreeBytes is Options.MinFreeBytes's default. Badger writes its
// memtable log (2 × 16 MiB) and value log (2 × 64 MiB) through mmap'd
// sparse files: on a full disk a write into them is a SIGBUS that kills
// the process, not an error. Refusing writes while less than this is free
// keeps every page Badger may still touch backed.
const defaultMinFreeBytes = 256 << 20

// spaceGuard refuses writes while too little space is free under dir. It
// asks the file system at every write (one statfs, cheap beside a commit):
// a reading reused for a while would let a disk filling fast reach Badger.
type spaceGuard struct {
	dir    string
	min    int64                           // bytes; <= 0 disables
	statfs func(dir string) (int64, error) // free bytes (tests replace it)
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// check returns ErrNoSpace (wrapped, naming the free bytes) while too little
// space is free; a file system that cannot be asked does not block writes.
func (g *spaceGuard) check() error {
	if g == nil || g.min <= 0 {
		return nil
	}
	free, err := g.statfs(g.dir)
	if err != nil {
		return nil
	}
	if free < g.min {
		return fmt.Errorf("%w (%d bytes free, %d needed)", ErrNoSpace, free, g.min)
	}
	return nil
}

// update is bdb.Update behind the free-space guard.
func (db *DB) update(fn func(txn *badger.Txn) error) error {
	if err := db.space.check(); err != nil {
		return err
	}
	return db.bdb.Update(fn)
}

// writeBatch is a badger.WriteBatch behind the free-space guard.
type writeBatch struct {
	*badger.WriteBatch
	db *DB
}

func (db *DB) newWriteBatch() *writeBatch {
	return &writeBatch{WriteBatch: db.bdb.NewWriteBatch(), db: db}
}

func (w *writeBatch) Set(k, v []byte) error {
	if err := w.db.space.check(); err != nil {
		return err
	}
	return w.WriteBatch.Set(k, v)
}

func (w *writeBatch) Delete(k []byte) error {
	if err := w.db.space.check(); err != nil {
		return err
	}
	return w.WriteBatch.Delete(k)
}

func (w *writeBatch) Flush() error {
	if err := w.db.space.check(); err != nil {
		return err
	}
	return w.WriteBatch.Flush()
}
