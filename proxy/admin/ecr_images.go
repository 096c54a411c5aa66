package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// imgRef is one image in one repository.
type imgRef struct {
	rec *index.ImageRecord
	ri  *index.RepoImage
}

// repositories returns every repository with at least one image, and its
// images ordered by digest.
func (a *API) repositories(ctx context.Context) (map[string][]imgRef, error) {
	if a.o.Images == nil {
		return nil, unavailable("image records")
	}
	out := map[string][]imgRef{}
	err := a.o.Images.EachImage(ctx, func(rec *index.ImageRecord) error {
		for i := range rec.Repos {
			ri := &rec.Repos[i]
			if !ri.Deleted {
				out[ri.Repository] = append(out[ri.Repository], imgRef{rec: rec, ri: ri})
			}
		}
		return ctx.Err()
	})
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool { return l[i].rec.Digest < l[j].rec.Digest })
	}
	return out, err
}

func (a *API) repoImages(ctx context.Context, repo string) ([]imgRef, error) {
	if repo == "" {
		return nil, errECRParam("repositoryName is required")
	}
	repos, err := a.repositories(ctx)
	if err != nil {
		return nil, err
	}
	imgs, ok := repos[repo]
	if !ok {
		return nil, errECRRepoNotFound(repo)
	}
	return imgs, nil
}

// resolve finds id (digest and/or tag) among imgs.
func resolve(imgs []imgRef, id *ecrtypes.ImageIdentifier) (imgRef, error) {
	if id == nil || (aws.ToString(id.ImageDigest) == "" && aws.ToString(id.ImageTag) == "") {
		return imgRef{}, errECRParam("imageId needs imageDigest or imageTag")
	}
	d, tag := aws.ToString(id.ImageDigest), aws.ToString(id.ImageTag)
	for _, im := range imgs {
		if d != "" && im.rec.Digest.String() != d {
			continue
		}
		if tag != "" && !containsStr(im.ri.Tags, tag) {
			continue
		}
		return im, nil
	}
	return imgRef{}, errECRImageNotFound("The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist", d, tag)
}

// ecrScanStatus maps Inspector's coverage reason to ECR's ScanStatus.
func ecrScanStatus(cov *index.Coverage, ri *index.RepoImage) *ecrtypes.ImageScanStatus {
	if ri != nil && ri.Status == index.ImageArchived {
		return &ecrtypes.ImageScanStatus{Status: ecrtypes.ScanStatusImageArchived, Description: aws.String("The image is archived")}
	}
	if cov == nil {
		return &ecrtypes.ImageScanStatus{Status: ecrtypes.ScanStatusPending, Description: aws.String("Pending initial scan")}
	}
	st := ecrtypes.ScanStatusFindingsUnavailable
	switch cov.Reason {
	case scan.ReasonSuccessful, scan.ReasonCorruptLayer, scan.ReasonLimitExceeded, scan.ReasonAnalyzerPanic:
		// Partly scanned (a layer not read whole): findings stand; the
		// description says what failed.
		st = ecrtypes.ScanStatusComplete
		if cov.ScanFrequency == "CONTINUOUS_SCAN" {
			st = ecrtypes.ScanStatusActive
		}
	case scan.ReasonPendingInitialScan, scan.ReasonPendingRevivalScan:
		st = ecrtypes.ScanStatusPending
	case scan.ReasonScanInProgress:
		st = ecrtypes.ScanStatusInProgress
	case scan.ReasonScanEligibilityExpired:
		st = ecrtypes.ScanStatusScanEligibilityExpired
	case scan.ReasonUnsupportedOS, scan.ReasonUnsupportedMediaType, scan.ReasonUnsupportedConfigFile:
		st = ecrtypes.ScanStatusUnsupportedImage
	case scan.ReasonImageArchived:
		st = ecrtypes.ScanStatusImageArchived
	case scan.ReasonInternalError, scan.ReasonAccessDenied:
		st = ecrtypes.ScanStatusFailed
	}
	desc := string(cov.Reason)
	if cov.Message != "" {
		desc += ": " + cov.Message
	}
	return &ecrtypes.ImageScanStatus{Status: st, Description: aws.String(desc)}
}

func (a *API) coverageOf(ctx context.Context, d digest.Digest) (*index.Coverage, error) {
	if a.o.Coverage == nil {
		return nil, nil
	}
	c, err := a.o.Coverage.Coverage(ctx, d)
	if errors.Is(err, index.ErrNotFound) {
		return nil, nil
	}
	return c, err
}

// indexCoverage is the coverage DescribeImages shows for an image index,
// which is never scanned itself (Inspector scans its platform images): nil
// (pending) until every platform image has coverage; then the coverage of
// the first one still pending, in progress or failed, or else of the first
// platform image with ImageScanCompletedAt the last one's. children are
// the platform images' digests (attestation manifests left out).
func (a *API) indexCoverage(ctx context.Context, children []digest.Digest) (*index.Coverage, error) {
	var first, notDone *index.Coverage
	var last *time.Time
	for _, d := range children {
		c, err := a.coverageOf(ctx, d)
		if err != nil || c == nil {
			return nil, err
		}
		if first == nil {
			first = c
		}
		switch st := ecrScanStatus(c, nil).Status; st {
		case ecrtypes.ScanStatusComplete, ecrtypes.ScanStatusActive:
		default:
			if notDone == nil {
				notDone = c
			}
		}
		if c.LastScannedAt != nil && (last == nil || c.LastScannedAt.After(*last)) {
			last = c.LastScannedAt
		}
	}
	if notDone != nil {
		return notDone, nil
	}
	if first == nil {
		return nil, nil
	}
	agg := *first
	agg.LastScannedAt = last
	return &agg, nil
}

// platformChildren are the digests of an index record's platform images.
func platformChildren(rec *index.ImageRecord) []digest.Digest {
	var out []digest.Digest
	for _, ch := range rec.PlatformImages() {
		out = append(out, ch.Digest)
	}
	return out
}

// severityCountsByImage counts ACTIVE findings by severity per repo@digest.
func (a *API) severityCountsByImage(ctx context.Context) (map[string]map[string]int32, error) {
	out := map[string]map[string]int32{}
	if a.o.Findings == nil {
		return out, nil
	}
	err := a.eachView(ctx, func(v *findingView) error {
		if v.status != scan.FindingActive {
			return nil
		}
		k := v.repo + "@" + v.f.Image.String()
		if out[k] == nil {
			out[k] = map[string]int32{}
		}
		out[k][string(v.f.Severity)]++
		return ctx.Err()
	})
	return out, err
}

func tagStatusOK(filter ecrtypes.TagStatus, tags []string) bool {
	switch filter {
	case ecrtypes.TagStatusTagged:
		return len(tags) > 0
	case ecrtypes.TagStatusUntagged:
		return len(tags) == 0
	}
	return true
}

func imageStatusOK(filter ecrtypes.ImageStatusFilter, ri *index.RepoImage) bool {
	archived := ri.Status == index.ImageArchived
	switch filter {
	case ecrtypes.ImageStatusFilterArchived:
		return archived
	case ecrtypes.ImageStatusFilterActive:
		return !archived
	case ecrtypes.ImageStatusFilterAny:
		return true
	}
	return !archived // ECR's default lists ACTIVE images
}

// ecrPage reads an ECR list operation's paging input: maxResults (1 to 1000,
// default 100) and nextToken, which must have been issued for op. Either
// problem is an InvalidParameterException.
func ecrPage(op string, maxResults *int32, nextToken *string) (int, *pageKey, error) {
	n := 100
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > 1000 {
			return 0, nil, errECRParam("maxResults %d: want 1 to 1000", *maxResults)
		}
		n = int(*maxResults)
	}
	k, err := decodeToken(op, aws.ToString(nextToken))
	if err != nil {
		return 0, nil, errECRParam("invalid nextToken")
	}
	return n, k, nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) ecrDescribeImages(ctx context.Context, body []byte) (any, error) {
	var in ecr.DescribeImagesInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repo := aws.ToString(in.RepositoryName)
	imgs, err := a.repoImages(ctx, repo)
	if err != nil {
		return nil, err
	}
	op := "describeImages:" + repo
	n, after, err := ecrPage(op, in.MaxResults, in.NextToken)
	if err != nil {
		return nil, err
	}
	var sel []imgRef
	if len(in.ImageIds) > 0 {
		if in.NextToken != nil || in.MaxResults != nil {
			return nil, errECRParam("imageIds cannot be combined with maxResults or nextToken")
		}
		for i := range in.ImageIds {
			im, err := resolve(imgs, &in.ImageIds[i])
			if err != nil {
				return nil, err
			}
			sel = append(sel, im)
		}
	} else {
		for _, im := range imgs {
			var f ecrtypes.DescribeImagesFilter
			if in.Filter != nil {
				f = *in.Filter
			}
			if tagStatusOK(f.TagStatus, im.ri.Tags) && imageStatusOK(f.ImageStatus, im.ri) {
				sel = append(sel, im)
			}
		}
	}
	pg, next := page(sel, func(im imgRef) pageKey { return pageKey{ID: im.rec.Digest.String()} }, false, after, n, op)
	counts, err := a.severityCountsByImage(ctx)
	if err != nil {
		return nil, err
	}
	out := &ecr.DescribeImagesOutput{ImageDetails: []ecrtypes.ImageDetail{}, NextToken: optString(next)}
	for _, im := range pg {
		cov, err := a.coverageOf(ctx, im.rec.Digest)
		kids := platformChildren(im.rec)
		if err == nil && im.rec.Index && len(kids) > 0 {
			cov, err = a.indexCoverage(ctx, kids)
		}
		if err != nil {
			return nil, err
		}
		d := ecrtypes.ImageDetail{
			RegistryId: aws.String(a.o.AccountID), RepositoryName: aws.String(repo),
			ImageDigest: aws.String(im.rec.Digest.String()), ImageTags: im.ri.Tags,
			ImageSizeInBytes: aws.Int64(ecrImageSize(im, imgs)), ImageManifestMediaType: optString(im.rec.MediaType),
			ImagePushedAt: timePtr(im.ri.PushedAt), LastRecordedPullTime: im.ri.LastPulledAt,
			ImageScanStatus: ecrScanStatus(cov, im.ri), ImageStatus: ecrtypes.ImageStatusActive,
			LastArchivedAt: im.ri.ArchivedAt,
		}
		if im.rec.Subject != "" {
			d.SubjectManifestDigest = aws.String(im.rec.Subject.String())
		}
		if im.ri.Status == index.ImageArchived {
			d.ImageStatus = ecrtypes.ImageStatusArchived
		}
		if cov != nil && cov.LastScannedAt != nil {
			c := counts[repo+"@"+im.rec.Digest.String()]
			if im.rec.Index {
				// An index's findings are its platform images'.
				c = map[string]int32{}
				for _, k := range kids {
					for sev, n := range counts[repo+"@"+k.String()] {
						c[sev] += n
					}
				}
			}
			if c == nil {
				c = map[string]int32{}
			}
			d.ImageScanFindingsSummary = &ecrtypes.ImageScanFindingsSummary{FindingSeverityCounts: c,
				ImageScanCompletedAt: cov.LastScannedAt, VulnerabilitySourceUpdatedAt: cov.LastScannedAt}
		}
		out.ImageDetails = append(out.ImageDetails, d)
	}
	return out, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (a *API) ecrListImages(ctx context.Context, body []byte) (any, error) {
	var in ecr.ListImagesInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repo := aws.ToString(in.RepositoryName)
	imgs, err := a.repoImages(ctx, repo)
	if err != nil {
		return nil, err
	}
	op := "listImages:" + repo
	n, after, err := ecrPage(op, in.MaxResults, in.NextToken)
	if err != nil {
		return nil, err
	}
	var f ecrtypes.ListImagesFilter
	if in.Filter != nil {
		f = *in.Filter
	}
	var ids []ecrtypes.ImageIdentifier
	for _, im := range imgs {
		if !tagStatusOK(f.TagStatus, im.ri.Tags) || !imageStatusOK(f.ImageStatus, im.ri) {
			continue
		}
		if len(im.ri.Tags) == 0 {
			ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String())})
		}
		for _, t := range im.ri.Tags {
			ids = append(ids, ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String()), ImageTag: aws.String(t)})
		}
	}
	pg, next := page(ids, func(id ecrtypes.ImageIdentifier) pageKey {
		return pageKey{ID: aws.ToString(id.ImageDigest) + "\x00" + aws.ToString(id.ImageTag)}
	}, false, after, n, op)
	return &ecr.ListImagesOutput{ImageIds: append([]ecrtypes.ImageIdentifier{}, pg...), NextToken: optString(next)}, nil
}

func (a *API) ecrDescribeRepositories(ctx context.Context, body []byte) (any, error) {
	var in ecr.DescribeRepositoriesInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repos, err := a.repositories(ctx)
	if err != nil {
		return nil, err
	}
	n, after, err := ecrPage("repos", in.MaxResults, in.NextToken)
	if err != nil {
		return nil, err
	}
	names := sortStrings(repos)
	if len(in.RepositoryNames) > 0 {
		names = nil
		for _, r := range in.RepositoryNames {
			if _, ok := repos[r]; !ok {
				return nil, errECRRepoNotFound(r)
			}
			names = append(names, r)
		}
	}
	var cfg *ScanningConfiguration
	if a.o.Config != nil {
		c, err := a.o.Config.ScanningConfiguration(ctx)
		if err != nil {
			return nil, err
		}
		cfg = &c
	}
	pg, next := page(names, func(s string) pageKey { return pageKey{ID: s} }, false, after, n, "repos")
	out := &ecr.DescribeRepositoriesOutput{Repositories: []ecrtypes.Repository{}, NextToken: optString(next)}
	for _, name := range pg {
		var created time.Time
		for _, im := range repos[name] {
			if created.IsZero() || (!im.ri.PushedAt.IsZero() && im.ri.PushedAt.Before(created)) {
				created = im.ri.PushedAt
			}
		}
		out.Repositories = append(out.Repositories, ecrtypes.Repository{
			RepositoryName: aws.String(name), RepositoryArn: aws.String(a.repoARN(name)), RegistryId: aws.String(a.o.AccountID),
			RepositoryUri: aws.String(name), CreatedAt: timePtr(created), ImageTagMutability: ecrtypes.ImageTagMutabilityMutable,
			ImageScanningConfiguration: &ecrtypes.ImageScanningConfiguration{ScanOnPush: scanFrequency(cfg, name) != "" && scanFrequency(cfg, name) != "MANUAL"},
		})
	}
	return out, nil
}

func (a *API) ecrStartImageScan(ctx context.Context, body []byte) (any, error) {
	if a.o.Scanner == nil {
		return nil, unavailable("manual scans")
	}
	var in ecr.StartImageScanInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repo := aws.ToString(in.RepositoryName)
	imgs, err := a.repoImages(ctx, repo)
	if err != nil {
		return nil, err
	}
	im, err := resolve(imgs, in.ImageId)
	if err != nil {
		return nil, err
	}
	if im.ri.Status == index.ImageArchived {
		return nil, &APIError{Status: 400, Code: "UnsupportedImageTypeException", Message: "the image is archived; restore it first"}
	}
	if err := a.o.Scanner.RequestScan(ctx, repo, im.rec.Digest); err != nil {
		return nil, fmt.Errorf("request scan: %w", err)
	}
	a.log.Info().Str("repo", repo).Str("digest", im.rec.Digest.String()).Msg("manual scan requested")
	return &ecr.StartImageScanOutput{RegistryId: aws.String(a.o.AccountID), RepositoryName: aws.String(repo),
		ImageId:         &ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String()), ImageTag: in.ImageId.ImageTag},
		ImageScanStatus: &ecrtypes.ImageScanStatus{Status: ecrtypes.ScanStatusInProgress, Description: aws.String("scan queued")}}, nil
}

func (a *API) ecrUpdateImageStorageClass(ctx context.Context, body []byte) (any, error) {
	if a.o.Archiver == nil {
		return nil, unavailable("archiving")
	}
	var in ecr.UpdateImageStorageClassInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repo := aws.ToString(in.RepositoryName)
	imgs, err := a.repoImages(ctx, repo)
	if err != nil {
		return nil, err
	}
	im, err := resolve(imgs, in.ImageId)
	if err != nil {
		return nil, err
	}
	var status ecrtypes.ImageStatus
	switch in.TargetStorageClass {
	case ecrtypes.TargetStorageClassArchive:
		err, status = a.o.Archiver.Archive(ctx, repo, im.rec.Digest), ecrtypes.ImageStatusArchived
	case ecrtypes.TargetStorageClassStandard:
		err, status = a.o.Archiver.Restore(ctx, repo, im.rec.Digest), ecrtypes.ImageStatusActive
	default:
		return nil, errECRParam("targetStorageClass %q: want STANDARD or ARCHIVE", in.TargetStorageClass)
	}
	if errors.Is(err, index.ErrNotFound) {
		return nil, errECRImageNotFound("image %s not found in %s", im.rec.Digest, repo)
	} else if err != nil {
		return nil, err
	}
	a.log.Info().Str("repo", repo).Str("digest", im.rec.Digest.String()).Str("storageClass", string(in.TargetStorageClass)).Msg("storage class changed")
	return &ecr.UpdateImageStorageClassOutput{RegistryId: aws.String(a.o.AccountID), RepositoryName: aws.String(repo),
		ImageId: &ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String()), ImageTag: in.ImageId.ImageTag}, ImageStatus: status}, nil
}

func (a *API) ecrBatchDeleteImage(ctx context.Context, body []byte) (any, error) {
	if a.o.Deleter == nil {
		return nil, unavailable("deletion")
	}
	var in ecr.BatchDeleteImageInput
	if err := decodeInput(body, &in); err != nil {
		return nil, errECRParam("%v", err)
	}
	repo := aws.ToString(in.RepositoryName)
	imgs, err := a.repoImages(ctx, repo)
	if err != nil {
		return nil, err
	}
	if len(in.ImageIds) < 1 || len(in.ImageIds) > 100 {
		return nil, errECRParam("imageIds: want 1 to 100")
	}
	out := &ecr.BatchDeleteImageOutput{ImageIds: []ecrtypes.ImageIdentifier{}, Failures: []ecrtypes.ImageFailure{}}
	for i := range in.ImageIds {
		id := in.ImageIds[i]
		fail := func(code ecrtypes.ImageFailureCode, reason string) {
			out.Failures = append(out.Failures, ecrtypes.ImageFailure{ImageId: &id, FailureCode: code, FailureReason: aws.String(reason)})
		}
		im, err := resolve(imgs, &id)
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.Code == "InvalidParameterException" {
				fail(ecrtypes.ImageFailureCodeMissingDigestAndTag, ae.Message)
			} else if aws.ToString(id.ImageDigest) != "" && aws.ToString(id.ImageTag) != "" {
				fail(ecrtypes.ImageFailureCodeImageTagDoesNotMatchDigest, "Requested image not found")
			} else {
				fail(ecrtypes.ImageFailureCodeImageNotFound, "Requested image not found")
			}
			continue
		}
		if tag := aws.ToString(id.ImageTag); tag != "" && aws.ToString(id.ImageDigest) == "" && len(im.ri.Tags) > 1 {
			err = a.o.Deleter.Untag(ctx, repo, tag)
		} else {
			err = a.o.Deleter.DeleteImage(ctx, repo, im.rec.Digest)
		}
		if errors.Is(err, index.ErrNotFound) {
			fail(ecrtypes.ImageFailureCodeImageNotFound, "Requested image not found")
			continue
		} else if err != nil {
			return nil, err
		}
		a.log.Info().Str("repo", repo).Str("digest", im.rec.Digest.String()).Msg("image deleted through the ECR API")
		out.ImageIds = append(out.ImageIds, ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String()), ImageTag: id.ImageTag})
	}
	return out, nil
}
