package lifecycle

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

func TestCoverageListFiltersPagesAndStatistics(t *testing.T) {
	h := newHarness(t, cfg(ScanTypeEnhanced, rule(FreqScanOnPush, "once"), rule(FreqContinuous, "app", "web/*")))
	a, b, c, m := dg("a"), dg("b"), dg("c"), dg("manual")
	h.push("app", a)
	h.push("web/front", b)
	h.push("once", c)
	h.push("other", m)
	require.NoError(t, h.records.Record(h.ctx, index.Event{Kind: index.EventPush, Repository: "app", Digest: b, Tag: "v2", At: t0}))
	h.drain()
	require.NoError(t, h.svc.ReportInUse(h.ctx, []Report{
		{Cluster: "prod", Workload: "web", ContainerID: "1", ImageDigest: a.String(), ObservedAt: t0},
		{Cluster: "prod", Workload: "web", ContainerID: "2", ImageDigest: a.String(), ObservedAt: t0},
	}))

	all, next, err := h.svc.ListCoverage(h.ctx, CoverageFilter{}, "", 0)
	require.NoError(t, err)
	assert.Empty(t, next)
	var got []string
	for _, ci := range all {
		got = append(got, ci.Repository+" "+ci.Digest.String()+" "+ci.StatusCode+"/"+string(ci.Reason))
	}
	first, second := a, b
	if b < a {
		first, second = b, a
	}
	assert.Equal(t, []string{
		"app " + first.String() + " ACTIVE/SUCCESSFUL",
		"app " + second.String() + " ACTIVE/SUCCESSFUL",
		"once " + c.String() + " ACTIVE/SCAN_FREQUENCY_SCAN_ON_PUSH",
		"other " + m.String() + " INACTIVE/SCAN_FREQUENCY_MANUAL",
		"web/front " + b.String() + " ACTIVE/SUCCESSFUL",
	}, got, "sorted by repository, then digest")
	require.Len(t, all, 5, "b is in two repositories")
	assert.Equal(t, "app", all[0].Repository)
	for _, ci := range all {
		if ci.Digest == a {
			assert.Equal(t, 2, ci.InUseCount)
			assert.Equal(t, t0, *ci.LastInUseAt)
			assert.Equal(t, FreqContinuous, ci.ScanFrequency)
			assert.Equal(t, ScanTypePackage, ci.ScanType)
			assert.Equal(t, t0, ci.PushedAt)
		}
	}

	// Paging walks everything once, in order.
	var paged []CoveredImage
	token := ""
	for {
		page, nt, err := h.svc.ListCoverage(h.ctx, CoverageFilter{}, token, 2)
		require.NoError(t, err)
		paged = append(paged, page...)
		if nt == "" {
			break
		}
		token = nt
	}
	assert.Equal(t, all, paged)

	tests := []struct {
		name string
		f    CoverageFilter
		want int
	}{
		{"repository wildcard", CoverageFilter{Repositories: []string{"web/*"}}, 1},
		{"status code", CoverageFilter{StatusCodes: []string{index.StatusInactive}}, 1},
		{"reason", CoverageFilter{Reasons: []scan.Reason{scan.ReasonSuccessful}}, 3},
		{"tag", CoverageFilter{Tags: []string{"v2"}}, 1},
		{"digest", CoverageFilter{Digests: []digestT{b}}, 2},
		{"frequency", CoverageFilter{ScanFrequencies: []string{FreqScanOnPush}}, 1},
		{"scanned after", CoverageFilter{LastScannedAfter: ptr(t0.Add(time.Second))}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, _, err := h.svc.ListCoverage(h.ctx, tt.f, "", 0)
			require.NoError(t, err)
			assert.Len(t, items, tt.want)
		})
	}

	counts, total, err := h.svc.CoverageStatistics(h.ctx, CoverageFilter{}, GroupByReason)
	require.NoError(t, err)
	assert.Equal(t, 5, total)
	assert.Equal(t, []Count{{"SUCCESSFUL", 3}, {"SCAN_FREQUENCY_MANUAL", 1}, {"SCAN_FREQUENCY_SCAN_ON_PUSH", 1}}, counts)
	counts, _, err = h.svc.CoverageStatistics(h.ctx, CoverageFilter{}, GroupByRepository)
	require.NoError(t, err)
	assert.Equal(t, []Count{{"app", 2}, {"once", 1}, {"other", 1}, {"web/front", 1}}, counts)
	counts, _, err = h.svc.CoverageStatistics(h.ctx, CoverageFilter{}, GroupByStatusCode)
	require.NoError(t, err)
	assert.Equal(t, []Count{{"ACTIVE", 4}, {"INACTIVE", 1}}, counts)
	_, _, err = h.svc.CoverageStatistics(h.ctx, CoverageFilter{}, "COLOUR")
	assert.ErrorIs(t, err, ErrInvalidRequest)
}

func ptr[T any](v T) *T { return &v }
