package index

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// TestRematchOnChange: ApplyDelta and All tell OnChange, once per image,
// which findings they created and closed, after committing them — what
// serve and the db commands need to announce "Inspector2 Finding" events.
// A failing OnChange is reported, and the findings stay changed.
func TestRematchOnChange(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	adv := NewAdvisoryStore(db, zerolog.Nop())
	fs := NewFindingStore(db)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	got := map[digest.Digest]ReplaceResult{}
	var failWith error
	rm := &Rematcher{Advisories: adv, Packages: NewPkgIndex(db), Findings: fs, Now: func() time.Time { return t0 }, Log: zerolog.Nop(),
		OnChange: func(ctx context.Context, img digest.Digest, rr ReplaceResult) error {
			if _, dup := got[img]; dup {
				t.Errorf("OnChange called twice for %s", img)
			}
			// The change is committed before OnChange hears of it.
			stored, err := fs.ForImage(ctx, img)
			require.NoError(t, err)
			for _, f := range rr.Created {
				require.True(t, containsFinding(stored, f.ID, scan.FindingActive), "created finding %s not stored", f.ID)
			}
			got[img] = rr
			return failWith
		}}
	for _, inv := range []*scan.Inventory{
		{Image: imgA, Packages: []scan.Package{{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Kind: scan.KindLang}}},
		{Image: imgB, Packages: []scan.Package{{Ecosystem: "npm", Name: "lodash", Version: "4.17.21", Kind: scan.KindLang}}},
	} {
		_, err := rm.Image(ctx, inv)
		require.NoError(t, err)
	}
	require.Empty(t, got, "Image (a scan) is announced by its caller, not OnChange")

	d, err := adv.Import(ctx, "npm", []match.Advisory{advFixture("GHSA-1", "npm", "lodash", "4.17.19", t0)}, ImportOptions{Now: t0})
	require.NoError(t, err)
	_, err = rm.ApplyDelta(ctx, d)
	require.NoError(t, err)
	require.Len(t, got, 1, "only the image whose findings changed")
	require.Len(t, got[imgA].Created, 1)
	require.Equal(t, "CVE-GHSA-1", got[imgA].Created[0].VulnerabilityID)
	require.Empty(t, got[imgA].Closed)
	created := got[imgA].Created[0]

	// Withdrawn: the finding closes; OnChange fails, the re-match says so.
	clear(got)
	failWith = errors.New("outbox unavailable")
	w := t0.Add(time.Hour)
	a := advFixture("GHSA-1", "npm", "lodash", "4.17.19", t0)
	a.Withdrawn = &w
	d, err = adv.Import(ctx, "npm", []match.Advisory{a}, ImportOptions{Now: w})
	require.NoError(t, err)
	res, err := rm.ApplyDelta(ctx, d)
	require.ErrorIs(t, err, failWith)
	require.Equal(t, 1, res.Closed)
	require.Len(t, got[imgA].Closed, 1)
	require.Equal(t, created.ID, got[imgA].Closed[0].ID)
	stored, _ := fs.ForImage(ctx, imgA)
	require.True(t, containsFinding(stored, created.ID, scan.FindingClosed))

	// All: both images get a new advisory, both are told.
	clear(got)
	failWith = nil
	_, err = adv.Import(ctx, "npm", []match.Advisory{advFixture("GHSA-2", "npm", "lodash", "4.17.22", t0)}, ImportOptions{Now: w})
	require.NoError(t, err)
	_, err = rm.All(ctx)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Len(t, got[imgA].Created, 1)
	require.Len(t, got[imgB].Created, 1)
}

func containsFinding(fs []scan.Finding, id string, st scan.FindingStatus) bool {
	for _, f := range fs {
		if f.ID == id && f.Status == st {
			return true
		}
	}
	return false
}

// Two scans of the same image at once (the pull policy's scan before a
// pull and the scan its push queued) both succeed, and leave one set of
// findings: Badger's optimistic-concurrency conflicts between them are
// retried, not returned (a returned conflict refused the pull).
func TestConcurrentImageScansBothSucceed(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	adv := NewAdvisoryStore(db, zerolog.Nop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := adv.Import(ctx, "npm", []match.Advisory{advFixture("GHSA-1", "npm", "lodash", "4.17.19", t0)}, ImportOptions{Now: t0})
	require.NoError(t, err)
	rm := &Rematcher{Advisories: adv, Packages: NewPkgIndex(db), Findings: NewFindingStore(db), Now: func() time.Time { return t0 }, Log: zerolog.Nop()}
	var pkgs []scan.Package
	for i := range 200 {
		pkgs = append(pkgs, scan.Package{Ecosystem: "npm", Name: fmt.Sprintf("pkg-%03d", i), Version: "1.0.0", Kind: scan.KindLang})
	}
	pkgs = append(pkgs, scan.Package{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Kind: scan.KindLang})
	inv := &scan.Inventory{Image: imgA, Packages: pkgs}
	for round := range 20 {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = rm.Image(ctx, inv)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d, scan %d", round, i)
		}
	}
	fs, err := rm.Findings.ForImage(ctx, imgA)
	require.NoError(t, err)
	active := 0
	for _, f := range fs {
		if f.Status == scan.FindingActive {
			active++
		}
	}
	require.Equal(t, 1, active, "one ACTIVE finding after concurrent scans")
}
