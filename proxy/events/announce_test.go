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

func pendingEvents(t *testing.T, ob *index.Outbox, after uint64) ([]Event, uint64) {
	t.Helper()
	es, err := ob.Pending(context.Background(), after, 0)
	require.NoError(t, err)
	var out []Event
	for _, e := range es {
		var ev Event
		require.NoError(t, json.Unmarshal(e.Payload, &ev))
		out = append(out, ev)
		after = e.Seq
	}
	return out, after
}

func TestAnnouncerScanDone(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, t.TempDir())
	defer n.close(t)
	store := index.NewFindingStore(n.db)
	img := digest.FromString("img")
	a := &Announcer{Publisher: NewPublisher(n.ob, nil), Findings: store,
		Tags: func(context.Context, string, digest.Digest) []string { return []string{"v1"} }}
	mk := func(id string, sev scan.Severity) scan.Finding {
		return scan.Finding{ID: id, Image: img, VulnerabilityID: "CVE-" + id, Severity: sev, Package: scan.Package{Name: "p" + id}}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Initial scan: two findings created, and the scan event with counts.
	before, err := a.Before(ctx, img)
	require.NoError(t, err)
	_, err = store.Replace(ctx, img, []scan.Finding{mk("1", scan.SeverityCritical), mk("2", scan.SeverityLow)}, t0)
	require.NoError(t, err)
	require.NoError(t, a.ScanDone(ctx, "team/app", img, before, true))
	evs, seq := pendingEvents(t, n.ob, 0)
	require.Len(t, evs, 3)
	changes := map[string]string{}
	for _, ev := range evs[:2] {
		require.Equal(t, TypeFinding, ev.Type)
		var d FindingDetail
		require.NoError(t, json.Unmarshal(ev.Data, &d))
		changes[d.PackageVulnerabilityDetails.VulnerabilityID] = string(d.Change)
		require.Equal(t, []string{"v1"}, d.Resources[0].Details.AwsEcrContainerImage.ImageTags)
	}
	require.Equal(t, map[string]string{"CVE-1": "CREATED", "CVE-2": "CREATED"}, changes)
	require.Equal(t, TypeScan, evs[2].Type)
	var sd ScanDetail
	require.NoError(t, json.Unmarshal(evs[2].Data, &sd))
	require.Equal(t, map[string]int{"CRITICAL": 1, "HIGH": 0, "MEDIUM": 0, "LOW": 1, "TOTAL": 2}, sd.FindingSeverityCounts)

	// Rescan: 1 changes severity (updated), 2 disappears (closed), 3 is new.
	before, err = a.Before(ctx, img)
	require.NoError(t, err)
	res, err := store.Replace(ctx, img, []scan.Finding{mk("1", scan.SeverityHigh), mk("3", scan.SeverityMedium)}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.NoError(t, a.ScanDone(ctx, "team/app", img, before, false))
	evs, _ = pendingEvents(t, n.ob, seq)
	changes = map[string]string{}
	for _, ev := range evs {
		require.Equal(t, TypeFinding, ev.Type, "no scan event for a rescan")
		var d FindingDetail
		require.NoError(t, json.Unmarshal(ev.Data, &d))
		changes[d.PackageVulnerabilityDetails.VulnerabilityID] = string(d.Change)
	}
	require.Equal(t, map[string]string{"CVE-1": "UPDATED", "CVE-2": "CLOSED", "CVE-3": "CREATED"}, changes)

	// The same changes from the store's own ReplaceResult give the same ids.
	fromRes, err := a.Builder.FindingChanges("team/app", []string{"v1"}, res)
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, ev := range evs {
		ids[ev.ID] = true
	}
	require.Len(t, fromRes, 3)
	for _, ev := range fromRes {
		require.True(t, ids[ev.ID], "event %s from ReplaceResult matches the announced one", ev.ID)
	}

	var none *Announcer
	require.NoError(t, none.ScanDone(ctx, "r", img, nil, true))
}
