package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-registry/tollgate/config"
)

// clearAdminEnv unsets every admin credential the CLI could pick up from
// the test's environment.
func clearAdminEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"TOLLGATE_ADMIN_TOKEN", "TOLLGATE_ADMIN_URL", "TOLLGATE_ADMIN_ACCESS_KEY_ID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
}

func (e *scanEnv) logText() string {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	return e.logs.b.String()
}

func writeOSV(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "TEST-2026-0101.json")
	if err := os.WriteFile(p, []byte(osvAdvisory("2026-01-02T03:04:05Z", "musl bug")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A running server holds the index's lock: `tollgate db status` asks its
// admin API, explicitly with --admin-url or when the local open is locked.
func TestDBStatusThroughAdminAPI(t *testing.T) {
	clearAdminEnv(t)
	e := startScanEnv(t, nil)

	// Empty: the server warned once at startup, and status says so.
	if n := strings.Count(e.logText(), "no advisory data"); n != 1 || !strings.Contains(e.logText(), `"level":"warn"`) {
		t.Fatalf("startup warnings about the empty advisory db: %d in %s", n, e.logText())
	}
	out, _, err := runCLI(t, "--data-dir", t.TempDir(), "db", "status", "--admin-url", e.adm.URL, "--token", "t0ken")
	if err != nil || !strings.Contains(out, "no advisories") || !strings.Contains(out, "--admin-url") {
		t.Fatalf("empty status: %q %v", out, err)
	}
	// coverage list points at the empty database.
	_, stderr, err := runCLI(t, "--data-dir", t.TempDir(), "coverage", "list", "--admin-url", e.adm.URL, "--token", "t0ken")
	if err != nil || !strings.Contains(stderr, "no advisory data") {
		t.Fatalf("coverage list on an empty db: stderr %q %v", stderr, err)
	}

	e.dbImport(t, writeOSV(t))

	// Explicit --admin-url, JSON: the shape of the local `db status --format json`.
	out, _, err = runCLI(t, "--data-dir", t.TempDir(), "db", "status", "--format", "json", "--admin-url", e.adm.URL, "--token", "t0ken")
	if err != nil {
		t.Fatal(err)
	}
	var srcs []struct {
		Source         string
		Count          int
		NewestModified string
		Origin         string
	}
	if err := json.Unmarshal([]byte(out), &srcs); err != nil || len(srcs) != 1 || srcs[0].Count != 1 ||
		srcs[0].NewestModified != "2026-01-02T03:04:05Z" || srcs[0].Origin == "" {
		t.Fatalf("status json %q: %v", out, err)
	}
	_, stderr, err = runCLI(t, "--data-dir", t.TempDir(), "coverage", "list", "--admin-url", e.adm.URL, "--token", "t0ken")
	if err != nil || strings.Contains(stderr, "no advisory data") {
		t.Fatalf("coverage list with advisories: stderr %q %v", stderr, err)
	}

	// The server's data dir is locked: the CLI falls back to the admin API
	// (TOLLGATE_ADMIN_URL, TOLLGATE_ADMIN_TOKEN).
	t.Setenv("TOLLGATE_ADMIN_URL", e.adm.URL)
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "t0ken")
	out, stderr, err = runCLI(t, "--data-dir", e.s.cfg.DataDir, "--log-level", "error", "db", "status")
	if err != nil || !strings.Contains(out, srcs[0].Source) || !strings.Contains(out, "NEWEST MODIFIED") || !strings.Contains(stderr, e.adm.URL) {
		t.Fatalf("locked fallback: out %q stderr %q err %v", out, stderr, err)
	}

	// The endpoint is behind the admin credentials.
	resp, err := http.Get(e.adm.URL + "/v1/db/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated GET /v1/db/status: %d", resp.StatusCode)
	}
}

// Locked and the running server's admin API refuses: both causes are told.
func TestDBStatusLockedFallbackFails(t *testing.T) {
	clearAdminEnv(t)
	e := startScanEnv(t, nil)
	t.Setenv("TOLLGATE_ADMIN_URL", e.adm.URL)
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "wrong")
	_, _, err := runCLI(t, "--data-dir", e.s.cfg.DataDir, "--log-level", "error", "db", "status")
	if err == nil || !strings.Contains(err.Error(), "directory lock") || !strings.Contains(err.Error(), "TOLLGATE_ADMIN_TOKEN") {
		t.Fatalf("want the lock and the refused token, got %v", err)
	}
}

// A server configured with SigV4 access keys only: the CLI signs its
// requests with the keys from the environment.
func TestCLIAccessKeysOnly(t *testing.T) {
	clearAdminEnv(t)
	const keyID, secret = "AKIDTOLLGATETEST", "s3cr3t-key"
	e := startScanEnv(t, func(c *config.Config) {
		c.Admin.Token = ""
		c.Admin.AccessKeys = []config.AccessKey{{AccessKeyID: keyID, SecretAccessKey: secret}}
	})
	cliDir := t.TempDir() // no token file there
	run := func(args ...string) (string, string, error) {
		return runCLI(t, append([]string{"--data-dir", cliDir, "--log-level", "error"}, args...)...)
	}

	// No credentials at all: the error says how to provide them.
	_, _, err := run("coverage", "list", "--admin-url", e.adm.URL)
	if err == nil || !strings.Contains(err.Error(), "TOLLGATE_ADMIN_ACCESS_KEY_ID") || !strings.Contains(err.Error(), "TOLLGATE_ADMIN_TOKEN") {
		t.Fatalf("no credentials: %v", err)
	}

	// Tollgate's own key variables: GET, POST with a body, ECR.
	t.Setenv("TOLLGATE_ADMIN_ACCESS_KEY_ID", keyID)
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", secret)
	if _, _, err := run("coverage", "list", "--admin-url", e.adm.URL); err != nil {
		t.Fatalf("coverage list signed with TOLLGATE_ADMIN_* keys: %v", err)
	}
	if out, _, err := run("db", "import", "--admin-url", e.adm.URL, writeOSV(t)); err != nil || !strings.Contains(out, "SOURCE") {
		t.Fatalf("db import signed: %q %v", out, err)
	}
	if out, _, err := run("db", "status", "--admin-url", e.adm.URL); err != nil || !strings.Contains(out, "NEWEST MODIFIED") {
		t.Fatalf("db status signed: %q %v", out, err)
	}

	// A wrong secret: 401, and the error names the key and its source.
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "wrong")
	_, _, err = run("coverage", "list", "--admin-url", e.adm.URL)
	if err == nil || !strings.Contains(err.Error(), "SigV4") || !strings.Contains(err.Error(), keyID) ||
		!strings.Contains(err.Error(), "TOLLGATE_ADMIN_ACCESS_KEY_ID") || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("wrong secret: %v", err)
	}

	// The AWS_* variables are the fallback.
	t.Setenv("TOLLGATE_ADMIN_ACCESS_KEY_ID", "")
	t.Setenv("TOLLGATE_ADMIN_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_ACCESS_KEY_ID", keyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	if _, _, err := run("coverage", "list", "--admin-url", e.adm.URL); err != nil {
		t.Fatalf("coverage list signed with AWS_* keys: %v", err)
	}

	// A bearer token wins over the keys, and its refusal says where it came from.
	_, _, err = run("coverage", "list", "--admin-url", e.adm.URL, "--token", "nope")
	if err == nil || !strings.Contains(err.Error(), "--token") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("refused --token: %v", err)
	}
}
