//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// adminDo sends an authenticated request to the admin API and returns the
// status and body.
func (s *server) adminDo(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.Admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// importAdvisories imports paths on the running server (POST /v1/db/import:
// the server holds Badger's directory lock, so `tollgate db import` cannot).
func (s *server) importAdvisories(t testing.TB, merge bool, paths ...string) []importResult {
	t.Helper()
	status, body := s.adminDo(t, http.MethodPost, "/v1/db/import", map[string]any{"paths": paths, "merge": merge})
	if status != http.StatusOK {
		t.Fatalf("POST /v1/db/import %v: %d %s", paths, status, body)
	}
	var out struct {
		Results []importResult `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("import answer %s: %v", body, err)
	}
	return out.Results
}

// importResult is the part of index.UpdateResult the suite reads.
type importResult struct {
	Source string `json:"Source"`
	Count  int    `json:"Count"`
	Err    string `json:"Err"`
}

// cli runs the tollgate CLI against this server's admin API.
func (s *server) cli(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args = append(args, "--admin-url", "http://"+s.Admin, "--token", s.Token)
	out, err := run(t, ctx, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// coveredImage is one AWS_ECR_CONTAINER_IMAGE of ListCoverage.
type coveredImage struct {
	Repo, Digest  string
	Tags          []string
	StatusCode    string
	Reason        string
	LastScannedAt float64
	Frequency     string
}

// coverage lists image coverage with `tollgate coverage list -o json`,
// keyed by repo@digest.
func (s *server) coverage(t testing.TB) map[string]coveredImage {
	t.Helper()
	out := s.cli(t, "coverage", "list", "--type", "image", "-o", "json")
	var page struct {
		CoveredResources []struct {
			ResourceID       string   `json:"resourceId"`
			ResourceType     string   `json:"resourceType"`
			LastScannedAt    *float64 `json:"lastScannedAt"`
			ResourceMetadata struct {
				EcrImage *struct {
					Tags []string `json:"tags"`
				} `json:"ecrImage"`
				EcrRepository struct {
					Name          string `json:"name"`
					ScanFrequency string `json:"scanFrequency"`
				} `json:"ecrRepository"`
			} `json:"resourceMetadata"`
			ScanStatus struct {
				StatusCode string `json:"statusCode"`
				Reason     string `json:"reason"`
			} `json:"scanStatus"`
		} `json:"coveredResources"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("coverage list -o json: %v\n%s", err, out)
	}
	m := map[string]coveredImage{}
	for _, r := range page.CoveredResources {
		if r.ResourceType != "AWS_ECR_CONTAINER_IMAGE" {
			continue
		}
		ci := coveredImage{Repo: r.ResourceMetadata.EcrRepository.Name, Digest: r.ResourceID[strings.LastIndexByte(r.ResourceID, '/')+1:],
			StatusCode: r.ScanStatus.StatusCode, Reason: r.ScanStatus.Reason, Frequency: r.ResourceMetadata.EcrRepository.ScanFrequency}
		if r.LastScannedAt != nil {
			ci.LastScannedAt = *r.LastScannedAt
		}
		if r.ResourceMetadata.EcrImage != nil {
			ci.Tags = r.ResourceMetadata.EcrImage.Tags
		}
		m[ci.Repo+"@"+ci.Digest] = ci
	}
	return m
}

// pendingReason reports a coverage reason that a scan will still change.
func pendingReason(r string) bool {
	return r == "PENDING_INITIAL_SCAN" || r == "PENDING_REVIVAL_SCAN" || r == "SCAN_IN_PROGRESS"
}

// waitCoverage polls coverage (bounded) until every image in want (repo@digest)
// is listed with a settled reason and done(ci) holds for it.
func (s *server) waitCoverage(t testing.TB, want []string, limit time.Duration, done func(coveredImage) bool) map[string]coveredImage {
	t.Helper()
	deadline := time.Now().Add(limit)
	var cov map[string]coveredImage
	for {
		cov = s.coverage(t)
		var waiting []string
		for _, k := range want {
			ci, ok := cov[k]
			if !ok || pendingReason(ci.Reason) || !done(ci) {
				waiting = append(waiting, fmt.Sprintf("%s (%s %s)", k, ci.StatusCode, ci.Reason))
			}
		}
		if len(waiting) == 0 {
			return cov
		}
		if time.Now().After(deadline) {
			s.dumpLogs(t)
			t.Fatalf("after %s still waiting for the scans of:\n  %s", limit, strings.Join(waiting, "\n  "))
		}
		time.Sleep(time.Second)
	}
}

// finding is the part of an Inspector finding the suite reads.
type finding struct {
	Status                      string `json:"status"`
	PackageVulnerabilityDetails struct {
		VulnerabilityID        string   `json:"vulnerabilityId"`
		RelatedVulnerabilities []string `json:"relatedVulnerabilities"`
		VulnerablePackages     []struct {
			Name            string `json:"name"`
			Version         string `json:"version"`
			SourceLayerHash string `json:"sourceLayerHash"`
			PackageManager  string `json:"packageManager"`
		} `json:"vulnerablePackages"`
	} `json:"packageVulnerabilityDetails"`
}

// ids returns the finding's vulnerability id and related ids.
func (f finding) ids() []string {
	return append([]string{f.PackageVulnerabilityDetails.VulnerabilityID}, f.PackageVulnerabilityDetails.RelatedVulnerabilities...)
}

// findings lists the ACTIVE findings of repo@digest with
// `tollgate findings list -o json`.
func (s *server) findings(t testing.TB, image string) []finding {
	t.Helper()
	return s.findingsStatus(t, image, "ACTIVE")
}

// findingsStatus lists the findings of repo@digest in status (ACTIVE,
// SUPPRESSED, CLOSED or all).
func (s *server) findingsStatus(t testing.TB, image, status string) []finding {
	t.Helper()
	out := s.cli(t, "findings", "list", "--image", image, "--status", status, "-o", "json")
	var page struct {
		Findings []finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("findings list -o json: %v\n%.2000s", err, out)
	}
	return page.Findings
}

// component is one CycloneDX component with tollgate's properties.
type component struct {
	Name, Version, PURL      string
	Ecosystem, Layer, Source string
	OSManaged                bool
}

// sbom fetches repo@digest's CycloneDX SBOM with `tollgate sbom`.
func (s *server) sbom(t testing.TB, image string) []component {
	t.Helper()
	out := s.cli(t, "sbom", image, "--format", "cyclonedx")
	var bom struct {
		Components []struct {
			Type       string `json:"type"`
			Name       string `json:"name"`
			Version    string `json:"version"`
			PURL       string `json:"purl"`
			Properties []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"properties"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(out), &bom); err != nil {
		t.Fatalf("sbom %s: %v\n%.2000s", image, err, out)
	}
	var cs []component
	for _, c := range bom.Components {
		if c.Type == "operating-system" {
			continue
		}
		x := component{Name: c.Name, Version: c.Version, PURL: c.PURL}
		for _, p := range c.Properties {
			switch p.Name {
			case "tollgate:ecosystem":
				x.Ecosystem = p.Value
			case "tollgate:layer":
				x.Layer = p.Value
			case "tollgate:source":
				x.Source = p.Value
			case "tollgate:osManaged":
				x.OSManaged = p.Value == "true"
			}
		}
		cs = append(cs, x)
	}
	return cs
}

// metric reads one unlabelled gauge from GET /metrics.
func (s *server) metric(t testing.TB, name string) (float64, bool) {
	t.Helper()
	status, body := s.adminDo(t, http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// writeConfig writes a serve config file that turns off the background
// advisory download (the suite imports ../shared/vulndata instead).
func writeConfig(t testing.TB, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(p, []byte("db:\n  refreshInterval: 0s\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// scanningWired reports whether this tollgate serve scans: it registers
// POST /v1/db/import with its scan wiring (an unknown admin route is 404/405).
func (s *server) scanningWired(t testing.TB) bool {
	t.Helper()
	status, _ := s.adminDo(t, http.MethodPost, "/v1/db/import", map[string]any{"paths": []string{}})
	return status == http.StatusBadRequest
}

// skipUnlessScanning skips loudly when serve does not scan.
func skipUnlessScanning(t testing.TB, s *server) {
	t.Helper()
	if !s.scanningWired(t) {
		t.Skip("!!! SKIPPING scan checks: this tollgate serve does not scan (no POST /v1/db/import on the admin listener: cmd/tollgate/serve_scan.go's wireScan is not wired) !!!")
	}
}
