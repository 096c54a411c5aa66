package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
	"github.com/tollgate-registry/tollgate/scan/sbom"
)

// Adapters from the real stores and services to the API's source
// interfaces. index.FindingStore (FindingSource), index.Records
// (ImageSource), index.Filters (FilterStore) and *lifecycle.Service
// (Scanner, Archiver, InUseSource) fit as they are.

// InputError is an invalid request detected behind an interface (e.g. a
// configuration the lifecycle refuses): ValidationException for Inspector,
// InvalidParameterException for ECR.
type InputError struct{ Message string }

func (e *InputError) Error() string { return e.Message }

// Coverages adapts *index.Coverages to CoverageSource.
type Coverages struct{ Store *index.Coverages }

// Coverage returns d's coverage (index.ErrNotFound wrapped when none).
func (c Coverages) Coverage(ctx context.Context, d digest.Digest) (*index.Coverage, error) {
	return c.Store.Get(ctx, d)
}

// LifecycleConfig adapts *lifecycle.Service to ConfigStore: reads come from
// its stored configuration; a change of scan type or rules goes through
// PutRegistryScanningConfiguration and a change of rescan durations
// through UpdateEcrConfiguration (both validate and start a sweep).
type LifecycleConfig struct{ Service *lifecycle.Service }

// ScanningConfiguration returns the stored configuration.
func (l LifecycleConfig) ScanningConfiguration(ctx context.Context) (ScanningConfiguration, error) {
	c, err := l.Service.Configuration(ctx)
	if err != nil {
		return ScanningConfiguration{}, err
	}
	out := ScanningConfiguration{ScanType: c.ScanType, RescanDuration: c.RescanDuration,
		PullDateRescanDuration: c.PullDateRescanDuration, PullDateRescanMode: c.PullDateRescanMode, UpdatedAt: c.UpdatedAt}
	for _, r := range c.Rules {
		sr := ScanningRule{ScanFrequency: r.ScanFrequency}
		for _, f := range r.RepositoryFilters {
			sr.RepositoryFilters = append(sr.RepositoryFilters, f.Filter)
		}
		out.Rules = append(out.Rules, sr)
	}
	return out, nil
}

// SetScanningConfiguration applies the parts of c that differ from the stored one.
func (l LifecycleConfig) SetScanningConfiguration(ctx context.Context, c ScanningConfiguration) error {
	cur, err := l.ScanningConfiguration(ctx)
	if err != nil {
		return err
	}
	if c.ScanType != cur.ScanType || fmt.Sprint(c.Rules) != fmt.Sprint(cur.Rules) {
		in := lifecycle.RegistryScanningConfiguration{ScanType: c.ScanType, Rules: []index.ScanningRule{}}
		for _, r := range c.Rules {
			ir := index.ScanningRule{ScanFrequency: r.ScanFrequency}
			for _, f := range r.RepositoryFilters {
				ir.RepositoryFilters = append(ir.RepositoryFilters, index.RepositoryFilter{Filter: f, FilterType: "WILDCARD"})
			}
			in.Rules = append(in.Rules, ir)
		}
		if _, err := l.Service.PutRegistryScanningConfiguration(ctx, in); err != nil {
			return lifecycleErr(err)
		}
	}
	if c.RescanDuration != cur.RescanDuration || c.PullDateRescanDuration != cur.PullDateRescanDuration || c.PullDateRescanMode != cur.PullDateRescanMode {
		if err := l.Service.UpdateEcrConfiguration(ctx, lifecycle.EcrConfiguration{RescanDuration: c.RescanDuration,
			PullDateRescanDuration: c.PullDateRescanDuration, PullDateRescanMode: c.PullDateRescanMode}); err != nil {
			return lifecycleErr(err)
		}
	}
	return nil
}

// Lifecycle adapts *lifecycle.Service's errors for Scanner and Archiver.
type Lifecycle struct{ Service *lifecycle.Service }

// RequestScan queues a manual scan.
func (l Lifecycle) RequestScan(ctx context.Context, repo string, d digest.Digest) error {
	return lifecycleErr(l.Service.RequestScan(ctx, repo, d))
}

// Archive moves repo@d to the archive storage class.
func (l Lifecycle) Archive(ctx context.Context, repo string, d digest.Digest) error {
	return lifecycleErr(l.Service.Archive(ctx, repo, d))
}

// Restore moves repo@d back to the standard storage class.
func (l Lifecycle) Restore(ctx context.Context, repo string, d digest.Digest) error {
	return lifecycleErr(l.Service.Restore(ctx, repo, d))
}

// InUse returns d's in-use statistics.
func (l Lifecycle) InUse(ctx context.Context, d digest.Digest) (index.InUseStats, error) {
	return l.Service.InUse(ctx, d)
}

// ClustersForImage returns where d runs.
func (l Lifecycle) ClustersForImage(ctx context.Context, d digest.Digest) ([]index.ClusterUse, error) {
	return l.Service.ClustersForImage(ctx, d)
}

// ReportInUse parses an agent's payload (lifecycle.ParseInUsePayload) and records it.
func (l Lifecycle) ReportInUse(ctx context.Context, payload []byte) error {
	reports, err := lifecycle.ParseInUsePayload(payload)
	if err != nil {
		return &InputError{Message: err.Error()}
	}
	return lifecycleErr(l.Service.ReportInUse(ctx, reports))
}

func lifecycleErr(err error) error {
	var ve *lifecycle.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ve):
		return &InputError{Message: ve.Message}
	case errors.Is(err, lifecycle.ErrUnknownImage):
		return fmt.Errorf("%v: %w", err, index.ErrNotFound)
	case errors.Is(err, lifecycle.ErrArchived), errors.Is(err, lifecycle.ErrInvalidRequest):
		return &InputError{Message: err.Error()}
	}
	return err
}

// SBOMs adapts the stored image inventories and scan/sbom to SBOMExporter.
type SBOMs struct {
	Inventories *index.Inventories
	// Findings, if set, adds the image's findings to CycloneDX documents
	// as `vulnerabilities` (*index.FindingStore).
	Findings    ImageFindings
	ToolVersion string
}

// WriteSBOM writes repo@d's SBOM: CYCLONEDX_1_4 as CycloneDX 1.4 JSON
// (https://cyclonedx.org/docs/1.4/json/: components with purls, and with
// Findings set the image's ACTIVE findings as `vulnerabilities`, each
// affecting its package's component), SPDX_2_3 as SPDX 2.3 JSON
// (https://spdx.github.io/spdx-spec/v2.3/: packages with purl external
// references; SPDX 2.3 has no vulnerabilities). Errors wrap
// index.ErrNotFound when d has no stored inventory.
func (s SBOMs) WriteSBOM(ctx context.Context, repo string, d digest.Digest, format string, w io.Writer) error {
	inv, err := s.Inventories.GetImage(ctx, d)
	if err != nil {
		return fmt.Errorf("inventory of %s: %w", d, err)
	}
	opts := sbom.Options{ToolVersion: s.ToolVersion, Name: repo + "@" + d.String()}
	switch format {
	case "CYCLONEDX_1_4":
		bom := sbom.CycloneDX(inv, opts)
		if s.Findings != nil {
			fs, err := s.Findings.ForImage(ctx, d)
			if err != nil && !errors.Is(err, index.ErrNotFound) {
				return fmt.Errorf("findings of %s: %w", d, err)
			}
			sbom.AddVulnerabilities(bom, inv, fs)
		}
		enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
		enc.SetPretty(true)
		return enc.EncodeVersion(bom, cdx.SpecVersion1_4)
	case "SPDX_2_3":
		return sbom.WriteSPDX(w, inv, opts)
	}
	return &InputError{Message: "unknown SBOM format " + format}
}

// ProxyDeleter deletes through the registry proxy's own /v2/ handler, so a
// BatchDeleteImage is recorded, announced and applied exactly as a
// client's DELETE would be.
type ProxyDeleter struct{ Handler http.Handler }

// DeleteImage sends DELETE /v2/<repo>/manifests/<digest>.
func (p ProxyDeleter) DeleteImage(ctx context.Context, repo string, d digest.Digest) error {
	return p.delete(ctx, repo, d.String())
}

// Untag sends DELETE /v2/<repo>/manifests/<tag>.
func (p ProxyDeleter) Untag(ctx context.Context, repo, tag string) error {
	return p.delete(ctx, repo, tag)
}

func (p ProxyDeleter) delete(ctx context.Context, repo, ref string) error {
	u := &url.URL{Path: "/v2/" + repo + "/manifests/" + ref}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, req)
	switch rec.Code {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("%s:%s: %w", repo, ref, index.ErrNotFound)
	}
	return fmt.Errorf("delete %s:%s: registry answered %d: %s", repo, ref, rec.Code, rec.Body.String())
}

// RecordsArchiver archives through the image records alone (no lifecycle:
// scanning and findings are not touched). Used when no lifecycle is wired.
type RecordsArchiver struct{ Records *index.Records }

// Archive marks repo@d ARCHIVED.
func (r RecordsArchiver) Archive(ctx context.Context, repo string, d digest.Digest) error {
	return r.Records.SetStatus(ctx, repo, d, index.ImageArchived)
}

// Restore marks repo@d ACTIVE.
func (r RecordsArchiver) Restore(ctx context.Context, repo string, d digest.Digest) error {
	return r.Records.SetStatus(ctx, repo, d, index.ImageActive)
}

// SettingsConfig is a ConfigStore over index.Settings alone (no lifecycle:
// no sweep follows a change), seeded with Seed on first read. Validation is
// the API's. Used when no lifecycle is wired.
type SettingsConfig struct {
	Settings *index.Settings
	Seed     index.ScanningConfiguration
}

// ScanningConfiguration returns the stored (or seeded) configuration.
func (s SettingsConfig) ScanningConfiguration(ctx context.Context) (ScanningConfiguration, error) {
	c, err := s.Settings.Scanning(ctx)
	if errors.Is(err, index.ErrNotFound) {
		c, _, err = s.Settings.SeedScanning(ctx, s.Seed)
	}
	if err != nil {
		return ScanningConfiguration{}, err
	}
	out := ScanningConfiguration{ScanType: c.ScanType, RescanDuration: c.RescanDuration,
		PullDateRescanDuration: c.PullDateRescanDuration, PullDateRescanMode: c.PullDateRescanMode, UpdatedAt: c.UpdatedAt}
	for _, r := range c.Rules {
		sr := ScanningRule{ScanFrequency: r.ScanFrequency}
		for _, f := range r.RepositoryFilters {
			sr.RepositoryFilters = append(sr.RepositoryFilters, f.Filter)
		}
		out.Rules = append(out.Rules, sr)
	}
	return out, nil
}

// SetScanningConfiguration stores c.
func (s SettingsConfig) SetScanningConfiguration(ctx context.Context, c ScanningConfiguration) error {
	ic := index.ScanningConfiguration{ScanType: c.ScanType, RescanDuration: c.RescanDuration,
		PullDateRescanDuration: c.PullDateRescanDuration, PullDateRescanMode: c.PullDateRescanMode, UpdatedAt: c.UpdatedAt}
	for _, r := range c.Rules {
		ir := index.ScanningRule{ScanFrequency: r.ScanFrequency}
		for _, f := range r.RepositoryFilters {
			ir.RepositoryFilters = append(ir.RepositoryFilters, index.RepositoryFilter{Filter: f, FilterType: "WILDCARD"})
		}
		ic.Rules = append(ic.Rules, ir)
	}
	_, err := s.Settings.PutScanning(ctx, ic)
	return err
}
