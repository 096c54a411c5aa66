package admin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// fakeStore implements every source the API needs, in memory, safe for
// concurrent use. Filters use the real Badger-backed index.Filters.
type fakeStore struct {
	mu       sync.Mutex
	findings []scan.Finding
	images   map[digest.Digest]*index.ImageRecord
	coverage map[digest.Digest]*index.Coverage
	config   ScanningConfiguration
	scans    []string
	uses     map[digest.Digest][]index.ClusterUse
}

func newFakeStore() *fakeStore {
	return &fakeStore{images: map[digest.Digest]*index.ImageRecord{}, coverage: map[digest.Digest]*index.Coverage{},
		uses: map[digest.Digest][]index.ClusterUse{},
		config: ScanningConfiguration{ScanType: "ENHANCED", RescanDuration: "DAYS_14", PullDateRescanDuration: "DAYS_14",
			PullDateRescanMode: "LAST_PULL_DATE",
			Rules:              []ScanningRule{{ScanFrequency: "CONTINUOUS_SCAN", RepositoryFilters: []string{"*"}}}}}
}

func (s *fakeStore) Each(ctx context.Context, fn func(scan.Finding) error) error {
	s.mu.Lock()
	snap := append([]scan.Finding(nil), s.findings...)
	s.mu.Unlock()
	for _, f := range snap {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeStore) addFinding(f scan.Finding) {
	s.mu.Lock()
	s.findings = append(s.findings, f)
	s.mu.Unlock()
}

func cloneRec(r *index.ImageRecord) *index.ImageRecord {
	c := *r
	c.Repos = append([]index.RepoImage(nil), r.Repos...)
	return &c
}

func (s *fakeStore) Image(ctx context.Context, d digest.Digest) (*index.ImageRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.images[d]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", d, index.ErrNotFound)
	}
	return cloneRec(r), nil
}

func (s *fakeStore) EachImage(ctx context.Context, fn func(*index.ImageRecord) error) error {
	s.mu.Lock()
	var recs []*index.ImageRecord
	for _, r := range s.images {
		recs = append(recs, cloneRec(r))
	}
	s.mu.Unlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].Digest < recs[j].Digest })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeStore) Coverage(ctx context.Context, d digest.Digest) (*index.Coverage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.coverage[d]
	if !ok {
		return nil, fmt.Errorf("coverage %s: %w", d, index.ErrNotFound)
	}
	cc := *c
	return &cc, nil
}

func (s *fakeStore) ScanningConfiguration(ctx context.Context) (ScanningConfiguration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.config, nil
}

func (s *fakeStore) SetScanningConfiguration(ctx context.Context, c ScanningConfiguration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.config = c
	return nil
}

func (s *fakeStore) RequestScan(ctx context.Context, repo string, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scans = append(s.scans, repo+"@"+d.String())
	return nil
}

func (s *fakeStore) setStatus(repo string, d digest.Digest, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.images[d]
	if !ok || r.Repo(repo) == nil {
		return index.ErrNotFound
	}
	r.Repo(repo).Status = status
	return nil
}

func (s *fakeStore) Archive(ctx context.Context, repo string, d digest.Digest) error {
	return s.setStatus(repo, d, index.ImageArchived)
}

func (s *fakeStore) Restore(ctx context.Context, repo string, d digest.Digest) error {
	return s.setStatus(repo, d, index.ImageActive)
}

func (s *fakeStore) DeleteImage(ctx context.Context, repo string, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.images[d]
	if !ok || r.Repo(repo) == nil {
		return index.ErrNotFound
	}
	r.Repo(repo).Deleted = true
	return nil
}

func (s *fakeStore) Untag(ctx context.Context, repo, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.images {
		if ri := r.Repo(repo); ri != nil {
			for i, t := range ri.Tags {
				if t == tag {
					ri.Tags = append(ri.Tags[:i:i], ri.Tags[i+1:]...)
					return nil
				}
			}
		}
	}
	return index.ErrNotFound
}

func (s *fakeStore) ClustersForImage(ctx context.Context, d digest.Digest) ([]index.ClusterUse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]index.ClusterUse(nil), s.uses[d]...), nil
}

func (s *fakeStore) InUse(ctx context.Context, d digest.Digest) (index.InUseStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st index.InUseStats
	for _, u := range s.uses[d] {
		st.Count += u.Running
		if st.LastInUseAt == nil || u.LastSeen.After(*st.LastInUseAt) {
			t := u.LastSeen
			st.LastInUseAt = &t
		}
	}
	return st, nil
}

func (s *fakeStore) WriteSBOM(ctx context.Context, repo string, d digest.Digest, format string, w io.Writer) error {
	_, err := fmt.Fprintf(w, `{"format":%q,"image":%q}`, format, repo+"@"+d.String())
	return err
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func dgst(n int) digest.Digest { return digest.FromString(fmt.Sprintf("image-%d", n)) }

// seed builds a small world: images 1 and 2 in "app" (image 1 also in
// "mirror/app"), image 3 in "base"; findings on each.
func seed(s *fakeStore) {
	add := func(n int, arch string, repos ...index.RepoImage) {
		d := dgst(n)
		s.images[d] = &index.ImageRecord{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1000 + int64(n), Repos: repos}
		last := t0.Add(time.Hour)
		s.coverage[d] = &index.Coverage{Image: d, Platform: scan.Platform{OS: "linux", Architecture: arch}, ScanType: "PACKAGE",
			ScanFrequency: "CONTINUOUS_SCAN", StatusCode: index.StatusActive, Reason: scan.ReasonSuccessful, LastScannedAt: &last, UpdatedAt: last}
	}
	pulled := t0.Add(2 * time.Hour)
	add(1, "amd64",
		index.RepoImage{Repository: "app", Tags: []string{"v1", "latest"}, PushedAt: t0, LastPulledAt: &pulled, Status: index.ImageActive},
		index.RepoImage{Repository: "mirror/app", Tags: []string{"v1"}, PushedAt: t0.Add(time.Minute), Status: index.ImageActive})
	add(2, "arm64", index.RepoImage{Repository: "app", Tags: nil, PushedAt: t0.Add(24 * time.Hour), Status: index.ImageActive})
	add(3, "amd64", index.RepoImage{Repository: "base", Tags: []string{"12"}, PushedAt: t0.Add(48 * time.Hour), Status: index.ImageActive})
	layer := digest.FromString("layer")
	mk := func(n int, id, vuln string, sev scan.Severity, score float64, pkg, ver string, fix string) scan.Finding {
		f := scan.Finding{ID: id, Image: dgst(n), VulnerabilityID: vuln, AdvisoryID: vuln, Title: vuln + " in " + pkg,
			Severity: sev, FixAvailable: fix, Status: scan.FindingActive,
			Package:         scan.Package{Name: pkg, Version: ver, Ecosystem: "Debian:12", Kind: scan.KindOS, Path: "var/lib/dpkg/status", Layer: layer, Arch: "amd64"},
			FirstObservedAt: t0.Add(time.Duration(n) * time.Hour), LastObservedAt: t0.Add(72 * time.Hour), UpdatedAt: t0.Add(72 * time.Hour)}
		if score > 0 {
			f.CVSS = []scan.CVSS{{Version: "3.1", Vector: "CVSS:3.1/AV:N", BaseScore: score, Source: "NVD"}}
		}
		if fix == "YES" {
			f.FixedVersions = []string{ver + "+fix"}
		}
		return f
	}
	s.findings = []scan.Finding{
		mk(1, "f1", "CVE-2024-0001", scan.SeverityCritical, 9.8, "openssl", "3.0.11-1~deb12u2", "YES"),
		mk(1, "f2", "CVE-2024-0002", scan.SeverityHigh, 7.5, "zlib", "1:1.2.13.dfsg-1", "NO"),
		mk(1, "f3", "CVE-2024-0003", scan.SeverityLow, 3.1, "bash", "5.2.15-2", "NO"),
		mk(2, "f4", "CVE-2024-0001", scan.SeverityCritical, 9.8, "openssl", "3.0.11-1~deb12u2", "YES"),
		mk(2, "f5", "GHSA-aaaa-bbbb-cccc", scan.SeverityMedium, 0, "lodash", "4.17.20", "YES"),
		mk(3, "f6", "CVE-2024-0006", scan.SeverityHigh, 8.1, "curl", "7.88.1-10", "PARTIAL"),
	}
	s.uses[dgst(1)] = []index.ClusterUse{{Cluster: "arn:aws:eks:us-east-1:000000000000:cluster/prod", Running: 3,
		LastSeen: t0.Add(70 * time.Hour), Workloads: []index.WorkloadUse{{Namespace: "web", Workload: "frontend", LastSeen: t0.Add(70 * time.Hour)}}}}
}

func testAPI(t *testing.T, s *fakeStore) *API {
	t.Helper()
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dir := t.TempDir()
	return NewAPI(APIOptions{Findings: s, Images: s, Coverage: s, Config: s, Filters: index.NewFilters(db), Scanner: s,
		Archiver: s, Deleter: s, InUse: s, SBOM: s, SBOMDir: dir + "/sbom", ReportDir: dir + "/reports",
		Logger: zerolog.Nop(), Now: func() time.Time { return t0.Add(100 * time.Hour) }})
}
