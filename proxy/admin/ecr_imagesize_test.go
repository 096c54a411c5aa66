package admin

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// TestSDKECRImageSize: DescribeImages' imageSizeInBytes is the image's size
// (config and layers, as recorded), not its manifest's; for an image index,
// ECR's rule: the largest of its manifests; a record from before image sizes
// were recorded falls back to the manifest size.
func TestSDKECRImageSize(t *testing.T) {
	s := newFakeStore()
	repo := []index.RepoImage{{Repository: "sized", PushedAt: t0, Status: index.ImageActive}}
	amd, arm, idx, old := dgst(11), dgst(12), dgst(13), dgst(14)
	s.images[amd] = &index.ImageRecord{Digest: amd, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 406, ImageSize: 28_000_000, Parents: []digest.Digest{idx}, Repos: repo}
	s.images[arm] = &index.ImageRecord{Digest: arm, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 406, ImageSize: 27_000_000, Parents: []digest.Digest{idx}, Repos: repo}
	s.images[idx] = &index.ImageRecord{Digest: idx, MediaType: "application/vnd.oci.image.index.v1+json", Size: 700, Index: true,
		Children: []index.ChildImage{{Digest: amd, Platform: scan.Platform{OS: "linux", Architecture: "amd64"}}, {Digest: arm, Platform: scan.Platform{OS: "linux", Architecture: "arm64"}}}, Repos: repo}
	s.images[old] = &index.ImageRecord{Digest: old, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 999, Repos: repo}
	c := ecrClient(newTestServer(t, testAPI(t, s)).URL)
	di, err := c.DescribeImages(context.Background(), &ecr.DescribeImagesInput{RepositoryName: aws.String("sized")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, d := range di.ImageDetails {
		got[aws.ToString(d.ImageDigest)] = aws.ToInt64(d.ImageSizeInBytes)
	}
	want := map[string]int64{amd.String(): 28_000_000, arm.String(): 27_000_000, idx.String(): 28_000_000, old.String(): 999}
	for d, w := range want {
		if got[d] != w {
			t.Errorf("imageSizeInBytes of %s = %d, want %d", d, got[d], w)
		}
	}
}
