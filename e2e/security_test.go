//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestAdminSecurity: the admin API answers nothing without valid
// credentials, and the registry port exposes no admin operation.
func TestAdminSecurity(t *testing.T) {
	s := startServer(t, t.TempDir(), "--config", writeConfig(t, ""))
	do := func(host, method, path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+host+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := []struct{ method, path string }{
		{"POST", "/findings/list"},
		{"POST", "/coverage/list"},
		{"POST", "/v1/db/import"},
		{"GET", "/v1/images"},
		{"GET", "/v1/sbom?image=a:b"},
		{"GET", "/metrics"},
	}
	for _, op := range admin {
		for _, auth := range []string{"", "Bearer wrong-token", "Bearer " + s.Token + "x",
			"AWS4-HMAC-SHA256 Credential=AKIDFORGED/20260101/us-east-1/inspector2/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"} {
			if got := do(s.Admin, op.method, op.path, auth); got != http.StatusUnauthorized {
				t.Errorf("admin %s %s with %q: %d, want 401", op.method, op.path, auth, got)
			}
		}
		if got := do(s.Admin, op.method, op.path, "Bearer "+s.Token); got == http.StatusUnauthorized {
			t.Errorf("admin %s %s with the token: %d", op.method, op.path, got)
		}
		// The registry port serves /v2/ only.
		if got := do(s.Registry, op.method, op.path, "Bearer "+s.Token); got != http.StatusNotFound && got != http.StatusMethodNotAllowed {
			t.Errorf("registry port %s %s: %d, want 404/405 (no admin operation there)", op.method, op.path, got)
		}
	}
	if got := do(s.Registry, "POST", "/", "Bearer "+s.Token); got != http.StatusNotFound && got != http.StatusMethodNotAllowed {
		t.Errorf("registry port POST / (ECR API): %d, want 404/405", got)
	}
	for _, open := range []string{"/healthz", "/readyz"} {
		if got := do(s.Admin, "GET", open, ""); got != http.StatusOK {
			t.Errorf("admin GET %s: %d, want 200 without credentials", open, got)
		}
	}
}
