package index

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

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
