package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/proxy/events"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// TestServeObservability wires metrics, events and the pull policy the way
// `tollgate serve` does, in front of a fake upstream registry, and checks
// what a client, a webhook receiver and a Prometheus scrape see.
func TestServeObservability(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` +
		digest.FromString("c").Encoded() + `","size":1},"layers":[]}`)
	img := digest.FromBytes(manifest)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", img.String())
		_, _ = w.Write(manifest)
	}))
	defer upstream.Close()

	var mu sync.Mutex
	var received []events.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.Event
		if json.NewDecoder(r.Body).Decode(&ev) == nil && r.Header.Get("Content-Type") == events.ContentType {
			mu.Lock()
			received = append(received, ev)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	cfg := config.Default()
	cfg.Admin.Token = "t0ken"
	cfg.Admin.Webhooks = []config.Webhook{{URL: hook.URL}}
	cfg.Policy = []config.PullPolicy{{RepositoryFilter: "team/*", Severity: "HIGH"}}
	db, err := index.Open(filepath.Join(t.TempDir(), "index"), index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	up, _ := url.Parse(upstream.URL)
	s := &server{cfg: cfg, log: zerolog.Nop(), db: db,
		proxy: &proxy.Proxy{Upstream: up, Logger: zerolog.Nop()},
		admin: admin.New(admin.Options{Logger: zerolog.Nop()})}
	for _, c := range []component{wireMetrics, wireEvents, wirePolicy} {
		require.NoError(t, c(ctx, s))
	}
	var wg sync.WaitGroup
	for _, task := range s.background {
		wg.Go(func() { _ = task(ctx) })
	}
	defer func() {
		cancel()
		wg.Wait()
		for i := len(s.closers) - 1; i >= 0; i-- {
			require.NoError(t, s.closers[i](context.Background()))
		}
		require.NoError(t, db.Close())
	}()

	// The image was scanned: one CRITICAL finding.
	now := time.Now()
	_, err = index.NewFindingStore(db).Replace(ctx, img, []scan.Finding{{ID: "f1", Image: img,
		VulnerabilityID: "CVE-2024-1", Severity: scan.SeverityCritical, Status: scan.FindingActive,
		Package: scan.Package{Name: "openssl", Version: "1"}}}, now)
	require.NoError(t, err)
	require.NoError(t, index.NewCoverages(db).Put(ctx, &index.Coverage{Image: img, StatusCode: index.StatusActive,
		Reason: scan.ReasonSuccessful, LastScannedAt: &now, UpdatedAt: now}))

	var reg http.Handler = s.proxy
	for _, wrap := range s.wrapRegistry {
		reg = wrap(reg)
	}
	regSrv := httptest.NewServer(reg)
	defer regSrv.Close()

	get := func(path string) (int, []byte) {
		resp, err := http.Get(regSrv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Refused in team/*: OCI DENIED naming the findings and how to see them.
	code, body := get("/v2/team/app/manifests/v1")
	require.Equal(t, http.StatusForbidden, code)
	var oci struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(body, &oci))
	require.Equal(t, "DENIED", oci.Errors[0].Code)
	require.Contains(t, oci.Errors[0].Message, "1 ACTIVE finding at or above HIGH (1 CRITICAL)")
	require.Contains(t, oci.Errors[0].Message, "tollgate findings list")

	// Served elsewhere, and the pull becomes an "ECR Image Action" event.
	code, body = get("/v2/other/app/manifests/v1")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, manifest, body)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	require.Len(t, received, 1, "one pull served, one event")
	ev := received[0]
	mu.Unlock()
	require.Equal(t, events.TypeImageAction, ev.Type)
	var detail events.ImageActionDetail
	require.NoError(t, json.Unmarshal(ev.Data, &detail))
	require.Equal(t, events.ImageActionDetail{Result: "SUCCESS", RepositoryName: "other/app", ImageDigest: img.String(),
		ActionType: "PULL", ImageTag: "v1", MediaType: "application/vnd.oci.image.manifest.v1+json"}, detail)

	// /metrics on the admin listener needs the admin token.
	adm := httptest.NewServer(s.admin)
	defer adm.Close()
	resp, err := http.Get(adm.URL + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	scrapeMetrics := func() string {
		req, _ := http.NewRequest(http.MethodGet, adm.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer t0ken")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The delivery is counted after the receiver answered: wait for it.
	delivered := `tollgate_webhook_deliveries_total{outcome="delivered",target="` + events.Target{URL: hook.URL}.ID() + `"} 1`
	metricsText := scrapeMetrics()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(metricsText, delivered) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		metricsText = scrapeMetrics()
	}
	req, _ := http.NewRequest(http.MethodGet, adm.URL+"/v1/webhooks/deliveries?state=done", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var page events.DeliveriesPage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	resp.Body.Close()
	require.Len(t, page.Done, 1)
	require.Equal(t, ev.ID, page.Done[0].ID)
	require.NotNil(t, page.Done[0].Targets[events.Target{URL: hook.URL}.ID()].DeliveredAt)
	for _, want := range []string{
		`tollgate_registry_requests_total{code="403",operation="pull_manifest"} 1`,
		`tollgate_registry_requests_total{code="200",operation="pull_manifest"} 1`,
		`tollgate_policy_decisions_total{decision="denied"} 1`,
		delivered,
		`tollgate_badger_size_bytes{part="lsm"}`,
		"tollgate_scan_queue_depth 0",
	} {
		require.Contains(t, metricsText, want)
	}
}

type fakeImageScanner struct{ store *index.FindingStore }

func (f fakeImageScanner) Scan(ctx context.Context, req lifecycle.ScanRequest) (lifecycle.Result, error) {
	_, err := f.store.Replace(ctx, req.Image, []scan.Finding{{ID: "x", VulnerabilityID: "CVE-2024-9",
		Severity: scan.SeverityHigh, Package: scan.Package{Name: "zlib"}}}, time.Now())
	return lifecycle.Result{Reason: scan.ReasonSuccessful}, err
}

func TestObserveScanner(t *testing.T) {
	ctx := context.Background()
	db, err := index.Open(filepath.Join(t.TempDir(), "index"), index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	defer db.Close()
	cfg := config.Default()
	s := &server{cfg: cfg, log: zerolog.Nop(), db: db, proxy: &proxy.Proxy{}, admin: admin.New(admin.Options{})}
	inner := fakeImageScanner{index.NewFindingStore(db)}
	require.Equal(t, lifecycle.ImageScanner(inner), s.observeScanner(inner), "no webhooks, no metrics: unchanged")

	s.cfg.Admin.Webhooks = []config.Webhook{{URL: "http://127.0.0.1:1/unused"}}
	require.NoError(t, wireEvents(ctx, s))
	defer func() { require.NoError(t, s.closers[0](ctx)) }()
	img := digest.FromString("img")
	require.NoError(t, wireMetrics(ctx, s))
	_, err = s.observeScanner(inner).Scan(ctx, lifecycle.ScanRequest{Repository: "team/app", Image: img})
	require.NoError(t, err)
	ob, err := index.NewOutbox(db)
	require.NoError(t, err)
	defer ob.Close()
	pending, err := ob.Pending(ctx, 0, 0)
	require.NoError(t, err)
	var types []string
	for _, e := range pending {
		types = append(types, e.Type)
	}
	require.Equal(t, []string{events.TypeFinding, events.TypeScan}, types)
	rec := httptest.NewRecorder()
	s.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Contains(t, rec.Body.String(), `tollgate_scan_duration_seconds_count{phase="image"} 1`)
}

// TestServeMetricsAdvisoryAge: the /metrics of a serve wired as in
// production reports each advisory source's last import time and its age,
// read from the advisory store at each scrape, so data that stops being
// refreshed keeps serving with a visibly growing age.
func TestServeMetricsAdvisoryAge(t *testing.T) {
	ctx := context.Background()
	db, err := index.Open(filepath.Join(t.TempDir(), "index"), index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	defer db.Close()
	cfg := config.Default()
	cfg.Admin.MetricsOpen = true
	s := &server{cfg: cfg, log: zerolog.Nop(), db: db, proxy: &proxy.Proxy{}, admin: admin.New(admin.Options{})}
	require.NoError(t, wireMetrics(ctx, s))
	adm := httptest.NewServer(s.admin)
	defer adm.Close()
	scrape := func() string {
		resp, err := http.Get(adm.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	require.NotContains(t, scrape(), "tollgate_advisory_data_age_seconds{", "no data imported, no age")

	imported := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	_, err = index.NewAdvisoryStore(db, zerolog.Nop()).Import(ctx, "Go", []match.Advisory{{ID: "GO-2024-0001",
		Modified: imported, Affected: []match.Affected{{Package: match.AffectedPackage{Ecosystem: "Go", Name: "example.com/m"}}}}},
		index.ImportOptions{Now: imported})
	require.NoError(t, err)

	gauge := func(text, name string) float64 {
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, name+`{source="Go"} `); ok {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(t, err)
				return f
			}
		}
		t.Fatalf("%s{source=\"Go\"} not in the scrape:\n%s", name, text)
		return 0
	}
	first := scrape()
	require.InDelta(t, float64(imported.Unix()), gauge(first, "tollgate_advisory_last_import_timestamp_seconds"), 0.001)
	age := gauge(first, "tollgate_advisory_data_age_seconds")
	require.InDelta(t, 2*time.Hour.Seconds(), age, 60)
	time.Sleep(1100 * time.Millisecond)
	require.Greater(t, gauge(scrape(), "tollgate_advisory_data_age_seconds"), age+1, "the age is computed at scrape time")
}
