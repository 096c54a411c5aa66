package admin

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// runExports runs api's export workers until the test ends.
func runExports(t *testing.T, api *API) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = api.RunExports(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// awaitSbomExport polls GetSbomExport, as a client of Inspector does, until
// the export is no longer IN_PROGRESS; the deadline only bounds a hang.
func awaitSbomExport(t *testing.T, c *inspector2.Client, id *string) *inspector2.GetSbomExportOutput {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.GetSbomExport(context.Background(), &inspector2.GetSbomExportInput{ReportId: id})
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != types.ExternalReportStatusInProgress {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("sbom export %s still IN_PROGRESS", aws.ToString(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitReport polls GetFindingsReportStatus until it is no longer IN_PROGRESS.
func awaitReport(t *testing.T, c *inspector2.Client, id *string) *inspector2.GetFindingsReportStatusOutput {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.GetFindingsReportStatus(context.Background(), &inspector2.GetFindingsReportStatusInput{ReportId: id})
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != types.ExternalReportStatusInProgress {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("findings report %s still IN_PROGRESS", aws.ToString(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gatedSBOM writes the fake store's SBOMs once release is closed (or fails
// when its context ends), telling started when a write begins.
type gatedSBOM struct {
	inner   SBOMExporter
	started chan struct{}
	release chan struct{}
}

func (g gatedSBOM) WriteSBOM(ctx context.Context, repo string, d digest.Digest, format string, w io.Writer) error {
	select {
	case g.started <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return g.inner.WriteSBOM(ctx, repo, d, format, w)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func gatedAPI(t *testing.T, dir string, g gatedSBOM) *API {
	t.Helper()
	s := newFakeStore()
	seed(s)
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g.inner = s
	return NewAPI(APIOptions{Findings: s, Images: s, Coverage: s, Filters: index.NewFilters(db), SBOM: g,
		SBOMDir: filepath.Join(dir, "sbom"), ReportDir: filepath.Join(dir, "reports"), Logger: zerolog.Nop()})
}

func createSbom(t *testing.T, c *inspector2.Client) *string {
	t.Helper()
	// A Create that did the work in the request would block on the gate.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	se, err := c.CreateSbomExport(ctx, &inspector2.CreateSbomExportInput{ReportFormat: types.SbomReportFormatSpdx23,
		S3Destination: &types.Destination{BucketName: aws.String("ignored"), KmsKeyArn: aws.String("ignored")},
		ResourceFilterCriteria: &types.ResourceFilterCriteria{EcrRepositoryName: []types.ResourceStringFilter{
			{Comparison: types.ResourceStringComparisonEquals, Value: aws.String("app")}}}})
	if err != nil {
		t.Fatalf("CreateSbomExport: %v", err)
	}
	return se.ReportId
}

// TestSDKSbomExportIsAsynchronous: CreateSbomExport answers with a reportId
// while the export is still being written; GetSbomExport says IN_PROGRESS
// until it is done, then SUCCEEDED with the files in place.
func TestSDKSbomExportIsAsynchronous(t *testing.T) {
	g := gatedSBOM{started: make(chan struct{}, 1), release: make(chan struct{})}
	api := gatedAPI(t, t.TempDir(), g)
	runExports(t, api)
	c := inspectorClient(newTestServer(t, api).URL, testKeyID, testSecret)

	id := createSbom(t, c)
	<-g.started
	gs, err := c.GetSbomExport(context.Background(), &inspector2.GetSbomExportInput{ReportId: id})
	if err != nil || gs.Status != types.ExternalReportStatusInProgress || aws.ToString(gs.ReportId) != aws.ToString(id) {
		t.Fatalf("while the export runs: %+v %v", gs, err)
	}
	close(g.release)
	gs = awaitSbomExport(t, c, id)
	if gs.Status != types.ExternalReportStatusSucceeded || gs.Format != types.SbomReportFormatSpdx23 {
		t.Fatalf("after the export: %+v", gs)
	}
	files, _ := filepath.Glob(filepath.Join(api.o.SBOMDir, aws.ToString(id), "*.spdx.json"))
	if len(files) != 2 {
		t.Fatalf("sbom files: %v", files)
	}
}

// TestSDKExportShutdownAndRestart: shutting down (RunExports' context
// ends) during an export leaves it FAILED, not IN_PROGRESS forever; an
// export a crashed process left IN_PROGRESS is FAILED when the next one
// starts its workers.
func TestSDKExportShutdownAndRestart(t *testing.T) {
	dir := t.TempDir()
	g := gatedSBOM{started: make(chan struct{}, 1), release: make(chan struct{})}
	api := gatedAPI(t, dir, g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.RunExports(ctx) }()
	c := inspectorClient(newTestServer(t, api).URL, testKeyID, testSecret)

	running := createSbom(t, c)
	<-g.started
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunExports did not return after its context ended")
	}
	gs := awaitSbomExport(t, c, running)
	if gs.Status != types.ExternalReportStatusFailed || gs.ErrorCode != types.ReportingErrorCodeInternalError {
		t.Fatalf("export interrupted by shutdown: %+v", gs)
	}

	// A process that died with an export queued: no worker ever ran it.
	crashed := gatedAPI(t, dir, g)
	orphan := createSbom(t, inspectorClient(newTestServer(t, crashed).URL, testKeyID, testSecret))
	if b, err := os.ReadFile(filepath.Join(dir, "sbom", aws.ToString(orphan)+".status.json")); err != nil {
		t.Fatal(err)
	} else if want := `"status":"IN_PROGRESS"`; !strings.Contains(string(b), want) {
		t.Fatalf("queued export status %s", b)
	}
	restarted := gatedAPI(t, dir, g)
	runExports(t, restarted)
	c2 := inspectorClient(newTestServer(t, restarted).URL, testKeyID, testSecret)
	gs = awaitSbomExport(t, c2, orphan)
	if gs.Status != types.ExternalReportStatusFailed || gs.ErrorCode != types.ReportingErrorCodeInternalError {
		t.Fatalf("export left IN_PROGRESS by a dead process: %+v", gs)
	}
}
