package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan"
)

type fakeDB struct{ lsm, vlog int64 }

func (f *fakeDB) Size() (int64, int64) { return f.lsm, f.vlog }

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestScrapeShowsMovingMetrics(t *testing.T) {
	r := New()
	db := &fakeDB{lsm: 100, vlog: 2000}
	r.WatchDBSize(db)
	depth := 3
	r.WatchQueueDepth(func() int { return depth })
	clock := time.Unix(1_700_003_600, 0)
	r.now = func() time.Time { return clock }
	at := time.Unix(1_700_000_000, 0)
	fail := false
	r.WatchAdvisoryAge(func(context.Context) (map[string]time.Time, error) {
		if fail {
			return nil, errors.New("db closed")
		}
		return map[string]time.Time{"Debian": at, "never": {}}, nil
	})

	before := scrape(t, r.Handler())
	require.Contains(t, before, `tollgate_badger_size_bytes{part="lsm"} 100`)
	require.Contains(t, before, `tollgate_badger_size_bytes{part="vlog"} 2000`)
	require.Contains(t, before, "tollgate_scan_queue_depth 3")
	require.Contains(t, before, "tollgate_tee_handoffs_total 0")
	require.Contains(t, before, `tollgate_advisory_data_age_seconds{source="Debian"} 3600`+"\n")
	require.Contains(t, before, `tollgate_advisory_last_import_timestamp_seconds{source="Debian"} 1.7e+09`+"\n")
	require.NotContains(t, before, `source="never"`, "a source never imported has no time")
	clock = clock.Add(90 * time.Second) // no import: the age grows, the timestamp stays
	later := scrape(t, r.Handler())
	require.Contains(t, later, `tollgate_advisory_data_age_seconds{source="Debian"} 3690`+"\n")
	require.Contains(t, later, `tollgate_advisory_last_import_timestamp_seconds{source="Debian"} 1.7e+09`+"\n")
	require.Contains(t, before, "go_goroutines")
	require.NotContains(t, before, "tollgate_registry_requests_total{")

	r.Request("pull_manifest", 200, 0, 1234)
	r.Request("pull_manifest", 200, 0, 1)
	r.Request("push_blob", 201, 5000, 0)
	r.TeeHandoff()
	r.TeeDetach("slow")
	r.DeferredScan("detached")
	r.ScanDuration("layer", 1500*time.Millisecond)
	r.SetFindings(map[scan.FindingStatus]map[scan.Severity]int{scan.FindingActive: {scan.SeverityCritical: 2}})
	r.WebhookDelivery("wh-1", "failed")
	r.WebhookDelivery("wh-1", "delivered")
	r.PolicyDecision("denied")
	db.lsm, depth, fail = 150, 0, true

	after := scrape(t, r.Handler())
	for _, want := range []string{
		`tollgate_registry_requests_total{code="200",operation="pull_manifest"} 2`,
		`tollgate_registry_requests_total{code="201",operation="push_blob"} 1`,
		`tollgate_registry_bytes_total{direction="out",operation="pull_manifest"} 1235`,
		`tollgate_registry_bytes_total{direction="in",operation="push_blob"} 5000`,
		"tollgate_tee_handoffs_total 1",
		`tollgate_tee_detaches_total{reason="slow"} 1`,
		`tollgate_deferred_scans_total{reason="detached"} 1`,
		`tollgate_scan_duration_seconds_count{phase="layer"} 1`,
		`tollgate_scan_duration_seconds_sum{phase="layer"} 1.5`,
		`tollgate_findings{severity="CRITICAL",status="ACTIVE"} 2`,
		`tollgate_findings{severity="HIGH",status="ACTIVE"} 0`,
		`tollgate_webhook_deliveries_total{outcome="delivered",target="wh-1"} 1`,
		`tollgate_webhook_deliveries_total{outcome="failed",target="wh-1"} 1`,
		`tollgate_policy_decisions_total{decision="denied"} 1`,
		`tollgate_badger_size_bytes{part="lsm"} 150`,
		"tollgate_scan_queue_depth 0",
	} {
		require.Contains(t, after, want)
	}
	require.NotContains(t, after, "tollgate_advisory_data_age_seconds{", "a failed lookup reports nothing")
	require.NotContains(t, after, "tollgate_advisory_last_import_timestamp_seconds{")
	require.False(t, strings.Contains(after, "An error has occurred"), "the scrape itself must not fail")
}

func TestNilRegistryIsNoop(t *testing.T) {
	var r *Registry
	r.Request("x", 200, 1, 1)
	r.TeeHandoff()
	r.TeeDetach("x")
	r.DeferredScan("x")
	r.ScanDuration("x", time.Second)
	r.SetFindings(nil)
	r.WebhookDelivery("x", "y")
	r.PolicyDecision("x")
}
