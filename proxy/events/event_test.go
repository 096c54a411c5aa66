package events

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

func TestEventShapes(t *testing.T) {
	b := Builder{Region: "eu-west-1", AccountID: "123456789012"}
	img := digest.FromString("img")
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	f := scan.Finding{ID: "f1", Image: img, VulnerabilityID: "CVE-2024-1", Title: "CVE-2024-1 - openssl",
		Severity: scan.SeverityHigh, Status: scan.FindingActive, FixAvailable: "YES", FixedVersions: []string{"3.0.2"},
		CVSS:            []scan.CVSS{{Version: "3.1", Vector: "CVSS:3.1/AV:N", BaseScore: 7.5}},
		Package:         scan.Package{Name: "openssl", Version: "3.0.1", Path: "var/lib/dpkg/status", Layer: digest.FromString("l")},
		FirstObservedAt: at, LastObservedAt: at, UpdatedAt: at}

	scanEv, err := b.ScanComplete("team/app", img, []string{"v1"}, map[scan.Severity]int{scan.SeverityCritical: 2, scan.SeverityLow: 1}, at)
	require.NoError(t, err)
	findEv, err := b.Finding("team/app", nil, f, FindingCreated)
	require.NoError(t, err)
	covEv, err := b.Coverage("team/app", index.Coverage{Image: img, StatusCode: index.StatusActive, Reason: scan.ReasonSuccessful, UpdatedAt: at})
	require.NoError(t, err)
	pullEv, err := b.ImageAction(index.Event{Kind: index.EventPull, Repository: "team/app", Digest: img, At: at})
	require.NoError(t, err)
	_, err = b.ImageAction(index.Event{Kind: index.EventArchive, Repository: "team/app", Digest: img, At: at})
	require.Error(t, err)

	for _, tc := range []struct {
		ev           Event
		typ, source  string
		detailSubset string
	}{
		{scanEv, TypeScan, SourceInspector, `{"scan-status":"INITIAL_SCAN_COMPLETE",
			"repository-name":"arn:aws:ecr:eu-west-1:123456789012:repository/team/app",
			"finding-severity-counts":{"CRITICAL":2,"HIGH":0,"MEDIUM":0,"LOW":1,"TOTAL":3},
			"image-digest":"` + img.String() + `","image-tags":["v1"]}`},
		{pullEv, TypeImageAction, SourceECR, `{"result":"SUCCESS","repository-name":"team/app","image-digest":"` + img.String() + `","action-type":"PULL"}`},
	} {
		require.NoError(t, tc.ev.Validate())
		require.Equal(t, tc.typ, tc.ev.Type)
		require.Equal(t, tc.source, tc.ev.Source)
		require.JSONEq(t, tc.detailSubset, string(tc.ev.Data))
		raw, err := json.Marshal(tc.ev)
		require.NoError(t, err)
		var attrs map[string]any
		require.NoError(t, json.Unmarshal(raw, &attrs))
		for _, a := range []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"} {
			require.Contains(t, attrs, a)
		}
		require.Equal(t, "1.0", attrs["specversion"])
	}

	var fd FindingDetail
	require.NoError(t, json.Unmarshal(findEv.Data, &fd))
	require.Equal(t, b.FindingARN("team/app", "f1"), fd.FindingArn)
	require.Equal(t, "HIGH", fd.Severity)
	require.Equal(t, "3.0.2", fd.PackageVulnerabilityDetails.VulnerablePackages[0].FixedInVersion)
	require.InDelta(t, 7.5, *fd.InspectorScore, 0)
	require.Equal(t, b.ImageARN("team/app", img), fd.Resources[0].ID)
	var cd CoverageDetail
	require.NoError(t, json.Unmarshal(covEv.Data, &cd))
	require.Equal(t, CoverageStatus{Reason: "SUCCESSFUL", StatusCodeValue: "ACTIVE"}, cd.ScanStatus)

	// Ids are stable for the same change and differ between changes.
	again, err := b.Finding("team/app", nil, f, FindingCreated)
	require.NoError(t, err)
	require.Equal(t, findEv.ID, again.ID)
	f.UpdatedAt = at.Add(time.Hour)
	later, err := b.Finding("team/app", nil, f, FindingUpdated)
	require.NoError(t, err)
	require.NotEqual(t, findEv.ID, later.ID)
	other, err := b.Finding("team/other", nil, f, FindingUpdated)
	require.NoError(t, err)
	require.NotEqual(t, later.ID, other.ID)
}

func TestPublishValidatesAndNilDiscards(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, t.TempDir())
	defer n.close(t)
	p := NewPublisher(n.ob, nil)
	require.Error(t, p.Publish(ctx, Event{SpecVersion: "1.0", ID: "x"}), "missing source and type")
	pending, err := n.ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	require.Empty(t, pending)

	var none *Publisher
	require.NoError(t, none.Publish(ctx, imageEvents(t, 1)...))
	none.Wake()
}
