package admin

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// Findings and scan status of images held in more than one place: an
// image archived in one of its repositories, a multi-platform tag.

// An image archived in one repository but live in another: its findings
// are CLOSED in the archived repository (as ECR closes an archived image's
// findings) and ACTIVE in the live one; FindingsRetention after the
// archive they are gone from the archived repository.
func TestSDKFindingsOfAnImageArchivedInOneRepository(t *testing.T) {
	s := newFakeStore()
	seed(s)
	ctx := context.Background()
	byRepo := func(api *API) map[string]map[string]int {
		srv := newTestServer(t, api)
		c := inspectorClient(srv.URL, testKeyID, testSecret)
		out, err := c.ListFindings(ctx, &inspector2.ListFindingsInput{FilterCriteria: &types.FilterCriteria{
			EcrImageHash: []types.StringFilter{{Comparison: types.StringComparisonEquals, Value: aws.String(dgst(1).String())}}}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]map[string]int{}
		for _, f := range out.Findings {
			r := *f.Resources[0].Details.AwsEcrContainerImage.RepositoryName
			if m[r] == nil {
				m[r] = map[string]int{}
			}
			m[r][string(f.Status)]++
		}
		return m
	}
	archived := t0.Add(99 * time.Hour) // testAPI's clock: t0 + 100h
	ri := s.images[dgst(1)].Repo("app")
	ri.Status, ri.ArchivedAt = index.ImageArchived, &archived
	got := byRepo(testAPI(t, s))
	if got["app"]["CLOSED"] != 3 || got["app"]["ACTIVE"] != 0 || got["mirror/app"]["ACTIVE"] != 3 {
		t.Fatalf("archived in app, live in mirror/app: %v", got)
	}
	old := t0.Add(100*time.Hour - lifecycle.FindingsRetention - time.Minute)
	ri.ArchivedAt = &old
	got = byRepo(testAPI(t, s))
	if len(got["app"]) != 0 || got["mirror/app"]["ACTIVE"] != 3 {
		t.Fatalf("archived in app more than FindingsRetention ago: %v", got)
	}
}

// DescribeImages of a multi-platform tag: the index is never scanned
// itself, so its scan status, completion time and severity counts are its
// platform images' (an attestation manifest left out); PENDING while one
// of them is.
func TestSDKDescribeImagesIndexScanStatus(t *testing.T) {
	s := newFakeStore()
	seed(s)
	idx, att := dgst(9), dgst(10)
	s.images[idx] = &index.ImageRecord{Digest: idx, MediaType: "application/vnd.oci.image.index.v1+json", Index: true,
		Children: []index.ChildImage{
			{Digest: dgst(1), Platform: scan.Platform{OS: "linux", Architecture: "amd64"}},
			{Digest: dgst(2), Platform: scan.Platform{OS: "linux", Architecture: "arm64"}},
			{Digest: att, Platform: scan.Platform{OS: "unknown", Architecture: "unknown"}},
		},
		Repos: []index.RepoImage{{Repository: "app", Tags: []string{"multi"}, PushedAt: t0, Status: index.ImageActive}}}
	later := t0.Add(3 * time.Hour)
	s.coverage[dgst(2)].LastScannedAt = &later
	describe := func() ecrtypes.ImageDetail {
		srv := newTestServer(t, testAPI(t, s))
		out, err := ecrClient(srv.URL).DescribeImages(context.Background(), &ecr.DescribeImagesInput{RepositoryName: aws.String("app"),
			ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("multi")}}})
		if err != nil || len(out.ImageDetails) != 1 {
			t.Fatalf("DescribeImages: %v %+v", err, out)
		}
		return out.ImageDetails[0]
	}
	d := describe()
	if d.ImageScanStatus == nil || d.ImageScanStatus.Status != ecrtypes.ScanStatusActive {
		t.Fatalf("index scan status %+v, want ACTIVE (its platform images are scanned)", d.ImageScanStatus)
	}
	sum := d.ImageScanFindingsSummary
	if sum == nil || sum.ImageScanCompletedAt == nil || !sum.ImageScanCompletedAt.Equal(later) {
		t.Fatalf("summary %+v, want completed at the last platform image's scan %v", sum, later)
	}
	// app@1: CRITICAL, HIGH, LOW; app@2: CRITICAL, MEDIUM.
	if c := sum.FindingSeverityCounts; c["CRITICAL"] != 2 || c["HIGH"] != 1 || c["MEDIUM"] != 1 || c["LOW"] != 1 {
		t.Fatalf("counts %v, want the platform images' together", c)
	}
	// DescribeImageScanFindings of the tag (what `aws ecr wait
	// image-scan-complete` polls): the platform images' findings.
	srv := newTestServer(t, testAPI(t, s))
	fo, err := ecrClient(srv.URL).DescribeImageScanFindings(context.Background(), &ecr.DescribeImageScanFindingsInput{
		RepositoryName: aws.String("app"), ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String("multi")}})
	if err != nil || fo.ImageScanStatus.Status != ecrtypes.ScanStatusActive || len(fo.ImageScanFindings.EnhancedFindings) != 5 ||
		fo.ImageScanFindings.FindingSeverityCounts["CRITICAL"] != 2 {
		t.Fatalf("DescribeImageScanFindings of the index: %v %+v", err, fo)
	}
	s.coverage[dgst(2)].Reason = scan.ReasonPendingInitialScan
	if st := describe().ImageScanStatus; st == nil || st.Status != ecrtypes.ScanStatusPending {
		t.Fatalf("one platform image pending: %+v", st)
	}
	delete(s.coverage, dgst(2))
	if st := describe().ImageScanStatus; st == nil || st.Status != ecrtypes.ScanStatusPending {
		t.Fatalf("one platform image without coverage: %+v", st)
	}
}
