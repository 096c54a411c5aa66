package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseRoute: any request path parses without panicking; a recognised
// route has a valid repository name and rebuilds the path it came from.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/_catalog", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x",
		"/v2/a/blobs/sha256:00", "/v2/a/tags/list", "/v2/a/referrers/sha256:00", "/v2/blobs/blobs/uploads/uploads", "/v2//manifests/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt := parseRoute(path)
		switch rt.kind {
		case routeUnknown, routeBase, routeCatalog:
			return
		}
		if !nameRe.MatchString(rt.repo) {
			t.Fatalf("%q: invalid repo %q accepted", path, rt.repo)
		}
		var rebuilt string
		switch rt.kind {
		case routeTags:
			rebuilt = "/v2/" + rt.repo + "/tags/list"
		case routeManifest:
			rebuilt = "/v2/" + rt.repo + "/manifests/" + rt.ref
		case routeBlob:
			rebuilt = "/v2/" + rt.repo + "/blobs/" + rt.ref
		case routeReferrers:
			rebuilt = "/v2/" + rt.repo + "/referrers/" + rt.ref
		case routeUpload:
			rebuilt = "/v2/" + rt.repo + "/blobs/uploads/" + rt.ref
		case routeUploads:
			rebuilt = strings.TrimSuffix("/v2/"+rt.repo+"/blobs/uploads/", "/")
			path = strings.TrimSuffix(path, "/")
		}
		if rebuilt != path {
			t.Fatalf("%q parsed as %+v, which rebuilds %q", path, rt, rebuilt)
		}
	})
}

// FuzzCheckManifest: any pushed body is judged without panicking, and an
// accepted one is a JSON object with a schemaVersion.
func FuzzCheckManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`), "application/vnd.oci.image.manifest.v1+json", "latest")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:0"}]}`), "", "sha256:abc")
	f.Add([]byte(`[]`), "text/plain", "v1")
	f.Fuzz(func(t *testing.T, body []byte, contentType, ref string) {
		m, oerr := checkManifest(body, contentType, route{kind: routeManifest, repo: "r", ref: ref})
		if oerr != nil {
			if oerr.Status != 400 || (oerr.Code != CodeManifestInvalid && oerr.Code != CodeDigestInvalid) {
				t.Fatalf("unexpected error %+v", oerr)
			}
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil || m.SchemaVersion == nil {
			t.Fatalf("accepted a non-manifest %q", body)
		}
	})
}
