package index

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

const (
	imgA = digest.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	imgB = digest.Digest("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
)

func finding(img digest.Digest, pkg, vuln string, sev scan.Severity) scan.Finding {
	p := scan.Package{Ecosystem: "PyPI", Name: pkg, Version: "1.0", Kind: scan.KindLang}
	return scan.Finding{ID: match.FindingID(img, &p, vuln), Image: img, VulnerabilityID: vuln, Severity: sev, Package: p, Status: scan.FindingActive, FixAvailable: "YES"}
}

func TestFindingLifecycle(t *testing.T) {
	ctx := context.Background()
	fs := NewFindingStore(openTestDB(t))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x := finding(imgA, "requests", "CVE-1", scan.SeverityHigh)
	y := finding(imgA, "urllib3", "CVE-2", scan.SeverityLow)

	r, err := fs.Replace(ctx, imgA, []scan.Finding{x, y}, t0)
	require.NoError(t, err)
	require.Len(t, r.Created, 2)

	// Rescan: x unchanged, y gone, z new.
	z := finding(imgA, "idna", "CVE-3", scan.SeverityCritical)
	r, err = fs.Replace(ctx, imgA, []scan.Finding{x, z}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, r.Created, 1)
	require.Len(t, r.Closed, 1)
	require.Equal(t, 1, r.Observed)

	got, err := fs.Get(ctx, x.ID)
	require.NoError(t, err)
	require.Equal(t, t0, got.FirstObservedAt)
	require.Equal(t, t0.Add(time.Hour), got.LastObservedAt)
	require.Equal(t, scan.FindingActive, got.Status)
	gy, _ := fs.Get(ctx, y.ID)
	require.Equal(t, scan.FindingClosed, gy.Status)
	require.Equal(t, t0.Add(time.Hour), *gy.ClosedAt)

	counts, err := fs.Counts(ctx, imgA)
	require.NoError(t, err)
	require.Equal(t, map[scan.Severity]int{scan.SeverityHigh: 1, scan.SeverityCritical: 1}, counts)

	all, _ := fs.ForImage(ctx, imgA)
	require.Len(t, all, 3)
	require.Equal(t, scan.SeverityCritical, all[0].Severity, "highest severity first")

	// Suppressed stays suppressed across rescans; content change is an update.
	require.NoError(t, fs.SetStatus(ctx, x.ID, scan.FindingSuppressed, t0))
	x2 := x
	x2.FixedVersions = []string{"2.0"}
	r, err = fs.Replace(ctx, imgA, []scan.Finding{x2, z}, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Len(t, r.Updated, 1)
	got, _ = fs.Get(ctx, x.ID)
	require.Equal(t, scan.FindingSuppressed, got.Status)

	n, err := fs.CloseAll(ctx, imgA, t0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = fs.DeleteClosedBefore(ctx, t0.Add(90*time.Minute))
	require.NoError(t, err)
	require.Equal(t, 1, n, "only y closed before 1h30")
	_, err = fs.Get(ctx, y.ID)
	require.ErrorIs(t, err, ErrNotFound)
	total := 0
	require.NoError(t, fs.Each(ctx, func(scan.Finding) error { total++; return nil }))
	require.Equal(t, 2, total)
}

func TestReplaceForLeavesOtherPackages(t *testing.T) {
	ctx := context.Background()
	fs := NewFindingStore(openTestDB(t))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x := finding(imgA, "requests", "CVE-1", scan.SeverityHigh)
	y := finding(imgA, "urllib3", "CVE-2", scan.SeverityLow)
	_, err := fs.Replace(ctx, imgA, []scan.Finding{x, y}, t0)
	require.NoError(t, err)
	r, err := fs.ReplaceFor(ctx, imgA, []match.PackageKey{{Ecosystem: "PyPI", Name: "urllib3"}}, nil, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, r.Closed, 1)
	got, _ := fs.Get(ctx, x.ID)
	require.Equal(t, scan.FindingActive, got.Status)
}

func TestPkgIndexAndDeltaRematch(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	adv := NewAdvisoryStore(db, zerolog.Nop())
	pix := NewPkgIndex(db)
	fs := NewFindingStore(db)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := t0
	rm := &Rematcher{Advisories: adv, Packages: pix, Findings: fs, Now: func() time.Time { return clock }, Log: zerolog.Nop()}

	invA := &scan.Inventory{Image: imgA, Packages: []scan.Package{
		{Ecosystem: "Debian:12", Name: "libssl3", SourceName: "openssl", Version: "3.0.20-1~deb12u2", Kind: scan.KindOS, Path: "var/lib/dpkg/status"},
		{Ecosystem: "PyPI", Name: "urllib3", Version: "1.26.12", Kind: scan.KindLang, OSManaged: true},
		{Ecosystem: "npm", Name: "lodash", Version: "4.17.15", Kind: scan.KindLang},
	}}
	invB := &scan.Inventory{Image: imgB, Packages: []scan.Package{
		{Ecosystem: "npm", Name: "lodash", Version: "4.17.21", Kind: scan.KindLang},
	}}
	for _, inv := range []*scan.Inventory{invA, invB} {
		r, err := rm.Image(ctx, inv)
		require.NoError(t, err)
		require.Empty(t, r.Created)
	}
	imgs, err := pix.ImagesFor(ctx, "npm", "lodash")
	require.NoError(t, err)
	require.Equal(t, []digest.Digest{imgA, imgB}, imgs)
	imgs, _ = pix.ImagesFor(ctx, "Debian:12", "openssl")
	require.Equal(t, []digest.Digest{imgA}, imgs, "OS packages indexed by source")
	imgs, _ = pix.ImagesFor(ctx, "PyPI", "urllib3")
	require.Empty(t, imgs, "OS-managed language packages are not indexed")

	// New advisory for lodash < 4.17.19: only imgA gets a finding.
	d, err := adv.Import(ctx, "npm", []match.Advisory{advFixture("GHSA-1", "npm", "lodash", "4.17.19", t0)}, ImportOptions{Now: t0})
	require.NoError(t, err)
	res, err := rm.ApplyDelta(ctx, d)
	require.NoError(t, err)
	require.Equal(t, 2, res.Examined)
	require.Equal(t, []digest.Digest{imgA}, res.Changed)
	require.Equal(t, 1, res.Created)

	// Unrelated delta keeps FirstObservedAt; withdrawal closes.
	clock = t0.Add(time.Hour)
	w := t0.Add(time.Hour)
	a := advFixture("GHSA-1", "npm", "lodash", "4.17.19", t0)
	a.Withdrawn = &w
	d, err = adv.Import(ctx, "npm", []match.Advisory{a}, ImportOptions{Now: clock})
	require.NoError(t, err)
	require.Equal(t, []string{"GHSA-1"}, d.Withdrawn)
	res, err = rm.ApplyDelta(ctx, d)
	require.NoError(t, err)
	require.Equal(t, 1, res.Closed)
	counts, _ := fs.Counts(ctx, imgA)
	require.Empty(t, counts)

	// Full re-match from the index finds the same as Image.
	_, err = adv.Import(ctx, "npm", []match.Advisory{advFixture("GHSA-2", "npm", "lodash", "4.17.22", t0)}, ImportOptions{Now: clock})
	require.NoError(t, err)
	res, err = rm.All(ctx)
	require.NoError(t, err)
	require.Equal(t, []digest.Digest{imgA, imgB}, res.Changed)

	// Removing an image drops it from the index.
	require.NoError(t, pix.RemoveImage(ctx, imgB))
	imgs, _ = pix.ImagesFor(ctx, "npm", "lodash")
	require.Equal(t, []digest.Digest{imgA}, imgs)
}
