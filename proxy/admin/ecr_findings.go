package admin

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// ECR's DescribeImageScanFindings: the ACTIVE findings of one image in one
// repository as EnhancedImageScanFinding (Inspector's finding in ECR's shape).

func (a *API) ecrDescribeImageScanFindings(ctx context.Context, body []byte) (any, error) {
	var in ecr.DescribeImageScanFindingsInput
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
	op := "scanFindings:" + repo + "@" + im.rec.Digest.String()
	n, after, err := ecrPage(op, in.MaxResults, in.NextToken)
	if err != nil {
		return nil, err
	}
	cov, err := a.coverageOf(ctx, im.rec.Digest)
	// An image index is never scanned itself: its scan is its platform
	// images', and so are its findings (as DescribeImages shows it).
	images := map[digest.Digest]bool{im.rec.Digest: true}
	if kids := platformChildren(im.rec); err == nil && im.rec.Index && len(kids) > 0 {
		cov, err = a.indexCoverage(ctx, kids)
		for _, k := range kids {
			images[k] = true
		}
	}
	if err != nil {
		return nil, err
	}
	status := ecrScanStatus(cov, im.ri)
	if cov == nil || cov.LastScannedAt == nil {
		return nil, &APIError{Status: 400, Code: "ScanNotFoundException",
			Message: fmt.Sprintf("Image scan does not exist for the image with '{imageDigest:'%s'}' in the repository with name '%s'", im.rec.Digest, repo)}
	}
	var views []*findingView
	counts := map[string]int32{}
	err = a.eachView(ctx, func(v *findingView) error {
		if v.repo == repo && images[v.f.Image] && v.status == scan.FindingActive {
			views = append(views, v)
			counts[string(v.f.Severity)]++
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	key := func(v *findingView) pageKey { return pageKey{N: float64(v.f.Severity.Rank()), ID: v.arn} }
	pg, next := page(views, key, true, after, n, op)
	res := &ecrtypes.ImageScanFindings{FindingSeverityCounts: counts, ImageScanCompletedAt: cov.LastScannedAt,
		VulnerabilitySourceUpdatedAt: cov.LastScannedAt, EnhancedFindings: []ecrtypes.EnhancedImageScanFinding{}}
	for _, v := range pg {
		res.EnhancedFindings = append(res.EnhancedFindings, v.toECR())
	}
	return &ecr.DescribeImageScanFindingsOutput{RegistryId: aws.String(a.o.AccountID), RepositoryName: aws.String(repo),
		ImageId:         &ecrtypes.ImageIdentifier{ImageDigest: aws.String(im.rec.Digest.String()), ImageTag: in.ImageId.ImageTag},
		ImageScanStatus: status, ImageScanFindings: res, NextToken: optString(next)}, nil
}

// toECR renders a view as ECR's EnhancedImageScanFinding.
func (v *findingView) toECR() ecrtypes.EnhancedImageScanFinding {
	w := v.toWire()
	p := w.PackageVulnerabilityDetails
	det := &ecrtypes.PackageVulnerabilityDetails{Source: aws.String(p.Source), VulnerabilityId: aws.String(p.VulnerabilityId),
		ReferenceUrls: p.ReferenceUrls, RelatedVulnerabilities: p.RelatedVulnerabilities, SourceUrl: optString(p.SourceUrl),
		VendorSeverity: optString(p.VendorSeverity)}
	for _, c := range p.Cvss {
		det.Cvss = append(det.Cvss, ecrtypes.CvssScore{BaseScore: c.BaseScore, ScoringVector: aws.String(c.ScoringVector),
			Source: aws.String(c.Source), Version: aws.String(c.Version)})
	}
	for _, vp := range p.VulnerablePackages {
		det.VulnerablePackages = append(det.VulnerablePackages, ecrtypes.VulnerablePackage{Name: aws.String(vp.Name),
			Version: aws.String(vp.Version), Release: optString(vp.Release), Epoch: aws.Int32(vp.Epoch), Arch: optString(vp.Arch),
			FilePath: optString(vp.FilePath), FixedInVersion: optString(vp.FixedInVersion),
			PackageManager: optString(vp.PackageManager), SourceLayerHash: optString(vp.SourceLayerHash)})
	}
	img := w.Resources[0].Details.AwsEcrContainerImage
	out := ecrtypes.EnhancedImageScanFinding{
		AwsAccountId: aws.String(w.AwsAccountId), Description: aws.String(w.Description), FindingArn: aws.String(w.FindingArn),
		FirstObservedAt: timePtr(v.f.FirstObservedAt), LastObservedAt: timePtr(v.f.LastObservedAt), UpdatedAt: timePtr(v.f.UpdatedAt),
		Severity: aws.String(w.Severity), Status: aws.String(w.Status), Title: aws.String(w.Title), Type: aws.String(w.Type),
		FixAvailable: optString(w.FixAvailable), ExploitAvailable: aws.String("NO"), PackageVulnerabilityDetails: det,
		Resources: []ecrtypes.Resource{{Id: aws.String(w.Resources[0].ID), Type: aws.String(w.Resources[0].Type),
			Details: &ecrtypes.ResourceDetails{AwsEcrContainerImage: &ecrtypes.AwsEcrContainerImageDetails{
				ImageHash: aws.String(img.ImageHash), Registry: aws.String(img.Registry), RepositoryName: aws.String(img.RepositoryName),
				Architecture: optString(img.Architecture), ImageTags: img.ImageTags, InUseCount: img.InUseCount,
				LastInUseAt: v.lastUse, Platform: optString(img.Platform), PushedAt: v.pushedAt()}}}},
	}
	if w.Remediation.Recommendation != nil {
		out.Remediation = &ecrtypes.Remediation{Recommendation: &ecrtypes.Recommendation{
			Text: optString(w.Remediation.Recommendation.Text), Url: optString(w.Remediation.Recommendation.Url)}}
	}
	if w.InspectorScore != nil {
		out.Score = *w.InspectorScore
		if d := w.InspectorScoreDetails; d != nil && d.AdjustedCvss != nil {
			out.ScoreDetails = &ecrtypes.ScoreDetails{Cvss: &ecrtypes.CvssScoreDetails{Score: d.AdjustedCvss.Score,
				ScoreSource: aws.String(d.AdjustedCvss.ScoreSource), ScoringVector: aws.String(d.AdjustedCvss.ScoringVector),
				Version: aws.String(d.AdjustedCvss.Version)}}
		}
	}
	return out
}
