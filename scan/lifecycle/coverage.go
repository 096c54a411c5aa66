package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// CoveredImage is one image in one repository as Inspector's coverage shows
// it (CoveredResource with AwsEcrContainerImage details,
// https://docs.aws.amazon.com/inspector/v2/APIReference/API_CoveredResource.html).
type CoveredImage struct {
	Repository    string        `json:"repository"`
	Digest        digest.Digest `json:"imageDigest"`
	Tags          []string      `json:"imageTags,omitempty"`
	Platform      scan.Platform `json:"platform"`
	ScanType      string        `json:"scanType"` // PACKAGE
	ScanFrequency string        `json:"scanFrequency"`
	StatusCode    string        `json:"statusCode"` // ACTIVE, INACTIVE
	Reason        scan.Reason   `json:"reason"`
	Message       string        `json:"message,omitempty"`
	LastScannedAt *time.Time    `json:"lastScannedAt,omitempty"`
	PushedAt      time.Time     `json:"pushedAt"`
	ImagePulledAt *time.Time    `json:"imagePulledAt,omitempty"`
	LastInUseAt   *time.Time    `json:"lastInUseAt,omitempty"`
	InUseCount    int           `json:"inUseCount"`
	ImageStatus   string        `json:"imageStatus"` // ACTIVE, ARCHIVED (ECR)
	// Parent is the image index this image was reached through (Coverage by index digest).
	Parent digest.Digest `json:"parent,omitempty"`
}

// CoverageFilter narrows coverage listings (a subset of Inspector's
// CoverageFilterCriteria). Empty fields match everything; list fields match
// any of their values; repository names may use '*' wildcards.
type CoverageFilter struct {
	Repositories     []string
	Digests          []digest.Digest
	Tags             []string
	StatusCodes      []string
	Reasons          []scan.Reason
	ScanFrequencies  []string
	LastScannedAfter *time.Time
	LastScannedUntil *time.Time
}

func (f *CoverageFilter) match(ci *CoveredImage) bool {
	if len(f.Repositories) > 0 && !slices.ContainsFunc(f.Repositories, func(p string) bool { return WildcardMatch(p, ci.Repository) }) {
		return false
	}
	if len(f.Digests) > 0 && !slices.Contains(f.Digests, ci.Digest) && (ci.Parent == "" || !slices.Contains(f.Digests, ci.Parent)) {
		return false
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return slices.Contains(ci.Tags, t) }) {
		return false
	}
	if len(f.StatusCodes) > 0 && !slices.Contains(f.StatusCodes, ci.StatusCode) {
		return false
	}
	if len(f.Reasons) > 0 && !slices.Contains(f.Reasons, ci.Reason) {
		return false
	}
	if len(f.ScanFrequencies) > 0 && !slices.Contains(f.ScanFrequencies, ci.ScanFrequency) {
		return false
	}
	if f.LastScannedAfter != nil && (ci.LastScannedAt == nil || ci.LastScannedAt.Before(*f.LastScannedAfter)) {
		return false
	}
	if f.LastScannedUntil != nil && (ci.LastScannedAt == nil || ci.LastScannedAt.After(*f.LastScannedUntil)) {
		return false
	}
	return true
}

// covered joins cov with st's repositories and the in-use stats.
func covered(st *imageState, cov *index.Coverage, use index.InUseStats) []CoveredImage {
	out := make([]CoveredImage, 0, len(st.Live))
	for _, r := range st.Live {
		ci := CoveredImage{
			Repository: r.Repository, Digest: st.Digest, Tags: r.Tags, Platform: cov.Platform,
			ScanType: cov.ScanType, ScanFrequency: cov.ScanFrequency, StatusCode: cov.StatusCode,
			Reason: cov.Reason, Message: cov.Message, LastScannedAt: cov.LastScannedAt,
			PushedAt: r.PushedAt, ImagePulledAt: r.LastPulledAt, LastInUseAt: use.LastInUseAt,
			InUseCount: use.Count, ImageStatus: r.Status, Parent: st.Parent,
		}
		if ci.ImageStatus == "" {
			ci.ImageStatus = index.ImageActive
		}
		if ci.Platform == (scan.Platform{}) {
			ci.Platform = st.Platform
		}
		out = append(out, ci)
	}
	return out
}

// Coverage returns the coverage of manifest d in each repository holding it,
// or for an image index the coverage of each child (Parent set to d).
// Images not yet covered are left out; index.ErrNotFound (wrapped) when d is
// not recorded.
func (s *Service) Coverage(ctx context.Context, d digest.Digest) ([]CoveredImage, error) {
	c, err := s.Configuration(ctx)
	if err != nil {
		return nil, err
	}
	rec, err := s.o.Records.Image(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: coverage %s: %w", d, err)
	}
	now := s.now()
	var out []CoveredImage
	for _, st := range s.targets(ctx, c, rec, false) {
		cov, err := s.coverage(ctx, st.Digest)
		if err != nil {
			return nil, err
		}
		if cov == nil {
			continue
		}
		use, err := s.inuse.Stats(ctx, st.Digest, now)
		if err != nil {
			return nil, fmt.Errorf("lifecycle: in-use %s: %w", st.Digest, err)
		}
		out = append(out, covered(st, cov, use)...)
	}
	return out, nil
}

// all returns every covered image (one per repository holding it), sorted by
// repository then digest.
func (s *Service) all(ctx context.Context, f *CoverageFilter) ([]CoveredImage, error) {
	c, err := s.Configuration(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	covs, err := s.covs.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: coverage: %w", err)
	}
	use, err := s.inuse.AllStats(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: in-use: %w", err)
	}
	var out []CoveredImage
	seen := map[digest.Digest]bool{}
	add := func(st *imageState) {
		if seen[st.Digest] {
			return
		}
		cov := covs[st.Digest]
		if cov == nil {
			return
		}
		seen[st.Digest] = true
		for _, ci := range covered(st, cov, use[st.Digest]) {
			if f.match(&ci) {
				out = append(out, ci)
			}
		}
	}
	var indexes []*index.ImageRecord
	err = s.o.Records.EachImage(ctx, func(rec *index.ImageRecord) error {
		if rec.Index {
			indexes = append(indexes, rec)
		} else {
			add(stateOf(c, rec, nil))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lifecycle: coverage: records: %w", err)
	}
	for _, rec := range indexes {
		for _, st := range s.targets(ctx, c, rec, false) {
			if !seen[st.Digest] {
				add(st)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repository != out[j].Repository {
			return out[i].Repository < out[j].Repository
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

// ListCoverage is Inspector's ListCoverage for ECR images: covered images
// matching f, sorted by repository then digest, at most limit (default and
// cap 1000) after the position named by token ("" for the start). next is the
// token for the following page, "" at the end.
func (s *Service) ListCoverage(ctx context.Context, f CoverageFilter, token string, limit int) (items []CoveredImage, next string, err error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	all, err := s.all(ctx, &f)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if token != "" {
		repo, d, ok := strings.Cut(token, "@")
		if !ok {
			return nil, "", fmt.Errorf("%w: bad nextToken", ErrInvalidRequest)
		}
		start = sort.Search(len(all), func(i int) bool {
			return all[i].Repository > repo || (all[i].Repository == repo && string(all[i].Digest) > d)
		})
	}
	end := min(start+limit, len(all))
	items = all[start:end]
	if end < len(all) {
		last := all[end-1]
		next = last.Repository + "@" + last.Digest.String()
	}
	return items, next, nil
}

// Group-by keys of CoverageStatistics (Inspector's GroupKey values).
const (
	GroupByStatusCode = "SCAN_STATUS_CODE"
	GroupByReason     = "SCAN_STATUS_REASON"
	GroupByRepository = "ECR_REPOSITORY_NAME"
	GroupByFrequency  = "SCAN_FREQUENCY"
)

// Count is one group of CoverageStatistics.
type Count struct {
	GroupKey string `json:"groupKey"`
	Count    int    `json:"count"`
}

// CoverageStatistics is Inspector's ListCoverageStatistics: covered images
// matching f counted per groupBy value (descending count, then key), and the
// total. An unknown groupBy is ErrInvalidRequest.
func (s *Service) CoverageStatistics(ctx context.Context, f CoverageFilter, groupBy string) ([]Count, int, error) {
	var keyOf func(ci *CoveredImage) string
	switch groupBy {
	case GroupByStatusCode:
		keyOf = func(ci *CoveredImage) string { return ci.StatusCode }
	case GroupByReason:
		keyOf = func(ci *CoveredImage) string { return string(ci.Reason) }
	case GroupByRepository:
		keyOf = func(ci *CoveredImage) string { return ci.Repository }
	case GroupByFrequency:
		keyOf = func(ci *CoveredImage) string { return ci.ScanFrequency }
	default:
		return nil, 0, fmt.Errorf("%w: groupBy %q", ErrInvalidRequest, groupBy)
	}
	all, err := s.all(ctx, &f)
	if err != nil {
		return nil, 0, err
	}
	m := map[string]int{}
	for i := range all {
		m[keyOf(&all[i])]++
	}
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{GroupKey: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].GroupKey < out[j].GroupKey
	})
	return out, len(all), nil
}
