package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeRecords applies events to in-memory image records, as index.Records does.
type fakeRecords struct {
	mu   sync.Mutex
	imgs map[digest.Digest]*index.ImageRecord
	tags map[string]digest.Digest
}

func newFakeRecords() *fakeRecords {
	return &fakeRecords{imgs: map[digest.Digest]*index.ImageRecord{}, tags: map[string]digest.Digest{}}
}

func clone(r *index.ImageRecord) *index.ImageRecord {
	c := *r
	c.Repos = slices.Clone(r.Repos)
	c.Children = slices.Clone(r.Children)
	return &c
}

func (f *fakeRecords) Image(_ context.Context, d digest.Digest) (*index.ImageRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.imgs[d]
	if !ok {
		return nil, fmt.Errorf("img/%s: %w", d, index.ErrNotFound)
	}
	return clone(r), nil
}

func (f *fakeRecords) EachImage(ctx context.Context, fn func(*index.ImageRecord) error) error {
	f.mu.Lock()
	ds := make([]digest.Digest, 0, len(f.imgs))
	for d := range f.imgs {
		ds = append(ds, d)
	}
	f.mu.Unlock()
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	for _, d := range ds {
		r, err := f.Image(ctx, d)
		if err != nil {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRecords) Resolve(_ context.Context, repo, tag string) (digest.Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.tags[repo+":"+tag]
	if !ok {
		return "", fmt.Errorf("tag/%s/%s: %w", repo, tag, index.ErrNotFound)
	}
	return d, nil
}

func (f *fakeRecords) Record(_ context.Context, ev index.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.imgs[ev.Digest]
	if r == nil {
		if ev.Kind != index.EventPush && ev.Kind != index.EventPull {
			return fmt.Errorf("record %s: %w", ev.Digest, index.ErrNotFound)
		}
		r = &index.ImageRecord{Digest: ev.Digest, MediaType: ev.MediaType}
		f.imgs[ev.Digest] = r
	}
	ri := r.Repo(ev.Repository)
	if ri == nil {
		r.Repos = append(r.Repos, index.RepoImage{Repository: ev.Repository, Status: index.ImageActive, PushedAt: ev.At})
		ri = &r.Repos[len(r.Repos)-1]
	}
	at := ev.At
	switch ev.Kind {
	case index.EventPush:
		ri.PushedAt, ri.Deleted, ri.DeletedAt = at, false, nil
		if ev.Tag != "" {
			ri.Tags = append(ri.Tags, ev.Tag)
			f.tags[ev.Repository+":"+ev.Tag] = ev.Digest
		}
	case index.EventPull:
		ri.LastPulledAt = &at
		ri.PullCount++
	case index.EventDelete:
		ri.Deleted, ri.DeletedAt = true, &at
	case index.EventArchive:
		ri.Status, ri.ArchivedAt = index.ImageArchived, &at
	case index.EventRestore:
		ri.Status, ri.ArchivedAt = index.ImageActive, nil
	}
	return nil
}

// fakeScanner records scans and answers from per-image scripts.
type fakeScanner struct {
	mu     sync.Mutex
	calls  map[digest.Digest]int
	reqs   []ScanRequest
	script map[digest.Digest][]error // errors returned on successive calls; nil entry = success
	result map[digest.Digest]Result
	onScan func(ctx context.Context, req ScanRequest) error
}

func newFakeScanner() *fakeScanner {
	return &fakeScanner{calls: map[digest.Digest]int{}, script: map[digest.Digest][]error{}, result: map[digest.Digest]Result{}}
}

func (f *fakeScanner) Scan(ctx context.Context, req ScanRequest) (Result, error) {
	f.mu.Lock()
	n := f.calls[req.Image]
	f.calls[req.Image] = n + 1
	f.reqs = append(f.reqs, req)
	var err error
	if s := f.script[req.Image]; n < len(s) {
		err = s[n]
	}
	res, ok := f.result[req.Image]
	hook := f.onScan
	f.mu.Unlock()
	if hook != nil {
		if herr := hook(ctx, req); herr != nil {
			return Result{}, herr
		}
	}
	if err != nil {
		return Result{}, err
	}
	if !ok {
		res = Result{Reason: scan.ReasonSuccessful, Platform: scan.Platform{OS: "linux", Architecture: "amd64"}, Findings: 1}
	}
	return res, nil
}

func (f *fakeScanner) Calls(d digest.Digest) int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls[d] }
func (f *fakeScanner) Total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// fakeFindings tracks finding statuses per image.
type fakeFindings struct {
	mu     sync.Mutex
	status map[digest.Digest]scan.FindingStatus
}

func (f *fakeFindings) CloseAll(_ context.Context, d digest.Digest, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status[d] == scan.FindingActive {
		f.status[d] = scan.FindingClosed
		return 1, nil
	}
	return 0, nil
}

func (f *fakeFindings) DeleteClosed(_ context.Context, d digest.Digest) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status[d] == scan.FindingClosed {
		delete(f.status, d)
		return 1, nil
	}
	return 0, nil
}

func (f *fakeFindings) Get(d digest.Digest) scan.FindingStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status[d]
}

// scanningFindings makes every successful scan write an ACTIVE finding.
func (h *harness) scanningFindings() {
	h.scanner.onScan = func(_ context.Context, req ScanRequest) error {
		h.findings.mu.Lock()
		h.findings.status[req.Image] = scan.FindingActive
		h.findings.mu.Unlock()
		return nil
	}
}

// harness is a Service over a real Badger in t.TempDir() and the fakes.
type harness struct {
	t        *testing.T
	ctx      context.Context
	db       *index.DB
	clock    *fakeClock
	records  *fakeRecords
	scanner  *fakeScanner
	findings *fakeFindings
	svc      *Service
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, seed *index.ScanningConfiguration, mods ...func(*Options)) *harness {
	t.Helper()
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	h := &harness{t: t, ctx: context.Background(), db: db, clock: &fakeClock{t: t0}, records: newFakeRecords(),
		scanner: newFakeScanner(), findings: &fakeFindings{status: map[digest.Digest]scan.FindingStatus{}}}
	o := Options{DB: db, Logger: zerolog.Nop(), Clock: h.clock, Records: h.records, Recorder: h.records, Tags: h.records,
		Scanner: h.scanner, Findings: h.findings, Seed: seed, Workers: 2, RetryBase: time.Minute, RetryMax: time.Hour, RetryBudget: 3}
	for _, m := range mods {
		m(&o)
	}
	h.svc = New(o)
	h.scanningFindings()
	return h
}

func dg(s string) digest.Digest { return digest.FromString(s) }

// event records ev at the clock's now and observes it, as the proxy does.
func (h *harness) event(kind index.EventKind, repo string, d digest.Digest) {
	h.t.Helper()
	ev := index.Event{Kind: kind, Repository: repo, Digest: d, At: h.clock.Now()}
	require.NoError(h.t, h.records.Record(h.ctx, ev))
	require.NoError(h.t, h.svc.Observe(h.ctx, ev))
}

func (h *harness) push(repo string, d digest.Digest) { h.event(index.EventPush, repo, d) }
func (h *harness) pull(repo string, d digest.Digest) { h.event(index.EventPull, repo, d) }

func (h *harness) drain() {
	h.t.Helper()
	require.NoError(h.t, h.svc.Drain(h.ctx))
}

func (h *harness) sweep() SweepStats {
	h.t.Helper()
	st, err := h.svc.Sweep(h.ctx)
	require.NoError(h.t, err)
	return st
}

// cov returns the coverage of d (fails when absent).
func (h *harness) cov(d digest.Digest) *index.Coverage {
	h.t.Helper()
	c, err := h.svc.covs.Get(h.ctx, d)
	require.NoError(h.t, err)
	return c
}

// status returns "CODE/REASON" of d, "" when not covered.
func (h *harness) status(d digest.Digest) string {
	c, err := h.svc.covs.Get(h.ctx, d)
	if errors.Is(err, index.ErrNotFound) {
		return ""
	}
	require.NoError(h.t, err)
	return c.StatusCode + "/" + string(c.Reason)
}

func (h *harness) queued(d digest.Digest) bool {
	_, err := h.svc.queue.Get(h.ctx, d.String())
	return err == nil
}

func cfg(scanType string, rules ...index.ScanningRule) *index.ScanningConfiguration {
	c := DefaultConfiguration()
	c.ScanType, c.Rules = scanType, rules
	return &c
}

func rule(freq string, filters ...string) index.ScanningRule {
	r := index.ScanningRule{ScanFrequency: freq}
	for _, f := range filters {
		r.RepositoryFilters = append(r.RepositoryFilters, index.RepositoryFilter{Filter: f, FilterType: FilterWildcard})
	}
	return r
}

const day = 24 * time.Hour

type digestT = digest.Digest
