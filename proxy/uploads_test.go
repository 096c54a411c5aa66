package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// startUpload POSTs an upload session and returns the proxy-relative
// Location path+query.
func startUpload(t *testing.T, h *harness, repo string) string {
	t.Helper()
	resp := h.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("POST upload: %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != h.host {
		t.Fatalf("Location %s does not point at the proxy %s", loc, h.host)
	}
	return loc.RequestURI()
}

func TestStreamedUploadTeeOffsetsAndCancel(t *testing.T) {
	h := newHarness(t, nil)
	blob := make([]byte, 3<<20+123)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)

	// Two PATCHes without Content-Range (docker's streamed upload), then
	// an empty PUT.
	loc := startUpload(t, h, "up/stream")
	session := loc[strings.LastIndex(strings.Split(loc, "?")[0], "/")+1 : strings.Index(loc, "?")]
	for _, part := range [][]byte{blob[:1<<20], blob[1<<20:]} {
		req, _ := http.NewRequest("PATCH", h.srv.URL+loc, io.NopCloser(bytes.NewReader(part)))
		req.ContentLength = -1 // chunked, like docker
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("PATCH: %d", resp.StatusCode)
		}
		u, _ := url.Parse(resp.Header.Get("Location"))
		loc = u.RequestURI()
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp := h.do("PUT", loc+sep+"digest="+url.QueryEscape(d.String()), nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("PUT: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	// UploadDone precedes the 201 (the client's manifest PUT comes after).
	h.teer.mu.Lock()
	pieces := h.teer.uploads["up/stream/"+session]
	done, ok := h.teer.done["up/stream/"+session]
	h.teer.mu.Unlock()
	if !ok || done != d {
		t.Fatalf("UploadDone(%q) = %q, %v before the 201; want %s", session, done, ok, d)
	}
	if len(pieces) != 2 || pieces[0] == nil || pieces[1<<20] == nil {
		t.Fatalf("tee pieces at offsets %v, want 0 and %d", keys(pieces), 1<<20)
	}
	if got := h.teer.uploadedBlobs(t)[d]; !bytes.Equal(got, blob) {
		t.Fatalf("tee reassembled %d bytes, not the blob", len(got))
	}

	// Monolithic POST+PUT with Content-Range on a chunk.
	loc = startUpload(t, h, "up/stream")
	resp = h.do("GET", loc, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("upload status GET: %d", resp.StatusCode)
	}
	// Cancel.
	resp = h.do("DELETE", loc, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	session2 := strings.Split(loc[strings.LastIndex(strings.Split(loc, "?")[0], "/")+1:], "?")[0]
	h.teer.mu.Lock()
	d2, ok := h.teer.done["up/stream/"+session2]
	h.teer.mu.Unlock()
	if !ok || d2 != "" {
		t.Fatalf("cancel: UploadDone(%q) = %q, %v before the 204", session2, d2, ok)
	}

	// Pull it back with a Range request: partial content, no pull tee.
	resp = h.do("GET", "/v2/up/stream/blobs/"+d.String(), nil, map[string]string{"Range": "bytes=10-19"})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || !bytes.Equal(b, blob[10:20]) {
		t.Fatalf("range: %d %x", resp.StatusCode, b)
	}
}

func keys(m map[int64]*bytes.Buffer) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestReferrersAndOCISubject(t *testing.T) {
	h := newHarness(t, nil)
	img := pushRandom(t, h.host, "ref/app", "v1")
	subject := imgDigest(t, img)
	sz, _ := img.Size()
	empty := []byte("{}")
	ed := digest.FromBytes(empty)
	// The empty config blob.
	loc := startUpload(t, h, "ref/app")
	resp := h.do("PUT", loc+"&digest="+url.QueryEscape(ed.String()), empty, nil)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("config blob: %d", resp.StatusCode)
	}
	push := func(artifactType string) digest.Digest {
		m := ocispec.Manifest{
			Versioned:    specs.Versioned{SchemaVersion: 2},
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: artifactType,
			Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ed, Size: 2},
			Layers:       []ocispec.Descriptor{{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ed, Size: 2}},
			Subject:      &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: sz},
			Annotations:  map[string]string{"org.example": artifactType},
		}
		b, _ := json.Marshal(m)
		d := digest.FromBytes(b)
		resp := h.do("PUT", "/v2/ref/app/manifests/"+d.String(), b, map[string]string{"Content-Type": ocispec.MediaTypeImageManifest})
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("push referrer: %d", resp.StatusCode)
		}
		if resp.Header.Get("OCI-Subject") != subject.String() {
			t.Fatalf("OCI-Subject = %q", resp.Header.Get("OCI-Subject"))
		}
		return d
	}
	sig := push("application/vnd.example.signature")
	sbom := push("application/spdx+json")

	list := func(q string) (ocispec.Index, http.Header) {
		resp := h.do("GET", "/v2/ref/app/referrers/"+subject.String()+q, nil, nil)
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
			t.Fatalf("referrers: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var idx ocispec.Index
		if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx, resp.Header
	}
	idx, hdr := list("")
	if len(idx.Manifests) != 2 || hdr.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers: %+v", idx)
	}
	idx, hdr = list("?artifactType=application/spdx%2Bjson")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sbom || idx.Manifests[0].ArtifactType != "application/spdx+json" ||
		idx.Manifests[0].Annotations["org.example"] != "application/spdx+json" || hdr.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %+v %v", idx, hdr)
	}
	// Other repositories do not see them; deleting one removes it.
	resp = h.do("GET", "/v2/other/referrers/"+subject.String(), nil, nil)
	var other ocispec.Index
	_ = json.NewDecoder(resp.Body).Decode(&other)
	resp.Body.Close()
	if len(other.Manifests) != 0 {
		t.Fatalf("referrers leaked to another repository: %+v", other)
	}
	resp = h.do("DELETE", "/v2/ref/app/manifests/"+sig.String(), nil, nil)
	resp.Body.Close()
	if idx, _ = list(""); len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sbom {
		t.Fatalf("after delete: %+v", idx)
	}
}
