package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// Inspector's Finding as restJson1 serializes it
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_Finding.html).
type wFinding struct {
	AwsAccountId                string             `json:"awsAccountId"`
	Description                 string             `json:"description"`
	FindingArn                  string             `json:"findingArn"`
	FirstObservedAt             *epochTime         `json:"firstObservedAt,omitempty"`
	LastObservedAt              *epochTime         `json:"lastObservedAt,omitempty"`
	UpdatedAt                   *epochTime         `json:"updatedAt,omitempty"`
	Remediation                 wRemediation       `json:"remediation"`
	Resources                   []wResource        `json:"resources"`
	Severity                    string             `json:"severity"`
	Status                      string             `json:"status"`
	Type                        string             `json:"type"`
	Title                       string             `json:"title,omitempty"`
	FixAvailable                string             `json:"fixAvailable,omitempty"`
	ExploitAvailable            string             `json:"exploitAvailable,omitempty"`
	InspectorScore              *float64           `json:"inspectorScore,omitempty"`
	InspectorScoreDetails       *wScoreDetails     `json:"inspectorScoreDetails,omitempty"`
	PackageVulnerabilityDetails *wPkgVulnerability `json:"packageVulnerabilityDetails,omitempty"`
}

type wRemediation struct {
	Recommendation *wRecommendation `json:"recommendation,omitempty"`
}

type wRecommendation struct {
	Text string `json:"text,omitempty"`
	Url  string `json:"Url,omitempty"` // sic: Inspector's member name is "Url"
}

type wResource struct {
	ID        string           `json:"id"`
	Type      string           `json:"type"`
	Partition string           `json:"partition,omitempty"`
	Region    string           `json:"region,omitempty"`
	Details   *wResourceDetail `json:"details,omitempty"`
}

type wResourceDetail struct {
	AwsEcrContainerImage *wEcrImage `json:"awsEcrContainerImage,omitempty"`
}

type wEcrImage struct {
	ImageHash      string     `json:"imageHash"`
	Registry       string     `json:"registry"`
	RepositoryName string     `json:"repositoryName"`
	Architecture   string     `json:"architecture,omitempty"`
	ImageTags      []string   `json:"imageTags,omitempty"`
	InUseCount     *int64     `json:"inUseCount,omitempty"`
	LastInUseAt    *epochTime `json:"lastInUseAt,omitempty"`
	Platform       string     `json:"platform,omitempty"`
	PushedAt       *epochTime `json:"pushedAt,omitempty"`
}

type wScoreDetails struct {
	AdjustedCvss *wCvssDetails `json:"adjustedCvss,omitempty"`
}

type wCvssDetails struct {
	Score         float64 `json:"score"`
	ScoreSource   string  `json:"scoreSource"`
	ScoringVector string  `json:"scoringVector"`
	Version       string  `json:"version"`
	CvssSource    string  `json:"cvssSource,omitempty"`
}

type wCvss struct {
	BaseScore     float64 `json:"baseScore"`
	ScoringVector string  `json:"scoringVector"`
	Source        string  `json:"source"`
	Version       string  `json:"version"`
}

type wPkgVulnerability struct {
	Source                 string     `json:"source"`
	VulnerabilityId        string     `json:"vulnerabilityId"`
	Cvss                   []wCvss    `json:"cvss,omitempty"`
	ReferenceUrls          []string   `json:"referenceUrls,omitempty"`
	RelatedVulnerabilities []string   `json:"relatedVulnerabilities,omitempty"`
	SourceUrl              string     `json:"sourceUrl,omitempty"`
	VendorSeverity         string     `json:"vendorSeverity,omitempty"`
	VulnerablePackages     []wVulnPkg `json:"vulnerablePackages"`
}

type wVulnPkg struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Arch            string `json:"arch,omitempty"`
	Epoch           int32  `json:"epoch,omitempty"`
	FilePath        string `json:"filePath,omitempty"`
	FixedInVersion  string `json:"fixedInVersion,omitempty"`
	PackageManager  string `json:"packageManager,omitempty"`
	Release         string `json:"release,omitempty"`
	Remediation     string `json:"remediation,omitempty"`
	SourceLayerHash string `json:"sourceLayerHash,omitempty"`
}

// toWire renders a view as Inspector's Finding.
func (v *findingView) toWire() wFinding {
	f := v.f
	ver, rel, ep := pkgVersionRelease(f.Package)
	fixed := "NotAvailable"
	if len(f.FixedVersions) > 0 {
		fixed = f.FixedVersions[0]
	}
	pkg := wVulnPkg{Name: f.Package.Name, Version: ver, Release: rel, Epoch: int32(ep), Arch: f.Package.Arch,
		FilePath: f.Package.Path, FixedInVersion: fixed, PackageManager: packageManager(f.Package),
		SourceLayerHash: f.Package.Layer.String()}
	if len(f.FixedVersions) > 0 {
		pkg.Remediation = "Upgrade " + f.Package.Name + " to " + f.FixedVersions[0]
	}
	det := &wPkgVulnerability{Source: vulnerabilitySource(f), VulnerabilityId: f.VulnerabilityID,
		ReferenceUrls: f.References, RelatedVulnerabilities: f.RelatedIDs, SourceUrl: f.SourceURL,
		VendorSeverity: f.VendorSeverity, VulnerablePackages: []wVulnPkg{pkg}}
	for _, c := range f.CVSS {
		det.Cvss = append(det.Cvss, wCvss{BaseScore: c.BaseScore, ScoringVector: c.Vector, Source: c.Source, Version: c.Version})
	}
	img := &wEcrImage{ImageHash: f.Image.String(), Registry: v.account, RepositoryName: v.repo,
		Architecture: v.arch, ImageTags: v.tags(), Platform: v.platform, PushedAt: epochPtr(v.pushedAt()),
		LastInUseAt: epochPtr(v.lastUse)}
	n := v.inUse
	img.InUseCount = &n
	out := wFinding{
		AwsAccountId: v.account, Description: f.Description, FindingArn: v.arn,
		FirstObservedAt: epoch(f.FirstObservedAt), LastObservedAt: epoch(f.LastObservedAt), UpdatedAt: epoch(f.UpdatedAt),
		Resources: []wResource{{ID: imageResourceID(v.region, v.account, v.repo, f.Image.String()),
			Type: "AWS_ECR_CONTAINER_IMAGE", Partition: "aws", Region: v.region,
			Details: &wResourceDetail{AwsEcrContainerImage: img}}},
		Severity: string(f.Severity), Status: string(v.status), Type: "PACKAGE_VULNERABILITY",
		Title: f.Title, FixAvailable: f.FixAvailable, ExploitAvailable: "NO",
		PackageVulnerabilityDetails: det,
	}
	if out.Description == "" {
		out.Description = f.Title
	}
	if pkg.Remediation != "" || f.SourceURL != "" {
		out.Remediation.Recommendation = &wRecommendation{Text: pkg.Remediation, Url: f.SourceURL}
	}
	if s, ok := inspectorScore(f); ok {
		out.InspectorScore = &s
		for _, c := range f.CVSS {
			if c.BaseScore == s {
				out.InspectorScoreDetails = &wScoreDetails{AdjustedCvss: &wCvssDetails{Score: s, ScoreSource: c.Source,
					ScoringVector: c.Vector, Version: c.Version, CvssSource: c.Source}}
				break
			}
		}
	}
	return out
}

// imageFacts caches per-digest lookups during one request.
type imageFacts struct {
	rec      *index.ImageRecord
	arch     string
	platform string
	inUse    int64
	lastUse  *time.Time
}

type factCache struct {
	a *API
	m map[digest.Digest]*imageFacts
}

func (a *API) newFactCache() *factCache { return &factCache{a: a, m: map[digest.Digest]*imageFacts{}} }

// get returns what is known of dgst; rec is nil when the image has no record.
func (c *factCache) get(ctx context.Context, dgst digest.Digest) (*imageFacts, error) {
	if f, ok := c.m[dgst]; ok {
		return f, nil
	}
	f := &imageFacts{}
	if c.a.o.Images != nil {
		rec, err := c.a.o.Images.Image(ctx, dgst)
		switch {
		case err == nil:
			f.rec = rec
		case errors.Is(err, index.ErrNotFound):
		default:
			return nil, fmt.Errorf("image %s: %w", dgst, err)
		}
	}
	if c.a.o.Coverage != nil {
		cov, err := c.a.o.Coverage.Coverage(ctx, dgst)
		switch {
		case err == nil:
			f.arch, f.platform = cov.Platform.Architecture, cov.Platform.OS
		case errors.Is(err, index.ErrNotFound):
		default:
			return nil, fmt.Errorf("coverage %s: %w", dgst, err)
		}
	}
	if c.a.o.InUse != nil {
		st, err := c.a.o.InUse.InUse(ctx, dgst)
		if err != nil && !errors.Is(err, index.ErrNotFound) {
			return nil, fmt.Errorf("in-use %s: %w", dgst, err)
		}
		f.inUse, f.lastUse = int64(st.Count), st.LastInUseAt
	}
	c.m[dgst] = f
	return f, nil
}

// suppressors compiles the SUPPRESS filters.
func (a *API) suppressors(ctx context.Context) ([]criteria[*findingView], error) {
	if a.o.Filters == nil {
		return nil, nil
	}
	fs, err := a.o.Filters.ListFilters(ctx)
	if err != nil {
		return nil, fmt.Errorf("list filters: %w", err)
	}
	var out []criteria[*findingView]
	for _, f := range fs {
		if f.Action != "SUPPRESS" {
			continue
		}
		c, err := findingSchema.compile(f.Criteria)
		if err != nil {
			a.log.Warn().Err(err).Str("filter", f.ARN).Msg("stored filter no longer compiles; ignored")
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// eachView calls fn for every finding of every repository an image lives
// in, with suppression rules applied to its status. Images without a
// record, and repositories the image was deleted from, have no findings.
func (a *API) eachView(ctx context.Context, fn func(v *findingView) error) error {
	if a.o.Findings == nil {
		return unavailable("findings")
	}
	sup, err := a.suppressors(ctx)
	if err != nil {
		return err
	}
	cache := a.newFactCache()
	now := a.o.Now()
	return a.o.Findings.Each(ctx, func(f scan.Finding) error {
		facts, err := cache.get(ctx, f.Image)
		if err != nil {
			return err
		}
		if facts.rec == nil {
			return nil
		}
		for i := range facts.rec.Repos {
			ri := &facts.rec.Repos[i]
			if ri.Deleted {
				continue
			}
			v := &findingView{f: &f, status: f.Status, repo: ri.Repository, ri: ri, arch: facts.arch,
				platform: facts.platform, inUse: facts.inUse, lastUse: facts.lastUse,
				account: a.o.AccountID, region: a.o.Region}
			v.arn = findingARN(a.o.Region, a.o.AccountID, ri.Repository, f.ID)
			if ri.Status == index.ImageArchived && v.status != scan.FindingClosed {
				// Archived here but live in another repository (the store
				// closes a digest's findings only once no repository holds
				// it live): closed in this one, and gone FindingsRetention
				// after the archive, as for an image archived everywhere.
				if ri.ArchivedAt != nil && now.Sub(*ri.ArchivedAt) > lifecycle.FindingsRetention {
					continue
				}
				v.status = scan.FindingClosed
			}
			if v.status == scan.FindingActive || v.status == "" {
				v.status = scan.FindingActive
				for _, s := range sup {
					if s.match(v) {
						v.status = scan.FindingSuppressed
						break
					}
				}
			}
			if err := fn(v); err != nil {
				return err
			}
		}
		return nil
	})
}

// matching returns the views that pass c.
func (a *API) matching(ctx context.Context, c criteria[*findingView]) ([]*findingView, error) {
	var out []*findingView
	err := a.eachView(ctx, func(v *findingView) error {
		if c.match(v) {
			out = append(out, v)
		}
		return ctx.Err()
	})
	return out, err
}

type sortCriteria struct {
	Field     string `json:"field"`
	SortOrder string `json:"sortOrder"`
}

// sortKeys maps Inspector's SortField values to a view's sort key.
var sortKeys = map[string]func(v *findingView) pageKey{
	"AWS_ACCOUNT_ID":            func(v *findingView) pageKey { return pageKey{S: v.account} },
	"FINDING_TYPE":              func(v *findingView) pageKey { return pageKey{S: "PACKAGE_VULNERABILITY"} },
	"SEVERITY":                  func(v *findingView) pageKey { return pageKey{N: float64(v.f.Severity.Rank())} },
	"FIRST_OBSERVED_AT":         func(v *findingView) pageKey { return pageKey{N: float64(v.f.FirstObservedAt.UnixNano())} },
	"LAST_OBSERVED_AT":          func(v *findingView) pageKey { return pageKey{N: float64(v.f.LastObservedAt.UnixNano())} },
	"FINDING_STATUS":            func(v *findingView) pageKey { return pageKey{S: string(v.status)} },
	"RESOURCE_TYPE":             func(v *findingView) pageKey { return pageKey{S: "AWS_ECR_CONTAINER_IMAGE"} },
	"ECR_IMAGE_PUSHED_AT":       func(v *findingView) pageKey { return pageKey{N: float64(v.ri.PushedAt.UnixNano())} },
	"ECR_IMAGE_REPOSITORY_NAME": func(v *findingView) pageKey { return pageKey{S: v.repo} },
	"ECR_IMAGE_REGISTRY":        func(v *findingView) pageKey { return pageKey{S: v.account} },
	"NETWORK_PROTOCOL":          func(v *findingView) pageKey { return pageKey{} },
	"COMPONENT_TYPE":            func(v *findingView) pageKey { return pageKey{S: packageManager(v.f.Package)} },
	"VULNERABILITY_ID":          func(v *findingView) pageKey { return pageKey{S: v.f.VulnerabilityID} },
	"VULNERABILITY_SOURCE":      func(v *findingView) pageKey { return pageKey{S: vulnerabilitySource(v.f)} },
	"INSPECTOR_SCORE": func(v *findingView) pageKey {
		s, _ := inspectorScore(v.f)
		return pageKey{N: s}
	},
	"VENDOR_SEVERITY": func(v *findingView) pageKey { return pageKey{S: v.f.VendorSeverity} },
	"EPSS_SCORE":      func(v *findingView) pageKey { return pageKey{} },
}

type listFindingsInput struct {
	FilterCriteria rawJSON       `json:"filterCriteria"`
	MaxResults     *int          `json:"maxResults"`
	NextToken      string        `json:"nextToken"`
	SortCriteria   *sortCriteria `json:"sortCriteria"`
}

type listFindingsOutput struct {
	Findings  []wFinding `json:"findings"`
	NextToken string     `json:"nextToken,omitempty"`
}

// listFindings is ListFindings (POST /findings/list): default order
// SEVERITY DESC, then finding ARN; maxResults 1–100, default 50.
func (a *API) listFindings(ctx context.Context, body []byte) (any, error) {
	var in listFindingsInput
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	n, err := maxResults(in.MaxResults, 50, 100)
	if err != nil {
		return nil, err
	}
	c, err := findingSchema.compile(in.FilterCriteria)
	if err != nil {
		return nil, err
	}
	sc := sortCriteria{Field: "SEVERITY", SortOrder: "DESC"}
	if in.SortCriteria != nil {
		sc = *in.SortCriteria
		if sc.SortOrder == "" {
			sc.SortOrder = "ASC"
		}
	}
	keyOf, ok := sortKeys[sc.Field]
	if !ok {
		return nil, errValidation("sortCriteria.field %q: not a SortField", sc.Field)
	}
	if sc.SortOrder != "ASC" && sc.SortOrder != "DESC" {
		return nil, errValidation("sortCriteria.sortOrder %q: want ASC or DESC", sc.SortOrder)
	}
	op := "findings:" + sc.Field + ":" + sc.SortOrder
	after, err := decodeToken(op, in.NextToken)
	if err != nil {
		return nil, err
	}
	views, err := a.matching(ctx, c)
	if err != nil {
		return nil, err
	}
	key := func(v *findingView) pageKey { k := keyOf(v); k.ID = v.arn; return k }
	pg, next := page(views, key, sc.SortOrder == "DESC", after, n, op)
	out := listFindingsOutput{Findings: make([]wFinding, 0, len(pg)), NextToken: next}
	for _, v := range pg {
		out.Findings = append(out.Findings, v.toWire())
	}
	return out, nil
}

type wFindingDetail struct {
	FindingArn    string   `json:"findingArn"`
	ReferenceUrls []string `json:"referenceUrls,omitempty"`
	Cwes          []string `json:"cwes,omitempty"`
	Tools         []string `json:"tools,omitempty"`
	Ttps          []string `json:"ttps,omitempty"`
}

type wFindingDetailsError struct {
	FindingArn   string `json:"findingArn"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// batchGetFindingDetails is BatchGetFindingDetails
// (POST /findings/details/batch/get): 1–10 ARNs; unknown ARNs are reported
// in errors as FINDING_DETAILS_NOT_FOUND.
func (a *API) batchGetFindingDetails(ctx context.Context, body []byte) (any, error) {
	var in struct {
		FindingArns []string `json:"findingArns"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if len(in.FindingArns) < 1 || len(in.FindingArns) > 10 {
		return nil, errValidation("findingArns: want 1 to 10 ARNs, got %d", len(in.FindingArns))
	}
	want := map[string]bool{}
	for _, arn := range in.FindingArns {
		want[arn] = true
	}
	found := map[string]wFindingDetail{}
	err := a.eachView(ctx, func(v *findingView) error {
		if want[v.arn] {
			found[v.arn] = wFindingDetail{FindingArn: v.arn, ReferenceUrls: v.f.References}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	out := struct {
		FindingDetails []wFindingDetail       `json:"findingDetails"`
		Errors         []wFindingDetailsError `json:"errors"`
	}{FindingDetails: []wFindingDetail{}, Errors: []wFindingDetailsError{}}
	seen := map[string]bool{}
	for _, arn := range in.FindingArns {
		if seen[arn] {
			continue
		}
		seen[arn] = true
		if d, ok := found[arn]; ok {
			out.FindingDetails = append(out.FindingDetails, d)
		} else {
			out.Errors = append(out.Errors, wFindingDetailsError{FindingArn: arn, ErrorCode: "FINDING_DETAILS_NOT_FOUND",
				ErrorMessage: "no finding with this ARN"})
		}
	}
	return out, nil
}

// rawJSON keeps a request member as raw bytes for a later compile.
type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("{}"), nil
	}
	return r, nil
}

// sortStrings returns the keys of m sorted.
func sortStrings[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
