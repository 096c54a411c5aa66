package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/proxy/events"
	"github.com/tollgate-registry/tollgate/scan"
)

// webhookSink is a webhook receiver that keeps the CloudEvents it gets.
type webhookSink struct {
	mu  sync.Mutex
	evs []receivedEvent
}

type receivedEvent struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		FindingArn string `json:"findingArn"`
		Status     string `json:"status"`
		Change     string `json:"tollgateChange"`
		Pkg        struct {
			VulnerabilityID string `json:"vulnerabilityId"`
		} `json:"packageVulnerabilityDetails"`
	} `json:"data"`
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var ev receivedEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.evs = append(w.evs, ev)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// findings returns the Inspector2 Finding events received for vuln.
func (w *webhookSink) findings(vuln string) []receivedEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []receivedEvent
	for _, ev := range w.evs {
		if ev.Type == "Inspector2 Finding" && ev.Data.Pkg.VulnerabilityID == vuln {
			out = append(out, ev)
		}
	}
	return out
}

// TestServeAdvisoryDeltaAnnouncesFindings: with serve's wiring and a
// webhook, an image scanned clean gets a finding when an advisory
// importing through POST /v1/db/import concerns it, and the webhook
// receives "Inspector2 Finding" CREATED / ACTIVE for that finding's ARN;
// a revised advisory that no longer affects the version closes the finding
// and the webhook receives CLOSED for the same ARN.
func TestServeAdvisoryDeltaAnnouncesFindings(t *testing.T) {
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	e := startScanEnv(t, func(c *config.Config) {
		c.Admin.Webhooks = []config.Webhook{{URL: hook.URL}}
	})
	img, _ := apkImage(t, "musl 1.2.4-r1")
	d := e.push(t, "team/app:v1", img)
	e.scanned(t, d, time.Time{})
	if fs := e.findings(t, d); len(fs) != 0 {
		t.Fatalf("findings before any advisory: %+v", fs)
	}

	dir := t.TempDir()
	adv := filepath.Join(dir, "TEST-2026-0202.json")
	if err := os.WriteFile(adv, []byte(criticalMuslAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	var f scan.Finding
	eventually(t, "finding from the delta", func() (bool, string) {
		for _, x := range e.findings(t, d) {
			if x.VulnerabilityID == "CVE-2026-0202" && x.Status == scan.FindingActive {
				f = x
				return true, ""
			}
		}
		return false, "no ACTIVE finding"
	})
	arn := events.Builder{Region: e.s.cfg.Admin.Region}.FindingARN("team/app", f.ID)
	eventually(t, "CREATED event at the webhook", func() (bool, string) {
		evs := sink.findings("CVE-2026-0202")
		for _, ev := range evs {
			if ev.Data.FindingArn == arn && ev.Data.Change == "CREATED" && ev.Data.Status == "ACTIVE" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", evs)
	})

	// A revision fixing the version the image has: the finding closes.
	fixed := `{"schema_version":"1.6.0","id":"TEST-2026-0202","modified":"2026-03-01T00:00:00Z",
	 "aliases":["CVE-2026-0202"],"summary":"musl critical test advisory",
	 "affected":[{"package":{"ecosystem":"Alpine:v3.18","name":"musl"},
	 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2.4-r0"}]}]}]}`
	if err := os.WriteFile(adv, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	eventually(t, "CLOSED event at the webhook", func() (bool, string) {
		evs := sink.findings("CVE-2026-0202")
		for _, ev := range evs {
			if ev.Data.FindingArn == arn && ev.Data.Change == "CLOSED" && ev.Data.Status == "CLOSED" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", evs)
	})
}
