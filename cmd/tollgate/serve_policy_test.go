package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/scan"
)

// criticalMuslAdvisory is an OSV advisory making musl < 1.2.4-r2 a CRITICAL
// (CVSS 9.8) finding.
const criticalMuslAdvisory = `{"schema_version":"1.6.0","id":"TEST-2026-0202","modified":"2026-01-01T00:00:00Z",
 "aliases":["CVE-2026-0202"],"summary":"musl critical test advisory",
 "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
 "affected":[{"package":{"ecosystem":"Alpine:v3.18","name":"musl"},
 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.2.4-r2"}]}]}]}`

// getManifest GETs repo:ref's manifest through the proxy and returns the
// status and body.
func (e *scanEnv) getManifest(t *testing.T, repo, ref string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.reg.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServePolicyHonoursSuppression: with serve's wiring, a pull of an
// image with a CRITICAL finding is refused by a HIGH pull policy; a
// SUPPRESS rule (CreateFilter) matching the finding lets the pull through,
// and deleting the rule refuses it again — the policy counts findings as
// the admin API reports them.
func TestServePolicyHonoursSuppression(t *testing.T) {
	e := startScanEnv(t, func(c *config.Config) {
		c.Policy = []config.PullPolicy{{RepositoryFilter: "team/*", Severity: "HIGH", ScanTimeout: 20 * time.Second}}
	})
	ctx := context.Background()
	adv := filepath.Join(t.TempDir(), "TEST-2026-0202.json")
	if err := os.WriteFile(adv, []byte(criticalMuslAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	img, _ := apkImage(t, "musl 1.2.4-r1")
	d := e.push(t, "team/app:v1", img)
	eventually(t, "CRITICAL finding", func() (bool, string) {
		fs := e.findings(t, d)
		return hasFinding(fs, "CVE-2026-0202", scan.FindingActive), fmt.Sprintf("%+v", fs)
	})

	if code, body := e.getManifest(t, "team/app", "v1"); code != http.StatusForbidden || !strings.Contains(body, "DENIED") {
		t.Fatalf("pull with an ACTIVE CRITICAL finding: %d %s", code, body)
	}

	ic := inspector2.New(inspector2.Options{BaseEndpoint: aws.String(e.adm.URL), Region: "us-east-1",
		HTTPClient: &http.Client{Transport: tokenTransport{tok: "t0ken"}}, RetryMaxAttempts: 1, Credentials: aws.AnonymousCredentials{}})
	cf, err := ic.CreateFilter(ctx, &inspector2.CreateFilterInput{Name: aws.String("accepted-risk"), Action: types.FilterActionSuppress,
		FilterCriteria: &types.FilterCriteria{VulnerabilityId: []types.StringFilter{
			{Comparison: types.StringComparisonEquals, Value: aws.String("CVE-2026-0202")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := e.getManifest(t, "team/app", "v1"); code != http.StatusOK {
		t.Fatalf("pull whose only finding is SUPPRESSED: %d %s", code, body)
	}
	if code, _ := e.getManifest(t, "team/app", d.String()); code != http.StatusOK {
		t.Fatalf("pull by digest whose only finding is SUPPRESSED: %d", code)
	}

	if _, err := ic.DeleteFilter(ctx, &inspector2.DeleteFilterInput{Arn: cf.Arn}); err != nil {
		t.Fatal(err)
	}
	if code, body := e.getManifest(t, "team/app", "v1"); code != http.StatusForbidden || !strings.Contains(body, "1 CRITICAL") {
		t.Fatalf("pull after the suppression rule was deleted: %d %s", code, body)
	}
}
