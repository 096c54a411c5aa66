//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// sharedImage is one artifact of ../shared/images to push.
type sharedImage struct {
	Repo, Tag string
	Digest    v1.Hash
	Index     bool
	img       v1.Image
	idx       v1.ImageIndex
}

// loadSharedImages reads every image of ../shared/images: the OCI layouts by
// ref name (the Alpine 3.18 index as an index) and the docker archive.
func loadSharedImages(t testing.TB, shared string) []sharedImage {
	t.Helper()
	var out []sharedImage
	for _, dir := range []string{"debian12", "alpine"} {
		p, err := layout.FromPath(filepath.Join(shared, "images", dir))
		if err != nil {
			t.Fatal(err)
		}
		ii, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := ii.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			ref := d.Annotations["org.opencontainers.image.ref.name"]
			si := sharedImage{Repo: "shared/" + dir, Tag: ref, Digest: d.Digest}
			switch d.MediaType {
			case types.OCIImageIndex, types.DockerManifestList:
				si.Index = true
				if si.idx, err = ii.ImageIndex(d.Digest); err != nil {
					t.Fatal(err)
				}
			default:
				if si.img, err = ii.Image(d.Digest); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, si)
		}
	}
	img, err := tarball.ImageFromPath(filepath.Join(shared, "images", "go-static.docker.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, sharedImage{Repo: "shared/go-static", Tag: "gin-1.6.3", Digest: d, img: img})
	return out
}

// push writes si to registry host through the proxy.
func (si sharedImage) push(t testing.TB, host string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(fmt.Sprintf("%s/%s:%s", host, si.Repo, si.Tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if si.Index {
		err = remote.WriteIndex(tag, si.idx)
	} else {
		err = remote.Write(tag, si.img)
	}
	if err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	return tag
}

// verifyPull pulls ref back and checks every manifest and blob byte for byte
// against its digest and the source.
func verifyPull(t testing.TB, host string, si sharedImage) {
	t.Helper()
	ref, err := name.NewDigest(fmt.Sprintf("%s/%s@%s", host, si.Repo, si.Digest), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if got := sha256Hex(desc.Manifest); "sha256:"+got != si.Digest.String() {
		t.Fatalf("manifest of %s came back as sha256:%s", ref, got)
	}
	var imgs []v1.Image
	if si.Index {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, img)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for _, img := range imgs {
		raw, err := img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfgName, _ := img.ConfigName()
		if "sha256:"+sha256Hex(raw) != cfgName.String() {
			t.Fatalf("config of %s differs", ref)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, _ := l.Digest()
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				t.Fatalf("layer %s of %s: %v", d, ref, err)
			}
			rc.Close()
			if "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.String() {
				t.Fatalf("layer %s of %s came back different", d, ref)
			}
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPushPullSharedImages pushes every shared image through the proxy and
// pulls it back byte-identical.
func TestPushPullSharedImages(t *testing.T) {
	shared := sharedDir(t)
	s := startServer(t, t.TempDir(), "--config", writeConfig(t, ""))
	images := loadSharedImages(t, shared)
	for _, si := range images {
		t.Run(si.Repo+":"+si.Tag, func(t *testing.T) {
			si.push(t, s.Registry)
			verifyPull(t, s.Registry, si)
		})
	}
	// Records: a push record with the tag, a pull record from the pull.
	checkRecords(t, s, images, true)
}
