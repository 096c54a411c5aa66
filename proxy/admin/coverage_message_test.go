package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"

	"github.com/tollgate-registry/tollgate/scan"
)

// A partly scanned image (a corrupt layer) shows its reason in ListCoverage
// (tollgate's own reason, which the SDK accepts) and the message naming the
// layer in scanStatus.message and ECR's scan status description.
func TestCoverageShowsLayerErrorReasonAndMessage(t *testing.T) {
	s := newFakeStore()
	seed(s)
	msg := "layer sha256:4ccf8084: CORRUPT_LAYER: unexpected EOF"
	s.coverage[dgst(3)].Reason, s.coverage[dgst(3)].Message = scan.ReasonCorruptLayer, msg
	srv := newTestServer(t, testAPI(t, s))
	ctx := context.Background()
	byRepo := func(name string) *types.CoverageFilterCriteria {
		return &types.CoverageFilterCriteria{
			EcrRepositoryName: []types.CoverageStringFilter{{Comparison: types.CoverageStringComparisonEquals, Value: aws.String(name)}},
			ResourceType:      []types.CoverageStringFilter{{Comparison: types.CoverageStringComparisonEquals, Value: aws.String("AWS_ECR_CONTAINER_IMAGE")}}}
	}

	out, err := inspectorClient(srv.URL, testKeyID, testSecret).ListCoverage(ctx, &inspector2.ListCoverageInput{FilterCriteria: byRepo("base")})
	if err != nil || len(out.CoveredResources) != 1 {
		t.Fatalf("coverage: %+v, %v", out, err)
	}
	if st := out.CoveredResources[0].ScanStatus; st.StatusCode != types.ScanStatusCodeActive || st.Reason != "CORRUPT_LAYER" {
		t.Fatalf("scan status %+v, want ACTIVE / CORRUPT_LAYER", st)
	}

	req, _ := http.NewRequest("POST", srv.URL+"/coverage/list", strings.NewReader(`{"filterCriteria":{"ecrRepositoryName":[{"comparison":"EQUALS","value":"base"}],"resourceType":[{"comparison":"EQUALS","value":"AWS_ECR_CONTAINER_IMAGE"}]}}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var raw struct {
		CoveredResources []struct {
			ScanStatus struct{ Reason, Message string } `json:"scanStatus"`
		} `json:"coveredResources"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.CoveredResources) != 1 || raw.CoveredResources[0].ScanStatus.Message != msg {
		t.Fatalf("coverage JSON %s: %v", body, err)
	}

	img, err := ecrClient(srv.URL).DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("base")})
	if err != nil || len(img.ImageDetails) != 1 {
		t.Fatalf("describe images: %+v, %v", img, err)
	}
	st := img.ImageDetails[0].ImageScanStatus
	if st.Status != ecrtypes.ScanStatusActive || !strings.Contains(aws.ToString(st.Description), "CORRUPT_LAYER: "+msg) {
		t.Fatalf("ECR scan status %s %q, want ACTIVE with the reason and message", st.Status, aws.ToString(st.Description))
	}
}
