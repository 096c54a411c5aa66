package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/config"
)

// mirrorOf starts a mirror (with policy) in front of an upstream holding
// img at repoTag, and returns it with img's digest.
func mirrorOf(t *testing.T, repoTag string, policy config.PullPolicy) (*scanEnv, digest.Digest) {
	t.Helper()
	up, _ := newCountingUpstream(t)
	img, _ := apkImage(t, "musl 1.2.4-r1")
	upRef, err := nameRef(strings.TrimPrefix(up.URL, "http://") + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(upRef, img); err != nil {
		t.Fatal(err)
	}
	e := startScanEnv(t, func(c *config.Config) {
		c.Upstream.Mirror, c.Upstream.URL = true, up.URL
		c.Policy = []config.PullPolicy{policy}
	})
	d, _ := img.Digest()
	return e, digest.Digest(d.String())
}

func (e *scanEnv) inspector() *inspector2.Client {
	return inspector2.New(inspector2.Options{BaseEndpoint: aws.String(e.adm.URL), Region: "us-east-1",
		HTTPClient: &http.Client{Transport: tokenTransport{tok: "t0ken"}}, RetryMaxAttempts: 1, Credentials: aws.AnonymousCredentials{}})
}

func eq(v string) []types.StringFilter {
	return []types.StringFilter{{Comparison: types.StringComparisonEquals, Value: aws.String(v)}}
}

// TestMirrorRefusedImageIsVisibleAndSuppressible: an image the pull policy
// refuses on its first pull through the mirror (never served, so never
// pulled) is known under the repository it was requested as: the
// refusal's suggested findings query (repository + digest) lists its
// finding, coverage lists it scanned, and a SUPPRESS rule naming that
// repository lets the next pull through.
func TestMirrorRefusedImageIsVisibleAndSuppressible(t *testing.T) {
	e, d := mirrorOf(t, "free/go-static:v1", config.PullPolicy{RepositoryFilter: "*", Severity: "CRITICAL", ScanTimeout: 20 * time.Second})
	adv := filepath.Join(t.TempDir(), "TEST-2026-0202.json")
	if err := os.WriteFile(adv, []byte(criticalMuslAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)

	code, body := e.getManifest(t, "free/go-static", "v1")
	if code != http.StatusForbidden || !strings.Contains(body, "1 CRITICAL") || !strings.Contains(body, "free/go-static@"+d.String()) {
		t.Fatalf("first pull through the mirror: %d %s", code, body)
	}

	ctx := context.Background()
	ic := e.inspector()
	lf, err := ic.ListFindings(ctx, &inspector2.ListFindingsInput{FilterCriteria: &types.FilterCriteria{
		EcrImageRepositoryName: eq("free/go-static"), EcrImageHash: eq(d.String())}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Findings) != 1 || lf.Findings[0].Severity != types.SeverityCritical {
		t.Fatalf("findings of the refused image free/go-static@%s: %d, want its 1 CRITICAL", d, len(lf.Findings))
	}
	eventually(t, "coverage of the refused image", func() (bool, string) {
		lc, err := ic.ListCoverage(ctx, &inspector2.ListCoverageInput{FilterCriteria: &types.CoverageFilterCriteria{
			EcrRepositoryName: []types.CoverageStringFilter{{Comparison: types.CoverageStringComparisonEquals, Value: aws.String("free/go-static")}}}})
		if err != nil {
			return false, err.Error()
		}
		for _, r := range lc.CoveredResources {
			if r.ResourceMetadata != nil && r.ResourceMetadata.EcrImage != nil && r.ScanStatus != nil &&
				r.ResourceId != nil && strings.Contains(*r.ResourceId, d.Encoded()) && r.LastScannedAt != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d covered resources, none free/go-static@%s scanned", len(lc.CoveredResources), d)
	})

	if _, err := ic.CreateFilter(ctx, &inspector2.CreateFilterInput{Name: aws.String("accepted-risk"), Action: types.FilterActionSuppress,
		FilterCriteria: &types.FilterCriteria{VulnerabilityId: eq("CVE-2026-0202"), EcrImageRepositoryName: eq("free/go-static")}}); err != nil {
		t.Fatal(err)
	}
	if code, body := e.getManifest(t, "free/go-static", "v1"); code != http.StatusOK {
		t.Fatalf("pull whose only finding is SUPPRESSED in its repository: %d %s", code, body)
	}
}

// TestMirrorPolicySuppressedBeforeFirstPull: a SUPPRESS rule for the
// repository created before an image was ever pulled through the mirror
// applies to its first pull.
func TestMirrorPolicySuppressedBeforeFirstPull(t *testing.T) {
	e, _ := mirrorOf(t, "free/go-static:v1", config.PullPolicy{RepositoryFilter: "*", Severity: "CRITICAL", ScanTimeout: 20 * time.Second})
	adv := filepath.Join(t.TempDir(), "TEST-2026-0202.json")
	if err := os.WriteFile(adv, []byte(criticalMuslAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	if _, err := e.inspector().CreateFilter(context.Background(), &inspector2.CreateFilterInput{Name: aws.String("accepted-risk"),
		Action: types.FilterActionSuppress, FilterCriteria: &types.FilterCriteria{
			VulnerabilityId: eq("CVE-2026-0202"), EcrImageRepositoryName: eq("free/go-static"), EcrImageTags: eq("v1")}}); err != nil {
		t.Fatal(err)
	}
	if code, body := e.getManifest(t, "free/go-static", "v1"); code != http.StatusOK {
		t.Fatalf("first pull whose only finding a rule for its repository and tag suppresses: %d %s", code, body)
	}
}

// TestMirrorPolicyShortScanWait: with a scan wait far shorter than any
// scan, the first pull through the mirror is refused as "not finished" but
// the scan completes and is recorded (coverage lastScannedAt), so a retry
// gets a decision on the findings instead of the same refusal forever.
func TestMirrorPolicyShortScanWait(t *testing.T) {
	e, d := mirrorOf(t, "team/app:v1", config.PullPolicy{RepositoryFilter: "*", Severity: "CRITICAL", ScanTimeout: time.Nanosecond})
	code, body := e.getManifest(t, "team/app", "v1")
	if code != http.StatusForbidden || !strings.Contains(body, "has not finished its vulnerability scan") {
		t.Fatalf("first pull with a 1ns scan wait: %d %s", code, body)
	}
	e.scanned(t, d, time.Time{})
	if code, body := e.getManifest(t, "team/app", "v1"); code != http.StatusOK {
		t.Fatalf("pull after the scan was recorded: %d %s", code, body)
	}
}
