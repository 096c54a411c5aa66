package admin

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CreateSbomExport / GetSbomExport and CreateFindingsReport /
// GetFindingsReportStatus write to local directories (APIOptions.SBOMDir,
// ReportDir) instead of S3. The s3Destination the SDK requires is accepted
// and echoed, not used. Exports run in the background (exportjobs.go:
// Create returns the reportId at once, the status is IN_PROGRESS until
// RunExports has done the work); their status is a JSON file beside the
// output, so it survives restarts:
//
//	<SBOMDir>/<reportId>/<repo with '/' as '_'>_<digest hex>.<cdx.json|spdx.json>
//	<SBOMDir>/<reportId>.status.json
//	<ReportDir>/<reportId>.<csv|json>, <ReportDir>/<reportId>.status.json

type wDestination struct {
	BucketName string `json:"bucketName"`
	KeyPrefix  string `json:"keyPrefix,omitempty"`
	KmsKeyArn  string `json:"kmsKeyArn,omitempty"`
}

// exportStatus is the stored status of one export, in the Get… output shape.
type exportStatus struct {
	ReportID       string        `json:"reportId"`
	Status         string        `json:"status"` // SUCCEEDED, FAILED, IN_PROGRESS
	ErrorCode      string        `json:"errorCode,omitempty"`
	ErrorMessage   string        `json:"errorMessage,omitempty"`
	FilterCriteria rawJSON       `json:"filterCriteria,omitempty"`
	Format         string        `json:"format,omitempty"`
	S3Destination  *wDestination `json:"s3Destination,omitempty"`
	Destination    *wDestination `json:"destination,omitempty"`
	// LocalPath is tollgate's addition: where the output was written.
	LocalPath string   `json:"localPath,omitempty"`
	Files     []string `json:"files,omitempty"`
}

func newReportID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (a *API) writeStatus(dir string, st exportStatus) error {
	a.exports.mu.Lock()
	defer a.exports.mu.Unlock()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, st.ReportID+".status.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write export status: %w", err)
	}
	return os.Rename(tmp, p)
}

func (a *API) readStatus(dir, id string) (any, error) {
	if dir == "" {
		return nil, unavailable("exports")
	}
	if id == "" || strings.ContainsAny(id, `/\.`) {
		return nil, errValidation("reportId %q is not valid", id)
	}
	b, err := os.ReadFile(filepath.Join(dir, id+".status.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotFound("no report %s", id)
	} else if err != nil {
		return nil, err
	}
	var st exportStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read export status: %w", err)
	}
	return st, nil
}

// resourceSchema is Inspector's ResourceFilterCriteria over images.
var resourceSchema = &schema[*coverageView]{
	name:        "resourceFilterCriteria",
	comparisons: []string{"EQUALS", "NOT_EQUALS"},
	strs: map[string]func(*coverageView) []string{
		"accountId":         func(v *coverageView) []string { return one(v.account) },
		"ecrImageTags":      func(v *coverageView) []string { return v.tags },
		"ecrRepositoryName": func(v *coverageView) []string { return one(v.repo) },
		"resourceId":        func(v *coverageView) []string { return one(v.resourceID) },
		"resourceType":      func(v *coverageView) []string { return one(v.resourceType) },
	},
	absent: map[string]fieldKind{
		"lambdaFunctionName": kString,
		"ec2InstanceTags":    kMap,
		"lambdaFunctionTags": kMap,
	},
}

func (a *API) createSbomExport(ctx context.Context, body []byte) (any, error) {
	if a.o.SBOMDir == "" || a.o.SBOM == nil {
		return nil, unavailable("SBOM export")
	}
	var in struct {
		ReportFormat           string        `json:"reportFormat"`
		ResourceFilterCriteria rawJSON       `json:"resourceFilterCriteria"`
		S3Destination          *wDestination `json:"s3Destination"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	ext := map[string]string{"CYCLONEDX_1_4": "cdx.json", "SPDX_2_3": "spdx.json"}[in.ReportFormat]
	if ext == "" {
		return nil, errValidation("reportFormat %q: want CYCLONEDX_1_4 or SPDX_2_3", in.ReportFormat)
	}
	c, err := resourceSchema.compile(in.ResourceFilterCriteria)
	if err != nil {
		return nil, err
	}
	id := newReportID()
	outDir := filepath.Join(a.o.SBOMDir, id)
	st := exportStatus{ReportID: id, FilterCriteria: in.ResourceFilterCriteria,
		Format: in.ReportFormat, S3Destination: in.S3Destination, LocalPath: outDir}
	err = a.submitExport(a.o.SBOMDir, st, func(ctx context.Context, st *exportStatus) error {
		views, err := a.coverageViews(ctx)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(outDir, 0o750); err != nil {
			return fmt.Errorf("sbom dir: %w", err)
		}
		for _, v := range views {
			if v.resourceType != "AWS_ECR_CONTAINER_IMAGE" || !c.match(v) {
				continue
			}
			name := strings.ReplaceAll(v.repo, "/", "_") + "_" + v.dgst.Encoded() + "." + ext
			if err := a.writeFile(filepath.Join(outDir, name), func(w io.Writer) error {
				return a.o.SBOM.WriteSBOM(ctx, v.repo, v.dgst, in.ReportFormat, w)
			}); err != nil {
				a.log.Error().Err(err).Str("repo", v.repo).Str("digest", v.dgst.String()).Msg("sbom export")
				return fmt.Errorf("sbom of %s@%s: %w", v.repo, v.dgst, err)
			}
			st.Files = append(st.Files, name)
		}
		if len(st.Files) == 0 {
			st.Status, st.ErrorCode, st.ErrorMessage = "FAILED", "NO_FINDINGS_FOUND", "no image matches resourceFilterCriteria"
			return nil
		}
		st.Status = "SUCCEEDED"
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"reportId": id}, nil
}

func (a *API) getSbomExport(ctx context.Context, body []byte) (any, error) {
	var in struct {
		ReportID string `json:"reportId"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	return a.readStatus(a.o.SBOMDir, in.ReportID)
}

// writeFile writes through a temporary file and renames on success.
func (a *API) writeFile(path string, fn func(w io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// csvColumns are the findings report's CSV columns, named as Inspector's.
var csvColumns = []string{"AWS Account Id", "Severity", "Fix Available", "Finding Type", "Title", "Description",
	"Finding ARN", "First Seen", "Last Seen", "Last Updated", "Resource ID", "Container Image Tags", "Region",
	"Platform", "Affected Packages", "Package Installed Version", "Fixed in Version", "Package Remediation",
	"File Path", "Remediation", "Inspector Score", "Inspector Score Vector", "Status", "Vulnerability Id",
	"Vendor", "Vendor Severity", "Vendor Advisory", "Reference Urls", "Repository", "Image Hash", "Source Layer Hash"}

func csvRow(v *findingView) []string {
	w := v.toWire()
	pkg := w.PackageVulnerabilityDetails.VulnerablePackages[0]
	score, vector := "", ""
	if w.InspectorScore != nil {
		score = strconv.FormatFloat(*w.InspectorScore, 'f', -1, 64)
		if w.InspectorScoreDetails != nil {
			vector = w.InspectorScoreDetails.AdjustedCvss.ScoringVector
		}
	}
	rem := ""
	if w.Remediation.Recommendation != nil {
		rem = w.Remediation.Recommendation.Text
	}
	ts := func(e *epochTime) string {
		if e == nil {
			return ""
		}
		return e.Time.Format("Jan 2, 2006, 15:04:05") + " (UTC+00:00)"
	}
	ver := pkg.Version
	if pkg.Release != "" {
		ver += "-" + pkg.Release
	}
	return []string{w.AwsAccountId, w.Severity, w.FixAvailable, w.Type, w.Title, w.Description, w.FindingArn,
		ts(w.FirstObservedAt), ts(w.LastObservedAt), ts(w.UpdatedAt), w.Resources[0].ID, strings.Join(v.tags(), ","),
		w.Resources[0].Region, v.platform, pkg.Name, ver, pkg.FixedInVersion, pkg.Remediation, pkg.FilePath, rem,
		score, vector, w.Status, w.PackageVulnerabilityDetails.VulnerabilityId, w.PackageVulnerabilityDetails.Source,
		w.PackageVulnerabilityDetails.VendorSeverity, w.PackageVulnerabilityDetails.SourceUrl,
		strings.Join(w.PackageVulnerabilityDetails.ReferenceUrls, ","), v.repo, v.f.Image.String(), pkg.SourceLayerHash}
}

func (a *API) createFindingsReport(ctx context.Context, body []byte) (any, error) {
	if a.o.ReportDir == "" {
		return nil, unavailable("findings reports")
	}
	var in struct {
		FilterCriteria rawJSON       `json:"filterCriteria"`
		ReportFormat   string        `json:"reportFormat"`
		S3Destination  *wDestination `json:"s3Destination"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if in.ReportFormat != "CSV" && in.ReportFormat != "JSON" {
		return nil, errValidation("reportFormat %q: want CSV or JSON", in.ReportFormat)
	}
	c, err := findingSchema.compile(in.FilterCriteria)
	if err != nil {
		return nil, err
	}
	id := newReportID()
	path := filepath.Join(a.o.ReportDir, id+"."+strings.ToLower(in.ReportFormat))
	st := exportStatus{ReportID: id, FilterCriteria: in.FilterCriteria, Destination: in.S3Destination, LocalPath: path}
	err = a.submitExport(a.o.ReportDir, st, func(ctx context.Context, st *exportStatus) error {
		return a.writeFindingsReport(ctx, c, in.ReportFormat, path, st)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"reportId": id}, nil
}

// writeFindingsReport writes the findings c matches to path as format
// (CSV or JSON) and sets st's outcome: SUCCEEDED, or FAILED with
// NO_FINDINGS_FOUND; other failures are returned.
func (a *API) writeFindingsReport(ctx context.Context, c criteria[*findingView], format, path string, st *exportStatus) error {
	views, err := a.matching(ctx, c)
	if err != nil {
		return err
	}
	sortViews(views)
	if len(views) == 0 {
		st.Status, st.ErrorCode, st.ErrorMessage = "FAILED", "NO_FINDINGS_FOUND", "no finding matches filterCriteria"
		st.LocalPath = ""
		return nil
	}
	if err := a.writeFile(path, func(w io.Writer) error {
		if format == "JSON" {
			out := struct {
				Findings []wFinding `json:"findings"`
			}{}
			for _, v := range views {
				out.Findings = append(out.Findings, v.toWire())
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		cw := csv.NewWriter(w)
		_ = cw.Write(csvColumns)
		for _, v := range views {
			_ = cw.Write(csvRow(v))
		}
		cw.Flush()
		return cw.Error()
	}); err != nil {
		st.LocalPath = ""
		return fmt.Errorf("findings report: %w", err)
	}
	st.Status = "SUCCEEDED"
	return nil
}

func (a *API) getFindingsReportStatus(ctx context.Context, body []byte) (any, error) {
	var in struct {
		ReportID string `json:"reportId"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	return a.readStatus(a.o.ReportDir, in.ReportID)
}

// sortViews orders views by severity (highest first), then ARN.
func sortViews(vs []*findingView) {
	key := func(v *findingView) pageKey { return pageKey{N: float64(v.f.Severity.Rank()), ID: v.arn} }
	sorted, _ := page(vs, key, true, nil, len(vs)+1, "")
	copy(vs, sorted)
}
