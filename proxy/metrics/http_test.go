package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOperation(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		mount        bool
		want         string
	}{
		{"GET", "/v2/", false, "base"},
		{"GET", "/v2", false, "base"},
		{"GET", "/v2/_catalog", false, "catalog"},
		{"GET", "/v2/library/alpine/manifests/3.20", false, "pull_manifest"},
		{"HEAD", "/v2/a/b/c/manifests/sha256:abc", false, "check_manifest"},
		{"PUT", "/v2/team/app/manifests/v1", false, "push_manifest"},
		{"DELETE", "/v2/team/app/manifests/sha256:abc", false, "delete_manifest"},
		{"GET", "/v2/team/app/blobs/sha256:abc", false, "pull_blob"},
		{"HEAD", "/v2/team/app/blobs/sha256:abc", false, "check_blob"},
		{"DELETE", "/v2/team/app/blobs/sha256:abc", false, "delete_blob"},
		{"POST", "/v2/team/app/blobs/uploads/", false, "push_blob_start"},
		{"POST", "/v2/team/app/blobs/uploads/", true, "mount_blob"},
		{"PATCH", "/v2/team/app/blobs/uploads/7f3c", false, "push_blob_chunk"},
		{"PUT", "/v2/team/app/blobs/uploads/7f3c", false, "push_blob_finish"},
		{"GET", "/v2/team/app/blobs/uploads/7f3c", false, "upload_status"},
		{"DELETE", "/v2/team/app/blobs/uploads/7f3c", false, "cancel_upload"},
		{"GET", "/v2/team/app/tags/list", false, "list_tags"},
		{"GET", "/v2/team/app/referrers/sha256:abc", false, "list_referrers"},
		// A repository named like a route keyword.
		{"GET", "/v2/manifests/blobs/manifests/latest", false, "pull_manifest"},
		{"GET", "/v2/team/blobs/blobs/sha256:abc", false, "pull_blob"},
		{"GET", "/healthz", false, "other"},
		{"POST", "/v2/team/app/manifests/v1", false, "other"},
	} {
		require.Equal(t, tc.want, Operation(tc.method, tc.path, tc.mount), "%s %s", tc.method, tc.path)
	}
}

func TestMiddlewareCounts(t *testing.T) {
	r := New()
	h := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if req.Method == http.MethodPut {
			w.WriteHeader(http.StatusCreated)
			return
		}
		_, _ = w.Write([]byte("manifest-body"))
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/team/app/manifests/v1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "manifest-body", string(body), "the exchange is unchanged")
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v2/team/app/blobs/uploads/u1?digest=sha256:x", strings.NewReader("0123456789"))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	out := scrape(t, r.Handler())
	require.Contains(t, out, `tollgate_registry_requests_total{code="200",operation="pull_manifest"} 1`)
	require.Contains(t, out, `tollgate_registry_bytes_total{direction="out",operation="pull_manifest"} 13`)
	require.Contains(t, out, `tollgate_registry_requests_total{code="201",operation="push_blob_finish"} 1`)
	require.Contains(t, out, `tollgate_registry_bytes_total{direction="in",operation="push_blob_finish"} 10`)
}
