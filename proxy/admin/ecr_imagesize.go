package admin

import "github.com/opencontainers/go-digest"

// ecrImageSize is ECR's imageSizeInBytes for im: the image's size as the
// records have it (config and layers), for an image index the largest of
// its manifests among imgs (ECR: "If the image is a manifest list, this will
// be the max size of all manifests in the list"), else the manifest's own
// size (records from before image sizes were recorded, or children not
// known).
func ecrImageSize(im imgRef, imgs []imgRef) int64 {
	if im.rec.ImageSize > 0 {
		return im.rec.ImageSize
	}
	if im.rec.Index {
		children := make(map[digest.Digest]bool, len(im.rec.Children))
		for _, c := range im.rec.Children {
			children[c.Digest] = true
		}
		var largest int64
		for _, c := range imgs {
			if children[c.rec.Digest] {
				largest = max(largest, ecrImageSize(c, nil))
			}
		}
		if largest > 0 {
			return largest
		}
	}
	return im.rec.Size
}
