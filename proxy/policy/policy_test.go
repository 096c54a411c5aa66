package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// world is a fake findings + coverage store with a scanner that "finds"
// what toFind says for an image, optionally waiting for release first.
type world struct {
	mu       sync.Mutex
	counts   map[digest.Digest]map[scan.Severity]int
	covs     map[digest.Digest]*index.Coverage
	toFind   map[digest.Digest]map[scan.Severity]int
	scanErr  error
	release  chan struct{} // nil: scans finish at once
	scans    map[digest.Digest]int
	countErr error
}

func newWorld() *world {
	return &world{counts: map[digest.Digest]map[scan.Severity]int{}, covs: map[digest.Digest]*index.Coverage{},
		toFind: map[digest.Digest]map[scan.Severity]int{}, scans: map[digest.Digest]int{}}
}

func (w *world) scanned(d digest.Digest, c map[scan.Severity]int) {
	now := time.Now()
	w.counts[d] = c
	w.covs[d] = &index.Coverage{Image: d, Reason: scan.ReasonSuccessful, LastScannedAt: &now}
}

func (w *world) Counts(_ context.Context, d digest.Digest) (map[scan.Severity]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.countErr != nil {
		return nil, w.countErr
	}
	return w.counts[d], nil
}

func (w *world) Get(_ context.Context, d digest.Digest) (*index.Coverage, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.covs[d]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("cov/%s: %w", d, index.ErrNotFound)
}

func (w *world) ScanNow(ctx context.Context, _ string, d digest.Digest) error {
	w.mu.Lock()
	w.scans[d]++
	rel := w.release
	w.mu.Unlock()
	if rel != nil {
		select {
		case <-rel:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.scanErr != nil {
		return w.scanErr
	}
	w.scanned(d, w.toFind[d])
	return nil
}

func (w *world) scanCount(d digest.Digest) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scans[d]
}

type countingMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countingMetrics) PolicyDecision(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[s]++
}

func newPolicy(w *world, rules ...Rule) *Policy {
	return New(Options{Rules: rules, Findings: w, Coverages: w, Scanner: w})
}

func admit(p *Policy, repo string, d digest.Digest) error {
	return p.Admit(context.Background(), repo, proxy.ManifestInfo{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json"})
}

func denied(t *testing.T, err error) string {
	t.Helper()
	var de *proxy.DeniedError
	require.ErrorAs(t, err, &de)
	return de.Message
}

var (
	imgBad   = digest.FromString("bad")
	imgClean = digest.FromString("clean")
	imgNew   = digest.FromString("new")
)

func TestScannedImages(t *testing.T) {
	w := newWorld()
	w.scanned(imgBad, map[scan.Severity]int{scan.SeverityCritical: 1, scan.SeverityHigh: 2, scan.SeverityLow: 7})
	w.scanned(imgClean, map[scan.Severity]int{scan.SeverityLow: 1})
	for _, tc := range []struct {
		name  string
		rules []Rule
		repo  string
		image digest.Digest
		deny  []string // substrings of the refusal; nil: allowed
	}{
		{"no rule", nil, "team/app", imgBad, nil},
		{"filter does not match", []Rule{{RepositoryFilter: "prod/*", Severity: scan.SeverityLow}}, "team/app", imgBad, nil},
		{"high threshold", []Rule{{RepositoryFilter: "team/*", Severity: scan.SeverityHigh}}, "team/app", imgBad,
			[]string{"3 ACTIVE findings at or above HIGH", "(1 CRITICAL, 2 HIGH)", `"team/*"`,
				"tollgate findings list --image team/app@" + imgBad.String()}},
		{"critical threshold", []Rule{{Severity: scan.SeverityCritical}}, "x", imgBad, []string{"1 ACTIVE finding at or above CRITICAL", "(1 CRITICAL)"}},
		{"clean image", []Rule{{Severity: scan.SeverityMedium}}, "team/app", imgClean, nil},
		{"strictest matching rule wins", []Rule{{Severity: scan.SeverityCritical}, {RepositoryFilter: "team/*", Severity: scan.SeverityLow}},
			"team/app", imgClean, []string{"1 ACTIVE finding at or above LOW"}},
		{"strict rule elsewhere", []Rule{{Severity: scan.SeverityCritical}, {RepositoryFilter: "team/*", Severity: scan.SeverityLow}},
			"other/app", imgClean, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := admit(newPolicy(w, tc.rules...), tc.repo, tc.image)
			if tc.deny == nil {
				require.NoError(t, err)
				return
			}
			msg := denied(t, err)
			for _, s := range tc.deny {
				require.Contains(t, msg, s)
			}
		})
	}
	require.Zero(t, w.scanCount(imgBad), "scanned images are not rescanned")
}

func TestFirstPullIsScannedBeforeServed(t *testing.T) {
	w := newWorld()
	w.toFind[imgNew] = map[scan.Severity]int{scan.SeverityHigh: 1}
	m := &countingMetrics{n: map[string]int{}}
	p := New(Options{Rules: []Rule{{Severity: scan.SeverityHigh}}, Findings: w, Coverages: w, Scanner: w, Metrics: m})
	require.Contains(t, denied(t, admit(p, "team/app", imgNew)), "1 ACTIVE finding at or above HIGH")
	require.Equal(t, 1, w.scanCount(imgNew))
	require.Contains(t, denied(t, admit(p, "team/app", imgNew)), "1 ACTIVE finding")
	require.Equal(t, 1, w.scanCount(imgNew), "a scanned image is not scanned again")
	require.Equal(t, map[string]int{"denied": 2}, m.n)
}

func TestScanTimeout(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("failOpen=", failOpen), func(t *testing.T) {
			w := newWorld()
			w.release = make(chan struct{})
			w.toFind[imgNew] = map[scan.Severity]int{scan.SeverityCritical: 1}
			p := newPolicy(w, Rule{Severity: scan.SeverityHigh, ScanTimeout: time.Millisecond, FailOpen: failOpen})

			// Concurrent pulls while the scan cannot finish: one scan, every
			// pull answered according to FailOpen.
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() { errs[i] = admit(p, "team/app", imgNew) })
			}
			wg.Wait()
			for _, err := range errs {
				if failOpen {
					require.NoError(t, err)
				} else {
					require.Contains(t, denied(t, err), "has not finished its vulnerability scan")
				}
			}
			require.Equal(t, 1, w.scanCount(imgNew))

			// The scan carries on after the pulls gave up; once done, the
			// findings decide.
			close(w.release)
			require.Eventually(t, func() bool {
				_, err := w.Get(context.Background(), imgNew)
				return err == nil
			}, 10*time.Second, time.Millisecond)
			require.Contains(t, denied(t, admit(p, "team/app", imgNew)), "1 CRITICAL")
			require.Equal(t, 1, w.scanCount(imgNew))
		})
	}
}

func TestScanFailureAndUnsupported(t *testing.T) {
	w := newWorld()
	w.scanErr = errors.New("registry unreachable")
	require.Contains(t, denied(t, admit(newPolicy(w, Rule{Severity: scan.SeverityLow}), "a", imgNew)), "has not finished")
	require.NoError(t, admit(newPolicy(w, Rule{Severity: scan.SeverityLow, FailOpen: true}), "a", imgNew))

	w.covs[imgNew] = &index.Coverage{Image: imgNew, Reason: scan.ReasonUnsupportedOS}
	require.NoError(t, admit(newPolicy(w, Rule{Severity: scan.SeverityLow}), "a", imgNew), "nothing to find in an unsupported image")

	noScanner := New(Options{Rules: []Rule{{Severity: scan.SeverityLow}}, Findings: w, Coverages: w})
	require.Contains(t, denied(t, admit(noScanner, "a", digest.FromString("never"))), "has not finished")
}

func TestLookupErrors(t *testing.T) {
	w := newWorld()
	w.scanned(imgBad, nil)
	w.countErr = errors.New("badger closed")
	err := admit(newPolicy(w, Rule{Severity: scan.SeverityLow, FailOpen: true}), "a", imgBad)
	require.ErrorIs(t, err, w.countErr)
	var de *proxy.DeniedError
	require.False(t, errors.As(err, &de), "fail-open: the proxy serves on plain errors")
	require.Contains(t, denied(t, admit(newPolicy(w, Rule{Severity: scan.SeverityLow}), "a", imgBad)), "could not be evaluated")
}

func TestIndexEvaluatesChildren(t *testing.T) {
	w := newWorld()
	amd, arm, att := digest.FromString("amd64"), digest.FromString("arm64"), digest.FromString("att")
	w.scanned(amd, nil)
	w.toFind[arm] = map[scan.Severity]int{scan.SeverityHigh: 2}
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1,"platform":{"os":"linux","architecture":"amd64"}},
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1,"platform":{"os":"linux","architecture":"arm64"}},
		{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1,"platform":{"os":"unknown","architecture":"unknown"},
		 "annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}`, amd, arm, att)
	ix := digest.FromString(body)
	p := newPolicy(w, Rule{Severity: scan.SeverityHigh})
	err := p.Admit(context.Background(), "team/app", proxy.ManifestInfo{Digest: ix, MediaType: mediaTypeOCIIndex, Manifest: []byte(body)})
	msg := denied(t, err)
	require.Contains(t, msg, "2 ACTIVE findings at or above HIGH in 1 of its platform images")
	require.Contains(t, msg, "--image team/app@"+arm.String())
	require.NotContains(t, msg, amd.String())
	require.Equal(t, 1, w.scanCount(arm))
	require.Zero(t, w.scanCount(att), "attestation manifests are not images")
	require.Zero(t, w.scanCount(ix), "the index itself is not scanned")
}

func TestChildren(t *testing.T) {
	d1 := digest.FromString("1")
	for _, tc := range []struct {
		name, mt, body string
		want           []digest.Digest
	}{
		{"docker list", mediaTypeDockerList, `{"manifests":[{"digest":"` + d1.String() + `"}]}`, []digest.Digest{d1}},
		{"sniffed", "", `{"mediaType":"` + mediaTypeOCIIndex + `","manifests":[{"digest":"` + d1.String() + `"}]}`, []digest.Digest{d1}},
		{"image manifest", "application/vnd.oci.image.manifest.v1+json", `{"manifests":[{"digest":"` + d1.String() + `"}]}`, nil},
		{"sniffed image manifest", "", `{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, nil},
		{"bad digest skipped", mediaTypeOCIIndex, `{"manifests":[{"digest":"sha256:xyz"}]}`, nil},
		{"garbage", mediaTypeOCIIndex, `{"manifests":`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Children(tc.mt, []byte(tc.body)))
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b/c", true},
		{"team/*", "team/app", true},
		{"team/*", "team/x/y", true},
		{"team/*", "teamx/app", false},
		{"*/app", "team/app", true},
		{"*/app", "team/apps", false},
		{"prod-*-api", "prod-eu-api", true},
		{"prod-*-api", "prod-api", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"a*a", "a", false},
	} {
		require.Equal(t, tc.want, lifecycle.WildcardMatch(tc.pattern, tc.name), "%q ~ %q", tc.pattern, tc.name)
	}
}

func FuzzChildren(f *testing.F) {
	f.Add(mediaTypeOCIIndex, []byte(`{"manifests":[{"digest":"sha256:`+digest.FromString("x").Encoded()+`"}]}`))
	f.Add("", []byte(`{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`))
	f.Fuzz(func(t *testing.T, mt string, body []byte) {
		for _, d := range Children(mt, body) {
			if err := d.Validate(); err != nil {
				t.Fatalf("invalid child digest %q returned", d)
			}
		}
	})
}

func TestIndexChildrenScannedTogether(t *testing.T) {
	w := newWorld()
	w.release = make(chan struct{})
	a, b := digest.FromString("a"), digest.FromString("b")
	w.toFind[b] = map[scan.Severity]int{scan.SeverityCritical: 1}
	p := newPolicy(w, Rule{Severity: scan.SeverityHigh, ScanTimeout: time.Millisecond})
	d, err := p.Evaluate(context.Background(), "team/app", digest.FromString("ix"), []digest.Digest{a, b})
	require.NoError(t, err)
	require.False(t, d.Allowed)
	require.ElementsMatch(t, []digest.Digest{a, b}, d.Pending)
	// Both scans were started, and carry on after the pull gave up.
	require.Equal(t, 1, w.scanCount(a))
	require.Equal(t, 1, w.scanCount(b))
	close(w.release)
	require.Eventually(t, func() bool {
		_, errA := w.Get(context.Background(), a)
		_, errB := w.Get(context.Background(), b)
		return errA == nil && errB == nil
	}, 10*time.Second, time.Millisecond)
	d, err = p.Evaluate(context.Background(), "team/app", digest.FromString("ix"), []digest.Digest{a, b})
	require.NoError(t, err)
	require.Equal(t, []digest.Digest{b}, d.Violating)
	require.Empty(t, d.Pending)
}
