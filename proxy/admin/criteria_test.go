package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// sampleView is one finding: openssl 1:3.0.11-1 in app:v1/latest, CRITICAL,
// score 9.8, pushed at t0, in use by 2 containers (last at t0+5h).
func sampleView() *findingView {
	last := t0.Add(5 * time.Hour)
	f := &scan.Finding{ID: "f", Image: digest.FromString("img"), VulnerabilityID: "CVE-2024-1", AdvisoryID: "DSA-1-1",
		Title: "CVE-2024-1 - openssl", Severity: scan.SeverityCritical, VendorSeverity: "high", FixAvailable: "YES",
		CVSS:            []scan.CVSS{{BaseScore: 9.8}, {BaseScore: 7}},
		Package:         scan.Package{Name: "openssl", Version: "1:3.0.11-1", Kind: scan.KindOS, Ecosystem: "Debian:12", Path: "var/lib/dpkg/status", Layer: digest.FromString("l1"), Arch: "amd64", PURL: "pkg:deb/debian/openssl@3.0.11-1"},
		FirstObservedAt: t0.Add(time.Hour), LastObservedAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(3 * time.Hour)}
	ri := &index.RepoImage{Repository: "team/app", Tags: []string{"v1", "latest"}, PushedAt: t0}
	return &findingView{f: f, status: scan.FindingActive, arn: "arn:x:finding/1", repo: ri.Repository, ri: ri, arch: "amd64",
		inUse: 2, lastUse: &last, account: "000000000000", region: "us-east-1"}
}

func TestFindingCriteria(t *testing.T) {
	ts := func(t time.Time) string { return string(epochJSON(t)) }
	for _, tc := range []struct {
		name, criteria string
		want           bool
	}{
		{"empty matches all", `{}`, true},
		{"null matches all", `null`, true},
		// string: EQUALS / PREFIX / NOT_EQUALS on a single-valued field
		{"severity EQUALS", `{"severity":[{"comparison":"EQUALS","value":"CRITICAL"}]}`, true},
		{"severity EQUALS other", `{"severity":[{"comparison":"EQUALS","value":"HIGH"}]}`, false},
		{"severity OR within field", `{"severity":[{"comparison":"EQUALS","value":"HIGH"},{"comparison":"EQUALS","value":"CRITICAL"}]}`, true},
		{"repository PREFIX", `{"ecrImageRepositoryName":[{"comparison":"PREFIX","value":"team/"}]}`, true},
		{"repository PREFIX miss", `{"ecrImageRepositoryName":[{"comparison":"PREFIX","value":"other/"}]}`, false},
		{"EQUALS is exact, not prefix", `{"ecrImageRepositoryName":[{"comparison":"EQUALS","value":"team"}]}`, false},
		{"NOT_EQUALS passes", `{"vulnerabilityId":[{"comparison":"NOT_EQUALS","value":"CVE-2024-2"}]}`, true},
		{"NOT_EQUALS fails", `{"vulnerabilityId":[{"comparison":"NOT_EQUALS","value":"CVE-2024-1"}]}`, false},
		{"NOT_EQUALS values are AND'ed", `{"vulnerabilityId":[{"comparison":"NOT_EQUALS","value":"CVE-2024-2"},{"comparison":"NOT_EQUALS","value":"CVE-2024-1"}]}`, false},
		{"EQUALS or'ed, NOT_EQUALS and'ed", `{"severity":[{"comparison":"EQUALS","value":"CRITICAL"},{"comparison":"NOT_EQUALS","value":"CRITICAL"}]}`, false},
		{"fields are AND'ed", `{"severity":[{"comparison":"EQUALS","value":"CRITICAL"}],"fixAvailable":[{"comparison":"EQUALS","value":"NO"}]}`, false},
		{"fields AND'ed, both match", `{"severity":[{"comparison":"EQUALS","value":"CRITICAL"}],"fixAvailable":[{"comparison":"EQUALS","value":"YES"}]}`, true},
		{"findingStatus", `{"findingStatus":[{"comparison":"EQUALS","value":"ACTIVE"}]}`, true},
		{"vendorSeverity", `{"vendorSeverity":[{"comparison":"EQUALS","value":"high"}]}`, true},
		{"title PREFIX", `{"title":[{"comparison":"PREFIX","value":"CVE-2024-1 "}]}`, true},
		{"componentId", `{"componentId":[{"comparison":"PREFIX","value":"pkg:deb/"}]}`, true},
		{"ecrImageHash", `{"ecrImageHash":[{"comparison":"EQUALS","value":"` + digest.FromString("img").String() + `"}]}`, true},
		{"ecrImageArchitecture", `{"ecrImageArchitecture":[{"comparison":"EQUALS","value":"arm64"}]}`, false},
		{"vulnerabilitySource from advisory id", `{"vulnerabilitySource":[{"comparison":"EQUALS","value":"DEBIAN_CVE"}]}`, true},
		{"resourceType", `{"resourceType":[{"comparison":"EQUALS","value":"AWS_ECR_CONTAINER_IMAGE"}]}`, true},
		// multi-valued field
		{"tags EQUALS any", `{"ecrImageTags":[{"comparison":"EQUALS","value":"latest"}]}`, true},
		{"tags NOT_EQUALS none", `{"ecrImageTags":[{"comparison":"NOT_EQUALS","value":"latest"}]}`, false},
		{"tags PREFIX", `{"ecrImageTags":[{"comparison":"PREFIX","value":"v"}]}`, true},
		// fields that never apply to images
		{"lambda EQUALS matches nothing", `{"lambdaFunctionName":[{"comparison":"EQUALS","value":"f"}]}`, false},
		{"lambda NOT_EQUALS matches all", `{"lambdaFunctionName":[{"comparison":"NOT_EQUALS","value":"f"}]}`, true},
		{"epssScore range matches nothing", `{"epssScore":[{"lowerInclusive":0}]}`, false},
		{"portRange matches nothing", `{"portRange":[{"beginInclusive":1,"endInclusive":2}]}`, false},
		// dates: inclusive, open bounds, OR
		{"firstObservedAt inclusive start", `{"firstObservedAt":[{"startInclusive":` + ts(t0.Add(time.Hour)) + `}]}`, true},
		{"firstObservedAt inclusive end", `{"firstObservedAt":[{"endInclusive":` + ts(t0.Add(time.Hour)) + `}]}`, true},
		{"firstObservedAt after", `{"firstObservedAt":[{"startInclusive":` + ts(t0.Add(90*time.Minute)) + `}]}`, false},
		{"lastObservedAt in range", `{"lastObservedAt":[{"startInclusive":` + ts(t0) + `,"endInclusive":` + ts(t0.Add(3*time.Hour)) + `}]}`, true},
		{"updatedAt OR of ranges", `{"updatedAt":[{"endInclusive":` + ts(t0) + `},{"startInclusive":` + ts(t0.Add(3*time.Hour)) + `}]}`, true},
		{"ecrImagePushedAt before", `{"ecrImagePushedAt":[{"endInclusive":` + ts(t0.Add(-time.Second)) + `}]}`, false},
		{"ecrImageLastInUseAt", `{"ecrImageLastInUseAt":[{"startInclusive":` + ts(t0.Add(5*time.Hour)) + `}]}`, true},
		{"fractional seconds", `{"ecrImagePushedAt":[{"startInclusive":` + ts(t0.Add(-500*time.Millisecond)) + `,"endInclusive":` + ts(t0.Add(500*time.Millisecond)) + `}]}`, true},
		// numbers: inclusive, open bounds, special values
		{"inspectorScore max CVSS", `{"inspectorScore":[{"lowerInclusive":9.8}]}`, true},
		{"inspectorScore upper", `{"inspectorScore":[{"upperInclusive":9.7}]}`, false},
		{"inspectorScore Infinity", `{"inspectorScore":[{"lowerInclusive":0,"upperInclusive":"Infinity"}]}`, true},
		{"ecrImageInUseCount", `{"ecrImageInUseCount":[{"lowerInclusive":2,"upperInclusive":2}]}`, true},
		{"ecrImageInUseCount miss", `{"ecrImageInUseCount":[{"lowerInclusive":3}]}`, false},
		// packages: fields AND'ed within a filter, filters OR'ed
		{"package name", `{"vulnerablePackages":[{"name":{"comparison":"EQUALS","value":"openssl"}}]}`, true},
		{"package name+version", `{"vulnerablePackages":[{"name":{"comparison":"EQUALS","value":"openssl"},"version":{"comparison":"EQUALS","value":"3.0.11"}}]}`, true},
		{"package release and epoch", `{"vulnerablePackages":[{"release":{"comparison":"EQUALS","value":"1"},"epoch":{"lowerInclusive":1,"upperInclusive":1}}]}`, true},
		{"package AND within filter", `{"vulnerablePackages":[{"name":{"comparison":"EQUALS","value":"openssl"},"version":{"comparison":"EQUALS","value":"9"}}]}`, false},
		{"package OR across filters", `{"vulnerablePackages":[{"name":{"comparison":"EQUALS","value":"zlib"}},{"filePath":{"comparison":"PREFIX","value":"var/lib/dpkg"}}]}`, true},
		{"package sourceLayerHash", `{"vulnerablePackages":[{"sourceLayerHash":{"comparison":"EQUALS","value":"` + digest.FromString("l1").String() + `"}}]}`, true},
		{"package NOT_EQUALS", `{"vulnerablePackages":[{"name":{"comparison":"NOT_EQUALS","value":"openssl"}}]}`, false},
		{"resourceTags EQUALS", `{"resourceTags":[{"comparison":"EQUALS","key":"team","value":"a"}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := findingSchema.compile([]byte(tc.criteria))
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			if got := c.match(sampleView()); got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFindingCriteriaRejects(t *testing.T) {
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = fmt.Sprintf(`{"comparison":"EQUALS","value":"v%d"}`, i)
	}
	for _, tc := range []struct{ name, criteria, want string }{
		{"unknown field", `{"nope":[]}`, "unknown field"},
		{"bad comparison", `{"severity":[{"comparison":"CONTAINS","value":"x"}]}`, "comparison"},
		{"more than 10 values", `{"severity":[` + strings.Join(eleven, ",") + `]}`, "at most 10"},
		{"date not a number", `{"updatedAt":[{"startInclusive":"yesterday"}]}`, "timestamp"},
		{"number not a number", `{"inspectorScore":[{"lowerInclusive":"high"}]}`, "number"},
		{"not an object", `[1,2]`, "filterCriteria"},
		{"field not a list", `{"severity":{"comparison":"EQUALS"}}`, "severity"},
		{"map comparison", `{"resourceTags":[{"comparison":"PREFIX","key":"a"}]}`, "comparison"},
		{"package comparison", `{"vulnerablePackages":[{"name":{"comparison":"LIKE","value":"a"}}]}`, "comparison"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := findingSchema.compile([]byte(tc.criteria))
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != "ValidationException" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ValidationException mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCoverageCriteria(t *testing.T) {
	last := t0
	v := &coverageView{resourceType: "AWS_ECR_CONTAINER_IMAGE", repo: "app", tags: []string{"v1"}, statusCode: "ACTIVE",
		reason: "SUCCESSFUL", lastScanned: &last, inUse: 1, account: "000000000000", resourceID: "arn:r"}
	for _, tc := range []struct {
		criteria string
		want     bool
	}{
		{`{"scanStatusCode":[{"comparison":"EQUALS","value":"ACTIVE"}]}`, true},
		{`{"scanStatusReason":[{"comparison":"NOT_EQUALS","value":"SUCCESSFUL"}]}`, false},
		{`{"ecrRepositoryName":[{"comparison":"EQUALS","value":"app"}],"ecrImageTags":[{"comparison":"EQUALS","value":"v2"}]}`, false},
		{`{"lastScannedAt":[{"startInclusive":` + string(epochJSON(t0)) + `}]}`, true},
		{`{"imagePulledAt":[{"startInclusive":0}]}`, false}, // never pulled
		{`{"ecrImageInUseCount":[{"lowerInclusive":1}]}`, true},
		{`{"ec2InstanceTags":[{"comparison":"EQUALS","key":"a","value":"b"}]}`, false},
	} {
		c, err := coverageSchema.compile([]byte(tc.criteria))
		if err != nil {
			t.Fatalf("%s: %v", tc.criteria, err)
		}
		if got := c.match(v); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.criteria, got, tc.want)
		}
	}
	// Coverage string filters have no PREFIX.
	if _, err := coverageSchema.compile([]byte(`{"ecrRepositoryName":[{"comparison":"PREFIX","value":"a"}]}`)); err == nil {
		t.Fatal("PREFIX accepted in CoverageFilterCriteria")
	}
}

func TestEpochJSON(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 0), "1700000000"},
		{time.Unix(1700000000, 250e6), "1700000000.25"},
	} {
		if got := string(epochJSON(tc.t)); got != tc.want {
			t.Errorf("epochJSON(%v) = %s, want %s", tc.t, got, tc.want)
		}
		var e epochTime
		if err := json.Unmarshal([]byte(tc.want), &e); err != nil || !e.Time.Equal(tc.t) {
			t.Errorf("round trip %s: %v %v", tc.want, e.Time, err)
		}
	}
}

// TestPaginationStableUnderWrites pages through ListFindings while another
// goroutine keeps adding findings: every finding present before the first
// page is returned exactly once, and no finding is returned twice.
func TestPaginationStableUnderWrites(t *testing.T) {
	s := newFakeStore()
	seed(s)
	base := len(s.findings)
	for i := 0; i < 40; i++ {
		f := s.findings[i%base]
		f.ID = fmt.Sprintf("pre-%02d", i)
		s.findings = append(s.findings, f)
	}
	api := testAPI(t, s)
	ctx := context.Background()
	before := map[string]bool{}
	if err := api.eachView(ctx, func(v *findingView) error { before[v.arn] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	// A concurrent writer adds a bounded number of findings while pages are
	// read, and every page is followed by one more write, so writes land
	// between pages whatever the scheduling.
	seeds := append([]scan.Finding(nil), s.findings[:base]...)
	n := 0
	add := func(prefix string) {
		f := seeds[n%base]
		f.ID = fmt.Sprintf("%s-%04d", prefix, n)
		f.Severity = []scan.Severity{scan.SeverityCritical, scan.SeverityLow, scan.SeverityHigh}[n%3]
		s.addFinding(f)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			f := seeds[i%base]
			f.ID = fmt.Sprintf("bg-%04d", i)
			s.addFinding(f)
		}
	}()
	for _, sortBy := range []string{"", `,"sortCriteria":{"field":"SEVERITY","sortOrder":"ASC"}`, `,"sortCriteria":{"field":"ECR_IMAGE_REPOSITORY_NAME","sortOrder":"DESC"}`} {
		seen := map[string]int{}
		token := ""
		for pages := 0; ; pages++ {
			if pages > 10000 {
				t.Fatal("pagination does not end")
			}
			body := `{"maxResults":7` + sortBy
			if token != "" {
				body += `,"nextToken":"` + token + `"`
			}
			out, err := api.listFindings(ctx, []byte(body+"}"))
			if err != nil {
				t.Fatal(err)
			}
			res := out.(listFindingsOutput)
			for _, f := range res.Findings {
				seen[f.FindingArn]++
			}
			if res.NextToken == "" {
				break
			}
			token = res.NextToken
			n++
			add("between")
		}
		for arn, n := range seen {
			if n != 1 {
				t.Fatalf("sort %q: %s returned %d times", sortBy, arn, n)
			}
		}
		for arn := range before {
			if seen[arn] != 1 {
				t.Fatalf("sort %q: pre-existing %s returned %d times", sortBy, arn, seen[arn])
			}
		}
	}
	<-done
}
