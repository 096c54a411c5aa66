package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// Coverage: Inspector's ListCoverage and ListCoverageStatistics
// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_ListCoverage.html).
// Each repository is an AWS_ECR_REPOSITORY resource and each image in each
// repository an AWS_ECR_CONTAINER_IMAGE resource.

type coverageView struct {
	resourceType  string
	resourceID    string
	repo          string
	dgst          digest.Digest // images only
	tags          []string
	statusCode    string
	reason        string
	message       string // tollgate's: why (a layer error, an unsupported OS)
	scanFrequency string
	lastScanned   *time.Time
	pulledAt      *time.Time
	inUse         int64
	lastUse       *time.Time
	account       string
}

var coverageSchema = &schema[*coverageView]{
	name:        "filterCriteria",
	comparisons: []string{"EQUALS", "NOT_EQUALS"},
	strs: map[string]func(*coverageView) []string{
		"accountId":         func(v *coverageView) []string { return one(v.account) },
		"ecrImageTags":      func(v *coverageView) []string { return v.tags },
		"ecrRepositoryName": func(v *coverageView) []string { return one(v.repo) },
		"resourceId":        func(v *coverageView) []string { return one(v.resourceID) },
		"resourceType":      func(v *coverageView) []string { return one(v.resourceType) },
		"scanStatusCode":    func(v *coverageView) []string { return one(v.statusCode) },
		"scanStatusReason":  func(v *coverageView) []string { return one(v.reason) },
		"scanType":          func(v *coverageView) []string { return []string{"PACKAGE"} },
	},
	dates: map[string]func(*coverageView) *time.Time{
		"ecrImageLastInUseAt": func(v *coverageView) *time.Time { return v.lastUse },
		"imagePulledAt":       func(v *coverageView) *time.Time { return v.pulledAt },
		"lastScannedAt":       func(v *coverageView) *time.Time { return v.lastScanned },
	},
	nums: map[string]func(*coverageView) (float64, bool){
		"ecrImageInUseCount": func(v *coverageView) (float64, bool) {
			return float64(v.inUse), v.resourceType == "AWS_ECR_CONTAINER_IMAGE"
		},
	},
	absent: map[string]fieldKind{
		"codeRepositoryProjectName":            kString,
		"codeRepositoryProviderType":           kString,
		"codeRepositoryProviderTypeVisibility": kString,
		"lambdaFunctionName":                   kString,
		"lambdaFunctionRuntime":                kString,
		"lastScannedCommitId":                  kString,
		"scanMode":                             kString,
		"ec2InstanceTags":                      kMap,
		"lambdaFunctionTags":                   kMap,
	},
}

// scanFrequency is the frequency the configuration gives repo: the first
// rule with a matching filter (as scan/lifecycle decides); "" when none.
func scanFrequency(c *ScanningConfiguration, repo string) string {
	f, _ := ruleFor(c, repo)
	return f
}

// ruleFor returns the first rule's frequency and the filters that matched.
func ruleFor(c *ScanningConfiguration, repo string) (string, []string) {
	if c == nil {
		return "", nil
	}
	for _, r := range c.Rules {
		var matched []string
		for _, f := range r.RepositoryFilters {
			if lifecycle.WildcardMatch(f, repo) {
				matched = append(matched, f)
			}
		}
		if len(matched) > 0 {
			return r.ScanFrequency, matched
		}
	}
	return "", nil
}

// coverageViews builds every covered resource.
func (a *API) coverageViews(ctx context.Context) ([]*coverageView, error) {
	if a.o.Images == nil {
		return nil, unavailable("image records")
	}
	var cfg *ScanningConfiguration
	if a.o.Config != nil {
		c, err := a.o.Config.ScanningConfiguration(ctx)
		if err != nil {
			return nil, fmt.Errorf("scanning configuration: %w", err)
		}
		cfg = &c
	}
	cache := a.newFactCache()
	repos := map[string]*coverageView{}
	var out []*coverageView
	err := a.o.Images.EachImage(ctx, func(rec *index.ImageRecord) error {
		if rec.Index {
			return nil // an index is covered through its child manifests
		}
		var cov *index.Coverage
		if a.o.Coverage != nil {
			c, err := a.o.Coverage.Coverage(ctx, rec.Digest)
			if err != nil && !errors.Is(err, index.ErrNotFound) {
				return fmt.Errorf("coverage %s: %w", rec.Digest, err)
			}
			cov = c
		}
		facts, err := cache.get(ctx, rec.Digest)
		if err != nil {
			return err
		}
		delete(cache.m, rec.Digest) // each image is seen once here
		for i := range rec.Repos {
			ri := &rec.Repos[i]
			if ri.Deleted {
				continue
			}
			freq := scanFrequency(cfg, ri.Repository)
			if _, ok := repos[ri.Repository]; !ok {
				rv := &coverageView{resourceType: "AWS_ECR_REPOSITORY", repo: ri.Repository, account: a.o.AccountID,
					resourceID: "arn:aws:ecr:" + a.o.Region + ":" + a.o.AccountID + ":repository/" + ri.Repository,
					statusCode: index.StatusActive, reason: string(scan.ReasonSuccessful), scanFrequency: freq}
				if freq == "" || freq == "MANUAL" {
					rv.statusCode, rv.reason = index.StatusInactive, string(scan.ReasonScanFrequencyManual)
				}
				repos[ri.Repository] = rv
				out = append(out, rv)
			}
			v := &coverageView{resourceType: "AWS_ECR_CONTAINER_IMAGE", repo: ri.Repository, tags: ri.Tags, dgst: rec.Digest,
				resourceID: imageResourceID(a.o.Region, a.o.AccountID, ri.Repository, rec.Digest.String()),
				statusCode: index.StatusActive, reason: string(scan.ReasonPendingInitialScan), scanFrequency: freq,
				pulledAt: ri.LastPulledAt, inUse: facts.inUse, lastUse: facts.lastUse, account: a.o.AccountID}
			if cov != nil {
				v.statusCode, v.reason, v.lastScanned, v.message = cov.StatusCode, string(cov.Reason), cov.LastScannedAt, cov.Message
				if cov.ScanFrequency != "" {
					v.scanFrequency = cov.ScanFrequency
				}
			}
			if ri.Status == index.ImageArchived {
				v.statusCode, v.reason, v.message = index.StatusInactive, string(scan.ReasonImageArchived), ""
			}
			out = append(out, v)
		}
		return ctx.Err()
	})
	return out, err
}

type wCoveredResource struct {
	AccountId        string         `json:"accountId"`
	LastScannedAt    *epochTime     `json:"lastScannedAt,omitempty"`
	ResourceId       string         `json:"resourceId"`
	ResourceMetadata *wResourceMeta `json:"resourceMetadata,omitempty"`
	ResourceType     string         `json:"resourceType"`
	ScanStatus       *wScanStatus   `json:"scanStatus,omitempty"`
	ScanType         string         `json:"scanType"`
}

type wResourceMeta struct {
	EcrImage      *wEcrImageMeta `json:"ecrImage,omitempty"`
	EcrRepository *wEcrRepoMeta  `json:"ecrRepository,omitempty"`
}

type wEcrImageMeta struct {
	ImagePulledAt *epochTime `json:"imagePulledAt,omitempty"`
	InUseCount    *int64     `json:"inUseCount,omitempty"`
	LastInUseAt   *epochTime `json:"lastInUseAt,omitempty"`
	Tags          []string   `json:"tags,omitempty"`
}

type wEcrRepoMeta struct {
	Name          string `json:"name,omitempty"`
	ScanFrequency string `json:"scanFrequency,omitempty"`
}

type wScanStatus struct {
	// Message is tollgate's addition (Inspector's ScanStatus has none; SDKs
	// ignore it): what a partial or refused scan met.
	Message    string `json:"message,omitempty"`
	Reason     string `json:"reason"`
	StatusCode string `json:"statusCode"`
}

func (v *coverageView) toWire() wCoveredResource {
	out := wCoveredResource{AccountId: v.account, LastScannedAt: epochPtr(v.lastScanned), ResourceId: v.resourceID,
		ResourceType: v.resourceType, ScanStatus: &wScanStatus{Message: v.message, Reason: v.reason, StatusCode: v.statusCode}, ScanType: "PACKAGE",
		ResourceMetadata: &wResourceMeta{EcrRepository: &wEcrRepoMeta{Name: v.repo, ScanFrequency: v.scanFrequency}}}
	if v.resourceType == "AWS_ECR_CONTAINER_IMAGE" {
		n := v.inUse
		out.ResourceMetadata.EcrImage = &wEcrImageMeta{ImagePulledAt: epochPtr(v.pulledAt), InUseCount: &n,
			LastInUseAt: epochPtr(v.lastUse), Tags: v.tags}
	}
	return out
}

// listCoverage is ListCoverage (POST /coverage/list): resources ordered by
// resource id; maxResults 1–200, default 100.
func (a *API) listCoverage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		FilterCriteria rawJSON `json:"filterCriteria"`
		MaxResults     *int    `json:"maxResults"`
		NextToken      string  `json:"nextToken"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	n, err := maxResults(in.MaxResults, 100, 200)
	if err != nil {
		return nil, err
	}
	c, err := coverageSchema.compile(in.FilterCriteria)
	if err != nil {
		return nil, err
	}
	after, err := decodeToken("coverage", in.NextToken)
	if err != nil {
		return nil, err
	}
	views, err := a.coverageViews(ctx)
	if err != nil {
		return nil, err
	}
	var sel []*coverageView
	for _, v := range views {
		if c.match(v) {
			sel = append(sel, v)
		}
	}
	pg, next := page(sel, func(v *coverageView) pageKey { return pageKey{ID: v.resourceID} }, false, after, n, "coverage")
	out := struct {
		CoveredResources []wCoveredResource `json:"coveredResources"`
		NextToken        string             `json:"nextToken,omitempty"`
	}{CoveredResources: []wCoveredResource{}, NextToken: next}
	for _, v := range pg {
		out.CoveredResources = append(out.CoveredResources, v.toWire())
	}
	return out, nil
}

// coverageGroups maps ListCoverageStatistics groupBy values to a resource's group.
var coverageGroups = map[string]func(v *coverageView) string{
	"SCAN_STATUS_CODE":    func(v *coverageView) string { return v.statusCode },
	"SCAN_STATUS_REASON":  func(v *coverageView) string { return v.reason },
	"ACCOUNT_ID":          func(v *coverageView) string { return v.account },
	"RESOURCE_TYPE":       func(v *coverageView) string { return v.resourceType },
	"ECR_REPOSITORY_NAME": func(v *coverageView) string { return v.repo },
}

// listCoverageStatistics is ListCoverageStatistics
// (POST /coverage/statistics/list). Each countsByGroup entry's groupKey
// holds the group's value (e.g. "ACTIVE" when grouping by
// SCAN_STATUS_CODE), ordered by value; all groups come in one page.
func (a *API) listCoverageStatistics(ctx context.Context, body []byte) (any, error) {
	var in struct {
		FilterCriteria rawJSON `json:"filterCriteria"`
		GroupBy        string  `json:"groupBy"`
		NextToken      string  `json:"nextToken"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	c, err := coverageSchema.compile(in.FilterCriteria)
	if err != nil {
		return nil, err
	}
	var group func(*coverageView) string
	if in.GroupBy != "" {
		g, ok := coverageGroups[in.GroupBy]
		if !ok {
			return nil, errValidation("groupBy %q: want one of SCAN_STATUS_CODE, SCAN_STATUS_REASON, ACCOUNT_ID, RESOURCE_TYPE, ECR_REPOSITORY_NAME", in.GroupBy)
		}
		group = g
	}
	views, err := a.coverageViews(ctx)
	if err != nil {
		return nil, err
	}
	type counts struct {
		Count    int64  `json:"count"`
		GroupKey string `json:"groupKey,omitempty"`
	}
	byGroup := map[string]int64{}
	var total int64
	for _, v := range views {
		if !c.match(v) {
			continue
		}
		total++
		if group != nil {
			byGroup[group(v)]++
		}
	}
	out := struct {
		CountsByGroup []counts `json:"countsByGroup"`
		TotalCounts   int64    `json:"totalCounts"`
	}{CountsByGroup: []counts{}, TotalCounts: total}
	for _, k := range sortStrings(byGroup) {
		out.CountsByGroup = append(out.CountsByGroup, counts{Count: byGroup[k], GroupKey: k})
	}
	return out, nil
}
