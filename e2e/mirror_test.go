//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// imageRecord is the part of GET /v1/images the suite reads.
type imageRecord struct {
	Digest string `json:"digest"`
	Index  bool   `json:"index"`
	Repos  []struct {
		Repository   string     `json:"repository"`
		Tags         []string   `json:"tags"`
		PushedAt     time.Time  `json:"pushedAt"`
		LastPulledAt *time.Time `json:"lastPulledAt"`
		PullCount    int64      `json:"pullCount"`
	} `json:"repos"`
}

// records lists every image record of the server (GET /v1/images).
func (s *server) records(t testing.TB) map[string]imageRecord {
	t.Helper()
	out := map[string]imageRecord{}
	next := ""
	for {
		status, body := s.adminDo(t, http.MethodGet, "/v1/images?maxResults=1000&nextToken="+next, nil)
		if status != http.StatusOK {
			t.Fatalf("GET /v1/images: %d %s", status, body)
		}
		var page struct {
			Images    []imageRecord `json:"images"`
			NextToken string        `json:"nextToken"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Images {
			out[r.Digest] = r
		}
		if page.NextToken == "" {
			return out
		}
		next = page.NextToken
	}
}

// checkRecords checks that every shared image has a push record with its
// tag and, when pulled, a pull record.
func checkRecords(t testing.TB, s *server, images []sharedImage, pulled bool) {
	t.Helper()
	recs := s.records(t)
	for _, si := range images {
		r, ok := recs[si.Digest.String()]
		if !ok {
			t.Errorf("no record of %s@%s", si.Repo, si.Digest)
			continue
		}
		found := false
		for _, ri := range r.Repos {
			if ri.Repository != si.Repo {
				continue
			}
			found = true
			if !strings.Contains(strings.Join(ri.Tags, ","), si.Tag) {
				t.Errorf("%s@%s: tags %v, want %s", si.Repo, si.Digest, ri.Tags, si.Tag)
			}
			if ri.PushedAt.IsZero() {
				t.Errorf("%s@%s: no pushedAt", si.Repo, si.Digest)
			}
			if pulled && (ri.PullCount < 1 || ri.LastPulledAt == nil) {
				t.Errorf("%s@%s: pullCount %d lastPulledAt %v after a pull", si.Repo, si.Digest, ri.PullCount, ri.LastPulledAt)
			}
		}
		if !found {
			t.Errorf("%s@%s: record has no repository %s: %+v", si.Repo, si.Digest, si.Repo, r.Repos)
		}
		if r.Index != si.Index {
			t.Errorf("%s@%s: index=%v, want %v", si.Repo, si.Digest, r.Index, si.Index)
		}
	}
}

// TestMirrorFirstPullScanned puts a second tollgate in mirror mode in front
// of a first one and pulls through it: the bytes come back identical, the
// mirror records the pull, and its first pull is scanned (coverage and
// findings on the mirror's own admin API).
func TestMirrorFirstPullScanned(t *testing.T) {
	shared := sharedDir(t)
	cfg := writeConfig(t, "")
	up := startServer(t, t.TempDir(), "--config", cfg)
	var images []sharedImage
	for _, si := range loadSharedImages(t, shared) {
		if si.Tag == "gin-1.6.3" || si.Tag == "alpine-3.18.9" {
			si.push(t, up.Registry)
			images = append(images, si)
		}
	}
	mirror := startServer(t, t.TempDir(), "--config", cfg, "--mirror", "--upstream", "http://"+up.Registry)
	if mirror.scanningWired(t) {
		mirror.importAdvisories(t, false, filepath.Join(shared, "vulndata", "go"))
	}
	for _, si := range images {
		verifyPull(t, mirror.Registry, si)
	}
	recs := mirror.records(t)
	for _, si := range images {
		r, ok := recs[si.Digest.String()]
		if !ok || len(r.Repos) == 0 || r.Repos[0].PullCount < 1 {
			t.Errorf("mirror: no pull record of %s@%s: %+v", si.Repo, si.Digest, r)
		}
	}

	skipUnlessScanning(t, mirror)
	var refs []string
	var goStatic scanned
	for _, m := range manifests(t, images) {
		refs = append(refs, m.ref())
		if m.Tag == "gin-1.6.3" {
			goStatic = m
		}
	}
	cov := mirror.waitCoverage(t, refs, scanWait, func(coveredImage) bool { return true })
	for _, r := range refs {
		if ci := cov[r]; ci.StatusCode != "ACTIVE" || ci.Reason != "SUCCESSFUL" || ci.LastScannedAt == 0 {
			t.Errorf("mirror coverage of %s: %s/%s lastScannedAt %v, want ACTIVE/SUCCESSFUL after the first pull", r, ci.StatusCode, ci.Reason, ci.LastScannedAt)
		}
	}
	got := map[string]bool{}
	for _, f := range mirror.findings(t, goStatic.ref()) {
		for _, id := range f.ids() {
			if strings.HasPrefix(id, "GO-") {
				got[id] = true
			}
		}
	}
	want := osvMatches(t, filepath.Join(shared, "images", "go-static.expected", "osv-matches.tsv"))
	sameSet(t, "mirror go-static Go advisory ids", keys(got), want)
}
