package index

import (
	"context"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

func vulnIDs(fs []scan.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Status == scan.FindingActive {
			out = append(out, f.VulnerabilityID+" "+f.Package.Name)
		}
	}
	return out
}

// PyPI names are compared PEP 503-normalised everywhere: an advisory filed
// as "jinja2" or "Jinja2" reaches an image with dist-info `Name: Jinja2` and
// one with `jinja2`, at scan time (Rematcher.Image) and through a delta
// re-match (package index), and the findings show the names as found.
func TestPyPINamesNormalisedInIndex(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, advName := range []string{"jinja2", "Jinja2", "JINJA2"} {
		t.Run(advName, func(t *testing.T) {
			db := openTestDB(t)
			adv := NewAdvisoryStore(db, zerolog.Nop())
			fs := NewFindingStore(db)
			rm := &Rematcher{Advisories: adv, Packages: NewPkgIndex(db), Findings: fs, Now: func() time.Time { return t0 }, Log: zerolog.Nop()}
			pkgA := scan.Package{Ecosystem: "PyPI", Name: "Jinja2", Version: "2.10", Kind: scan.KindLang}
			pkgB := scan.Package{Ecosystem: "PyPI", Name: "jinja2", Version: "2.10", Kind: scan.KindLang}

			// Scan before the advisory exists; the delta must find both images.
			for _, inv := range []*scan.Inventory{{Image: imgA, Packages: []scan.Package{pkgA}}, {Image: imgB, Packages: []scan.Package{pkgB}}} {
				_, err := rm.Image(ctx, inv)
				require.NoError(t, err)
			}
			d, err := adv.Import(ctx, "PyPI", []match.Advisory{advFixture("GHSA-J1", "PyPI", advName, "2.10.1", t0)}, ImportOptions{Now: t0})
			require.NoError(t, err)
			require.Equal(t, []match.PackageKey{{Ecosystem: "PyPI", Name: "jinja2"}}, d.Packages)
			res, err := rm.ApplyDelta(ctx, d)
			require.NoError(t, err)
			require.Equal(t, []digest.Digest{imgA, imgB}, res.Changed)
			got, _ := fs.ForImage(ctx, imgA)
			require.Equal(t, []string{"CVE-GHSA-J1 Jinja2"}, vulnIDs(got))
			got, _ = fs.ForImage(ctx, imgB)
			require.Equal(t, []string{"CVE-GHSA-J1 jinja2"}, vulnIDs(got))

			// Lookups by any spelling, and a scan after the import.
			for _, n := range []string{"Jinja2", "jinja2", "JINJA2"} {
				advs, err := adv.ForPackage(ctx, "PyPI", n)
				require.NoError(t, err)
				require.Equal(t, []string{"GHSA-J1"}, ids(advs), n)
			}
			imgC := digest.Digest("sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc")
			_, err = rm.Image(ctx, &scan.Inventory{Image: imgC, Packages: []scan.Package{pkgA}})
			require.NoError(t, err)
			got, _ = fs.ForImage(ctx, imgC)
			require.Equal(t, []string{"CVE-GHSA-J1 Jinja2"}, vulnIDs(got))
		})
	}
}

// Data stored before names were normalised (adv/ and pix/ keys spelt as
// found, source KeyScheme 0) still matches by the name as found; the next
// import re-keys it and re-matches the images of both spellings, and a full
// re-match re-indexes images so later deltas find them.
func TestPyPIStaleKeysRekeyed(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openTestDB(t)
	adv := NewAdvisoryStore(db, zerolog.Nop())
	fs := NewFindingStore(db)
	px := NewPkgIndex(db)
	rm := &Rematcher{Advisories: adv, Packages: px, Findings: fs, Now: func() time.Time { return t0 }, Log: zerolog.Nop()}

	// The old layout: advisory filed under "Jinja2", image A indexed under "Jinja2".
	a := advFixture("GHSA-J1", "PyPI", "Jinja2", "2.10.1", t0)
	oldKey := match.PackageKey{Ecosystem: "PyPI", Name: "Jinja2"}
	pkgA := scan.Package{Ecosystem: "PyPI", Name: "Jinja2", Version: "2.10", Kind: scan.KindLang}
	require.NoError(t, db.update(func(txn *badger.Txn) error {
		for _, kv := range []struct {
			k []byte
			v any
		}{
			{key(pfxAdvSource, "PyPI"), AdvisorySource{Source: "PyPI", Generation: "g0", Ecosystems: []string{"PyPI"}, Count: 1, Packages: 1, ImportedAt: t0}},
			{key(pfxAdvBody, "g0", a.ID), a},
			{key(pfxAdvHash, "g0", a.ID), advisoryDigest{Hash: a.Hash(), Modified: t0, Packages: []match.PackageKey{oldKey}}},
			{key(pfxPkgIndexRev, imgA.String()), []match.PackageKey{oldKey}},
			{append(pixPrefix(oldKey), imgA.String()...), []scan.Package{pkgA}},
		} {
			if err := setJSON(txn, kv.k, kv.v); err != nil {
				return err
			}
		}
		return txn.Set(key(pfxAdvisory, "g0", "PyPI", "Jinja2", a.ID), nil)
	}))
	for _, n := range []string{"Jinja2", "jinja2"} {
		advs, err := adv.ForPackage(ctx, "PyPI", n)
		require.NoError(t, err)
		if n == "Jinja2" {
			require.Equal(t, []string{"GHSA-J1"}, ids(advs), "old keys still found by the name as filed")
		}
	}

	// Re-importing the same data re-keys it and re-matches image A.
	d, err := adv.Import(ctx, "PyPI", []match.Advisory{a}, ImportOptions{Now: t0.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, []string{"GHSA-J1"}, d.Changed)
	srcs, _ := adv.Sources(ctx)
	require.Equal(t, advKeyScheme, srcs[0].KeyScheme)
	advs, err := adv.ForPackage(ctx, "PyPI", "jinja2")
	require.NoError(t, err)
	require.Equal(t, []string{"GHSA-J1"}, ids(advs))
	_, err = rm.ApplyDelta(ctx, d)
	require.NoError(t, err)
	got, _ := fs.ForImage(ctx, imgA)
	require.Equal(t, []string{"CVE-GHSA-J1 Jinja2"}, vulnIDs(got))
	first := got[0].FirstObservedAt

	// A full re-match re-indexes image A under "jinja2": a later delta
	// for "jinja2" reaches it.
	_, err = rm.All(ctx)
	require.NoError(t, err)
	imgs, err := px.ImagesFor(ctx, "PyPI", "jinja2")
	require.NoError(t, err)
	require.Equal(t, []digest.Digest{imgA}, imgs)
	b := advFixture("GHSA-J2", "PyPI", "jinja2", "2.11.3", t0)
	d, err = adv.Import(ctx, "PyPI", []match.Advisory{b}, ImportOptions{Merge: true, Now: t0.Add(2 * time.Hour)})
	require.NoError(t, err)
	_, err = rm.ApplyDelta(ctx, d)
	require.NoError(t, err)
	got, _ = fs.ForImage(ctx, imgA)
	require.ElementsMatch(t, []string{"CVE-GHSA-J1 Jinja2", "CVE-GHSA-J2 Jinja2"}, vulnIDs(got))
	for _, f := range got {
		if f.VulnerabilityID == "CVE-GHSA-J1" {
			require.Equal(t, first, f.FirstObservedAt, "unchanged finding keeps its first observation")
		}
	}
}
