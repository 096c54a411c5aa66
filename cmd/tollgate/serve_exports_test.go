package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"

	"github.com/tollgate-registry/tollgate/scan"
)

// TestServeSbomExportRunsInBackground: in serve, CreateSbomExport returns a
// reportId, the export workers serve wires finish it (GetSbomExport polled
// until SUCCEEDED), and the CycloneDX document lists the image's finding
// as a vulnerability.
func TestServeSbomExportRunsInBackground(t *testing.T) {
	e := startScanEnv(t, nil)
	ctx := context.Background()
	adv := filepath.Join(t.TempDir(), "TEST-2026-0202.json")
	if err := os.WriteFile(adv, []byte(criticalMuslAdvisory), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dbImport(t, adv)
	img, _ := apkImage(t, "musl 1.2.4-r1")
	d := e.push(t, "team/app:v1", img)
	eventually(t, "finding", func() (bool, string) {
		fs := e.findings(t, d)
		return hasFinding(fs, "CVE-2026-0202", scan.FindingActive), fmt.Sprintf("%+v", fs)
	})

	ic := inspector2.New(inspector2.Options{BaseEndpoint: aws.String(e.adm.URL), Region: "us-east-1",
		HTTPClient: &http.Client{Transport: tokenTransport{tok: "t0ken"}}, RetryMaxAttempts: 1, Credentials: aws.AnonymousCredentials{}})
	se, err := ic.CreateSbomExport(ctx, &inspector2.CreateSbomExportInput{ReportFormat: types.SbomReportFormatCyclonedx14,
		S3Destination: &types.Destination{BucketName: aws.String("ignored"), KmsKeyArn: aws.String("ignored")}})
	if err != nil {
		t.Fatal(err)
	}
	var st *inspector2.GetSbomExportOutput
	eventually(t, "export", func() (bool, string) {
		st, err = ic.GetSbomExport(ctx, &inspector2.GetSbomExportInput{ReportId: se.ReportId})
		return err == nil && st.Status != types.ExternalReportStatusInProgress, fmt.Sprintf("%+v %v", st, err)
	})
	if st.Status != types.ExternalReportStatusSucceeded {
		t.Fatalf("export: %+v (%s)", st, aws.ToString(st.ErrorMessage))
	}
	f, err := os.Open(filepath.Join(e.s.cfg.DataDir, "sbom", aws.ToString(se.ReportId), "team_app_"+d.Encoded()+".cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(f, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_4 || bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) != 1 ||
		(*bom.Vulnerabilities)[0].ID != "CVE-2026-0202" {
		t.Fatalf("exported BOM %v vulnerabilities %+v", bom.SpecVersion, bom.Vulnerabilities)
	}
}
