package proxy

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

// TestRoundTripSharedImages pushes the real images of ../shared/images
// through the proxy with go-containerregistry's remote, pulls them back,
// and checks every blob is byte-identical to the source, the tee saw
// exactly those bytes both ways, and the records are right (and survive a
// restart of Badger).
func TestRoundTripSharedImages(t *testing.T) {
	shared := sharedDir(t)
	h := newHarness(t, nil)
	ctx := context.Background()

	type pushed struct {
		ref    name.Reference
		digest v1.Hash
		index  bool
		layers map[v1.Hash][]byte // blob bytes from the source
	}
	var all []pushed
	for _, lay := range []string{"debian12", "alpine"} {
		p, err := layout.FromPath(filepath.Join(shared, "images", lay))
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
		for _, desc := range im.Manifests {
			tag := desc.Annotations["org.opencontainers.image.ref.name"]
			ref, err := name.ParseReference(h.host+"/shared/"+lay+":"+tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			pu := pushed{ref: ref, digest: desc.Digest, layers: map[v1.Hash][]byte{}}
			if desc.MediaType.IsIndex() {
				child, err := ii.ImageIndex(desc.Digest)
				if err != nil {
					t.Fatal(err)
				}
				if err := remote.WriteIndex(ref, child, remote.WithContext(ctx)); err != nil {
					t.Fatalf("push %s: %v", ref, err)
				}
				pu.index = true
			} else {
				img, err := ii.Image(desc.Digest)
				if err != nil {
					t.Fatal(err)
				}
				if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
					t.Fatalf("push %s: %v", ref, err)
				}
				ls, _ := img.Layers()
				for _, l := range ls {
					d, _ := l.Digest()
					b, err := os.ReadFile(filepath.Join(shared, "images", lay, "blobs", d.Algorithm, d.Hex))
					if err != nil {
						t.Fatal(err)
					}
					pu.layers[d] = b
				}
			}
			all = append(all, pu)
		}
	}
	if len(all) != 5 {
		t.Fatalf("pushed %d manifests, want 5 (3 debian12 + 2 alpine)", len(all))
	}

	// Pull back through the proxy: byte-identical blobs, tee saw them.
	for _, pu := range all {
		desc, err := remote.Get(pu.ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pull %s: %v", pu.ref, err)
		}
		if desc.Digest != pu.digest {
			t.Errorf("%s: pulled digest %s, pushed %s", pu.ref, desc.Digest, pu.digest)
		}
		for d, want := range pu.layers {
			l, err := remote.Layer(pu.ref.Context().Digest(d.String()), remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close()
			if err != nil {
				t.Fatalf("read %s: %v", d, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s blob %s: pulled bytes differ from the source", pu.ref, d)
			}
		}
	}
	// Close waits for the handlers, so every sink has ended.
	h.srv.Close()
	// The tee saw exactly the uploaded layer bytes.
	up := h.teer.uploadedBlobs(t)
	for _, pu := range all {
		for d, b := range pu.layers {
			got, ok := up[digest.Digest(d.String())]
			if !ok {
				// Blobs shared between images are uploaded once.
				continue
			}
			if !bytes.Equal(got, b) {
				t.Errorf("tee upload of %s: %d bytes differ from the source's %d", d, len(got), len(b))
			}
		}
	}
	if len(up) == 0 {
		t.Fatal("tee saw no uploads")
	}

	for _, pu := range all {
		for d, want := range pu.layers {
			h.teer.mu.Lock()
			teed := h.teer.pulls[digest.Digest(d.String())]
			ends := h.teer.sinkEnd[d.String()]
			h.teer.mu.Unlock()
			if len(teed) == 0 || !bytes.Equal(teed[len(teed)-1], want) || !ends[len(ends)-1] {
				t.Errorf("tee of pull %s did not see exactly the blob (complete=%v)", d, ends)
			}
		}
	}

	check := func() {
		t.Helper()
		for _, pu := range all {
			rec, err := h.records.Get(ctx, digest.Digest(pu.digest.String()))
			if err != nil {
				t.Fatalf("record of %s: %v", pu.ref, err)
			}
			ri := rec.Repo(pu.ref.Context().RepositoryStr())
			if ri == nil {
				t.Fatalf("record of %s has no repo %s: %+v", pu.digest, pu.ref.Context().RepositoryStr(), rec)
			}
			if ri.PushedAt.IsZero() || ri.PullCount < 1 || ri.LastPulledAt == nil || ri.Status != index.ImageActive {
				t.Errorf("%s: record %+v", pu.ref, ri)
			}
			if len(ri.Tags) != 1 || ri.Tags[0] != pu.ref.Identifier() {
				t.Errorf("%s: tags %v", pu.ref, ri.Tags)
			}
			if rec.Index != pu.index {
				t.Errorf("%s: Index=%v", pu.ref, rec.Index)
			}
			if pu.index {
				if len(rec.Children) != 2 || rec.Children[0].Platform.Architecture == "" {
					t.Errorf("%s: children %+v", pu.ref, rec.Children)
				}
				for _, c := range rec.Children {
					child, err := h.records.Get(ctx, c.Digest)
					if err != nil || len(child.Parents) != 1 || child.Parents[0] != rec.Digest {
						t.Errorf("child %s of %s: %+v %v", c.Digest, pu.ref, child, err)
					}
				}
			}
		}
	}
	check()
	h.restart()
	check()
}

// TestPushDockerArchive pushes the docker-archive go-static image through
// the proxy and reads it back.
func TestPushDockerArchive(t *testing.T) {
	shared := sharedDir(t)
	h := newHarness(t, nil)
	img, err := tarball.ImageFromPath(filepath.Join(shared, "images", "go-static.docker.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(h.host+"/go-static:gin-1.6.3", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	got, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Fatalf("digest %s, want %s", got.Digest, want)
	}
	rec, err := h.records.Get(context.Background(), digest.Digest(want.String()))
	if err != nil {
		t.Fatal(err)
	}
	if ri := rec.Repo("go-static"); ri == nil || ri.PullCount != 0 {
		t.Fatalf("HEAD must not count as a pull: %+v", rec)
	}
}
