package index

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan/match"
)

func advFixture(id, eco, name, fixed string, mod time.Time) match.Advisory {
	return match.Advisory{ID: id, Modified: mod, Aliases: []string{"CVE-" + id},
		Affected: []match.Affected{{Package: match.AffectedPackage{Ecosystem: eco, Name: name},
			Ranges: []match.Range{{Type: match.RangeEcosystem, Events: []match.Event{{Introduced: "0"}, {Fixed: fixed}}}}}}}
}

func openTestDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func ids(advs []match.Advisory) []string {
	var out []string
	for _, a := range advs {
		out = append(out, a.ID)
	}
	slices.Sort(out)
	return out
}

func TestAdvisoryImportDeltaAndLookup(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	s := NewAdvisoryStore(db, zerolog.Nop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	d, err := s.Import(ctx, "PyPI", []match.Advisory{
		advFixture("A", "PyPI", "requests", "2.31.0", t0),
		advFixture("B", "PyPI", "urllib3", "1.26.18", t0),
		advFixture("C", "PyPI", "github.com/x/y", "1.0", t0), // '/' in a name
	}, ImportOptions{Now: t0})
	require.NoError(t, err)
	require.Equal(t, []string{"A", "B", "C"}, d.Added)
	require.Len(t, d.Packages, 3)

	got, err := s.ForPackage(ctx, "PyPI", "requests")
	require.NoError(t, err)
	require.Equal(t, []string{"A"}, ids(got))
	got, _ = s.ForPackage(ctx, "PyPI", "github.com/x")
	require.Empty(t, got, "a name must not match another name's prefix")
	got, _ = s.ForPackage(ctx, "PyPI", "github.com/x/y")
	require.Equal(t, []string{"C"}, ids(got))

	// Same data again: empty delta, nothing rewritten.
	d, err = s.Import(ctx, "PyPI", []match.Advisory{
		advFixture("A", "PyPI", "requests", "2.31.0", t0),
		advFixture("B", "PyPI", "urllib3", "1.26.18", t0),
		advFixture("C", "PyPI", "github.com/x/y", "1.0", t0),
	}, ImportOptions{Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	require.True(t, d.Empty())

	// A changes (content only, same modified), B withdrawn, C removed, D added.
	a2 := advFixture("A", "PyPI", "requests", "2.32.0", t0)
	b2 := advFixture("B", "PyPI", "urllib3", "1.26.18", t0)
	w := t0.Add(2 * time.Hour)
	b2.Withdrawn = &w
	d, err = s.Import(ctx, "PyPI", []match.Advisory{a2, b2, advFixture("D", "PyPI", "idna", "3.7", t0.Add(time.Hour))}, ImportOptions{Now: t0.Add(3 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []string{"D"}, d.Added)
	require.Equal(t, []string{"A"}, d.Changed)
	require.Equal(t, []string{"B"}, d.Withdrawn)
	require.Equal(t, []string{"C"}, d.Removed)
	var names []string
	for _, k := range d.Packages {
		names = append(names, k.Name)
	}
	// Delta keys carry names PEP 503-normalised, as the package index files them.
	require.Equal(t, []string{"github-com/x/y", "idna", "requests", "urllib3"}, names)

	srcs, err := s.Sources(ctx)
	require.NoError(t, err)
	require.Len(t, srcs, 1)
	require.Equal(t, 3, srcs[0].Count)
	require.Equal(t, 1, srcs[0].Withdrawn)
	require.Equal(t, t0.Add(time.Hour), srcs[0].NewestModified)
	require.Equal(t, []string{"PyPI"}, srcs[0].Ecosystems)

	// Old generation is gone: only live keys remain under adv/.
	got, _ = s.ForPackage(ctx, "PyPI", "github.com/x/y")
	require.Empty(t, got)
	n := 0
	require.NoError(t, db.Badger().View(func(txn *badgerTxn) error {
		return scanPrefix(txn, []byte(pfxAdvisory), true, func(*badgerItem) error { n++; return nil })
	}))
	require.Equal(t, 3, n)

	// Merge import of one file keeps the rest.
	d, err = s.Import(ctx, "PyPI", []match.Advisory{advFixture("E", "PyPI", "six", "1.17", t0)}, ImportOptions{Merge: true, Now: t0.Add(4 * time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []string{"E"}, d.Added)
	require.Empty(t, d.Removed)
	got, _ = s.ForPackage(ctx, "PyPI", "requests")
	require.Equal(t, []string{"A"}, ids(got))
}

func TestAdvisoryImportFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	s := NewAdvisoryStore(db, zerolog.Nop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := s.Import(ctx, "Go", []match.Advisory{advFixture("GO-1", "Go", "example.com/m", "1.0.0", t0)}, ImportOptions{Now: t0})
	require.NoError(t, err)

	// An invalid record fails the whole import.
	_, err = s.Import(ctx, "Go", []match.Advisory{advFixture("GO-2", "Go", "example.com/n", "1.0.0", t0), {ID: ""}}, ImportOptions{Now: t0.Add(time.Hour)})
	require.True(t, errors.Is(err, match.ErrInvalidAdvisory), "%v", err)

	// A cancelled import (download cut mid-way) fails and leaves old data.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Import(cctx, "Go", []match.Advisory{advFixture("GO-3", "Go", "example.com/o", "1.0.0", t0)}, ImportOptions{Now: t0.Add(2 * time.Hour)})
	require.Error(t, err)

	got, err := s.ForPackage(ctx, "Go", "example.com/m")
	require.NoError(t, err)
	require.Equal(t, []string{"GO-1"}, ids(got))
	got, _ = s.ForPackage(ctx, "Go", "example.com/o")
	require.Empty(t, got)
	// The staged generation was cleaned up.
	n := 0
	require.NoError(t, db.Badger().View(func(txn *badgerTxn) error {
		return scanPrefix(txn, []byte(pfxAdvisory), true, func(*badgerItem) error { n++; return nil })
	}))
	require.Equal(t, 1, n)
}

func TestAdvisoryReleaseIsolation(t *testing.T) {
	ctx := context.Background()
	s := NewAdvisoryStore(openTestDB(t), zerolog.Nop())
	_, err := s.Import(ctx, "Debian", []match.Advisory{advFixture("DSA-1", "Debian:11", "openssl", "1.1.1w-0+deb11u1", time.Time{})}, ImportOptions{})
	require.NoError(t, err)
	got, _ := s.ForPackage(ctx, "Debian:12", "openssl")
	require.Empty(t, got)
	got, _ = s.ForPackage(ctx, "Debian:11", "openssl")
	require.Len(t, got, 1)
}

type (
	badgerTxn  = badger.Txn
	badgerItem = badger.Item
)
