package main

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestScanRegistryReference pushes shared images to an in-process registry
// and scans them by reference (tag, digest, and an index per platform).
func TestScanRegistryReference(t *testing.T) {
	img := sharedImages(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	goImg, err := tarball.ImageFromPath(filepath.Join(img, "go-static.docker.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/go-static:gin")
	if err := remote.Write(ref, goImg); err != nil {
		t.Fatal(err)
	}
	d, _ := goImg.Digest()
	for _, src := range []string{host + "/go-static:gin", host + "/go-static@" + d.String()} {
		got := cdxComponents(t, runScan(t, "--format", "cyclonedx", src))
		if !got["Go github.com/gin-gonic/gin 1.6.3"] || !got["Go stdlib 1.21.0"] || len(got) != 14 {
			t.Errorf("%s: %d components", src, len(got))
		}
	}

	p, err := layout.FromPath(filepath.Join(img, "alpine"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, _ := top.IndexManifest()
	var idx v1.ImageIndex
	for _, m := range im.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == "alpine-3.18.9" {
			idx, err = top.ImageIndex(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if idx == nil {
		t.Fatal("alpine-3.18.9 index not in layout")
	}
	aref, _ := name.ParseReference(host + "/alpine:3.18.9")
	if err := remote.WriteIndex(aref, idx); err != nil {
		t.Fatal(err)
	}
	out := string(runScan(t, host+"/alpine:3.18.9"))
	if !strings.Contains(out, "linux/amd64") || !strings.Contains(out, "linux/arm64/v8") || strings.Count(out, "\nAlpine:v3.18 ") != 30 {
		t.Errorf("index scan:\n%s", out)
	}
}
