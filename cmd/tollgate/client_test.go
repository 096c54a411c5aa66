package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan"
)

// cliImages is a two-image registry for the CLI tests.
type cliImages struct {
	mu   sync.Mutex
	recs map[digest.Digest]*index.ImageRecord
}

func (c *cliImages) Image(ctx context.Context, d digest.Digest) (*index.ImageRecord, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[d]
	if !ok {
		return nil, index.ErrNotFound
	}
	cp := *r
	cp.Repos = append([]index.RepoImage(nil), r.Repos...)
	return &cp, nil
}

func (c *cliImages) EachImage(ctx context.Context, fn func(*index.ImageRecord) error) error {
	for _, d := range []digest.Digest{digest.FromString("a"), digest.FromString("b")} {
		r, err := c.Image(ctx, d)
		if err != nil {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *cliImages) Archive(ctx context.Context, repo string, d digest.Digest) error {
	return c.set(repo, d, index.ImageArchived)
}

func (c *cliImages) Restore(ctx context.Context, repo string, d digest.Digest) error {
	return c.set(repo, d, index.ImageActive)
}

func (c *cliImages) set(repo string, d digest.Digest, st string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[d]
	if !ok || r.Repo(repo) == nil {
		return index.ErrNotFound
	}
	r.Repo(repo).Status = st
	return nil
}

type cliScans struct{ got []string }

func (s *cliScans) RequestScan(ctx context.Context, repo string, d digest.Digest) error {
	s.got = append(s.got, repo+"@"+d.String())
	return nil
}

// runCLI runs the tollgate command line with args and returns stdout.
func runClient(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runClientStderr(t, args...)
	return out, err
}

// runClientStderr is runClient that also returns what went to stderr.
func runClientStderr(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// openTestDB opens a Badger index in a temp dir, closed at cleanup.
func openTestDB(t *testing.T) *index.DB {
	t.Helper()
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestClientCommands(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	a, b := digest.FromString("a"), digest.FromString("b")
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	imgs := &cliImages{recs: map[digest.Digest]*index.ImageRecord{
		a: {Digest: a, Repos: []index.RepoImage{{Repository: "web", Tags: []string{"v1"}, PushedAt: now, Status: index.ImageActive}}},
		b: {Digest: b, Repos: []index.RepoImage{{Repository: "web", Tags: []string{"v2"}, PushedAt: now, Status: index.ImageActive}}},
	}}
	fs := index.NewFindingStore(db)
	mk := func(vuln string, sev scan.Severity, pkg string) scan.Finding {
		return scan.Finding{ID: vuln + pkg, VulnerabilityID: vuln, AdvisoryID: vuln, Title: vuln, Severity: sev, FixAvailable: "YES",
			FixedVersions: []string{"2.0"}, Package: scan.Package{Name: pkg, Version: "1.0", Ecosystem: "npm", Kind: scan.KindLang, Path: "app/package-lock.json"}}
	}
	if _, err := fs.Replace(ctx, a, []scan.Finding{mk("CVE-1", scan.SeverityCritical, "lodash"), mk("CVE-2", scan.SeverityLow, "minimist")}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Replace(ctx, b, []scan.Finding{mk("CVE-3", scan.SeverityHigh, "express")}, now); err != nil {
		t.Fatal(err)
	}
	scans := &cliScans{}
	api := admin.NewAPI(admin.APIOptions{Findings: fs, Images: imgs, Filters: index.NewFilters(db), Scanner: scans, Archiver: imgs, Logger: zerolog.Nop()})
	auth, err := admin.NewAuth(admin.AuthOptions{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(auth.Wrap(api))
	defer srv.Close()
	flags := []string{"--admin-url", srv.URL, "--token", "tok"}

	out, err := runClient(t, append([]string{"findings", "list", "-o", "json"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Findings []struct {
			FindingArn string `json:"findingArn"`
			Severity   string `json:"severity"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Findings) != 3 || list.Findings[0].Severity != "CRITICAL" {
		t.Fatalf("findings list -o json: %v\n%s", err, out)
	}
	out, err = runClient(t, append([]string{"findings", "list", "--severity", "high,critical", "--image", "web:v2"}, flags...)...)
	if err != nil || !strings.Contains(out, "CVE-3") || strings.Contains(out, "CVE-1") || !strings.HasPrefix(out, "SEVERITY") {
		t.Fatalf("findings list table: %v\n%s", err, out)
	}
	id := list.Findings[0].FindingArn[strings.LastIndexByte(list.Findings[0].FindingArn, '/')+1:]
	out, err = runClient(t, append([]string{"findings", "get", id}, flags...)...)
	if err != nil || !strings.Contains(out, "CVE-1") || !strings.Contains(out, "Upgrade lodash to 2.0") {
		t.Fatalf("findings get: %v\n%s", err, out)
	}
	if _, err := runClient(t, append([]string{"scan-image", "web@" + b.String()}, flags...)...); err != nil || len(scans.got) != 1 || scans.got[0] != "web@"+b.String() {
		t.Fatalf("scan-image: %v %v", err, scans.got)
	}
	out, err = runClient(t, append([]string{"archive", "web:v1"}, flags...)...)
	if err != nil || !strings.Contains(out, "ARCHIVED") || imgs.recs[a].Repos[0].Status != index.ImageArchived {
		t.Fatalf("archive: %v\n%s", err, out)
	}
	if _, err := runClient(t, append([]string{"restore", "web@" + a.String()}, flags...)...); err != nil || imgs.recs[a].Repos[0].Status != index.ImageActive {
		t.Fatalf("restore: %v", err)
	}
	// Errors name the exception; a wrong token is refused.
	if _, err := runClient(t, append([]string{"archive", "nope:v1"}, flags...)...); err == nil || !strings.Contains(err.Error(), "RepositoryNotFoundException") {
		t.Fatalf("archive unknown: %v", err)
	}
	if _, err := runClient(t, "findings", "list", "--admin-url", srv.URL, "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	// Without --token the CLI reads <data-dir>/admin-token.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, admin.TokenFileName), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "")
	if _, err := runClient(t, "findings", "list", "--admin-url", srv.URL, "--data-dir", dir); err != nil {
		t.Fatalf("token file: %v", err)
	}
}
