package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
)

// scanSource is an image opened for `tollgate scan`: its top manifest and a
// fetcher for its blobs (scan.BlobFetcher, maybe scan.ManifestFetcher).
type scanSource struct {
	name      string
	manifest  []byte
	mediaType string
	fetcher   interface {
		Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error)
	}
	close func() error
}

// openSource parses SOURCE in skopeo's transport syntax: oci:PATH[:TAG],
// oci-archive:PATH[:TAG], docker-archive:PATH, or a registry reference.
func openSource(ctx context.Context, src string) (*scanSource, error) {
	switch {
	case strings.HasPrefix(src, "oci:"):
		dir, tag := splitTag(strings.TrimPrefix(src, "oci:"))
		return openLayout(dir, tag, src)
	case strings.HasPrefix(src, "oci-archive:"):
		file, tag := splitTag(strings.TrimPrefix(src, "oci-archive:"))
		return openOCIArchive(file, tag, src)
	case strings.HasPrefix(src, "docker-archive:"):
		return openDockerArchive(strings.TrimPrefix(src, "docker-archive:"), src)
	case strings.HasPrefix(src, "docker://"):
		src = strings.TrimPrefix(src, "docker://")
	}
	return openRemote(ctx, src)
}

// splitTag splits PATH:TAG at the last colon when what follows has no slash.
func splitTag(s string) (string, string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, ""
	}
	return s[:i], s[i+1:]
}

type ociIndex struct {
	Manifests []struct {
		MediaType   string            `json:"mediaType"`
		Digest      digest.Digest     `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"manifests"`
}

// pickRef returns the index entry named tag (org.opencontainers.image.ref.name),
// or the only entry when tag is empty.
func pickRef(indexJSON []byte, tag string) (digest.Digest, string, error) {
	var idx ociIndex
	if err := json.Unmarshal(indexJSON, &idx); err != nil {
		return "", "", fmt.Errorf("index.json: %w", err)
	}
	var tags []string
	for _, m := range idx.Manifests {
		ref := m.Annotations["org.opencontainers.image.ref.name"]
		if tag != "" && ref == tag || tag == "" && len(idx.Manifests) == 1 {
			return m.Digest, m.MediaType, nil
		}
		tags = append(tags, ref)
	}
	sort.Strings(tags)
	if tag == "" {
		return "", "", fmt.Errorf("layout has %d images, name one with :TAG (%s)", len(idx.Manifests), strings.Join(tags, ", "))
	}
	return "", "", fmt.Errorf("tag %q not found (have %s)", tag, strings.Join(tags, ", "))
}

type layoutFetcher struct{ p layout.Path }

func (l layoutFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	h, err := v1.NewHash(d.String())
	if err != nil {
		return nil, err
	}
	return l.p.Blob(h)
}

func openLayout(dir, tag, src string) (*scanSource, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("oci layout: %w", err)
	}
	d, mt, err := pickRef(b, tag)
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	f := layoutFetcher{p}
	body, err := readAllClose(f.Fetch(context.Background(), "", d))
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: manifest %s: %w", dir, d, err)
	}
	return &scanSource{name: src, manifest: body, mediaType: mt, fetcher: f, close: func() error { return nil }}, nil
}

func readAllClose(rc io.ReadCloser, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 16<<20))
}

// archiveFetcher reads blobs/<alg>/<hex> from an OCI layout inside a tar
// archive, scanning the (seekable) file for each blob; nothing is extracted.
type archiveFetcher struct{ file string }

func (a archiveFetcher) open(name string) (io.ReadCloser, error) {
	f, err := os.Open(a.file)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
			}
			return nil, err
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			return struct {
				io.Reader
				io.Closer
			}{io.LimitReader(tr, h.Size), f}, nil
		}
	}
}

func (a archiveFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return a.open("blobs/" + d.Algorithm().String() + "/" + d.Encoded())
}

func openOCIArchive(file, tag, src string) (*scanSource, error) {
	a := archiveFetcher{file}
	b, err := readAllClose(a.open("index.json"))
	if err != nil {
		return nil, fmt.Errorf("oci archive %s: %w", file, err)
	}
	d, mt, err := pickRef(b, tag)
	if err != nil {
		return nil, fmt.Errorf("oci archive %s: %w", file, err)
	}
	body, err := readAllClose(a.Fetch(context.Background(), "", d))
	if err != nil {
		return nil, fmt.Errorf("oci archive %s: manifest %s: %w", file, d, err)
	}
	return &scanSource{name: src, manifest: body, mediaType: mt, fetcher: a, close: func() error { return nil }}, nil
}

// tarballFetcher serves a docker-archive's config and layers.
type tarballFetcher struct{ img v1.Image }

func (t tarballFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	if cn, err := t.img.ConfigName(); err == nil && cn.String() == d.String() {
		b, err := t.img.RawConfigFile()
		return io.NopCloser(bytes.NewReader(b)), err
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return nil, err
	}
	l, err := t.img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func openDockerArchive(file, src string) (*scanSource, error) {
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", file, err)
	}
	body, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", file, err)
	}
	mt, _ := img.MediaType()
	return &scanSource{name: src, manifest: body, mediaType: string(mt), fetcher: tarballFetcher{img}, close: func() error { return nil }}, nil
}

// remoteFetcher reads blobs and manifests from a registry.
type remoteFetcher struct {
	repo name.Repository
	opts []remote.Option
}

func (r remoteFetcher) Fetch(ctx context.Context, _ string, d digest.Digest) (io.ReadCloser, error) {
	l, err := remote.Layer(r.repo.Digest(d.String()), append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

func (r remoteFetcher) FetchManifest(ctx context.Context, _ string, d digest.Digest) ([]byte, string, error) {
	desc, err := remote.Get(r.repo.Digest(d.String()), append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, "", err
	}
	return desc.Manifest, string(desc.MediaType), nil
}

func openRemote(ctx context.Context, src string) (*scanSource, error) {
	ref, err := name.ParseReference(src)
	if err != nil {
		return nil, fmt.Errorf("%q is not oci:PATH, oci-archive:PATH, docker-archive:PATH or an image reference: %w", src, err)
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	desc, err := remote.Get(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return &scanSource{name: src, manifest: desc.Manifest, mediaType: string(desc.MediaType),
		fetcher: remoteFetcher{repo: ref.Context(), opts: opts}, close: func() error { return nil }}, nil
}
