package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

func pushRandom(t *testing.T, host, repo, tag string) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func imgDigest(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

// ociErr decodes an OCI error envelope and returns its first code.
func ociErr(t *testing.T, resp *http.Response) (code, msg string) {
	t.Helper()
	defer resp.Body.Close()
	var env struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &env); err != nil || len(env.Errors) == 0 {
		t.Fatalf("status %d: body is not an OCI error envelope: %q", resp.StatusCode, b)
	}
	return env.Errors[0].Code, env.Errors[0].Message
}

func TestHeadIsNotAPullAndGetIs(t *testing.T) {
	h := newHarness(t, nil)
	d := imgDigest(t, pushRandom(t, h.host, "app", "v1"))
	accept := map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"}
	for range 3 {
		resp := h.do(http.MethodHead, "/v2/app/manifests/v1", nil, accept)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
		}
	}
	rec, err := h.records.Get(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if ri := rec.Repo("app"); ri.PullCount != 0 || ri.LastPulledAt != nil {
		t.Fatalf("HEAD counted as pull: %+v", ri)
	}
	for range 2 {
		resp := h.do(http.MethodGet, "/v2/app/manifests/v1", nil, accept)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || digest.FromBytes(b) != d {
			t.Fatalf("GET: %d, digest %s", resp.StatusCode, digest.FromBytes(b))
		}
	}
	resp := h.do(http.MethodGet, "/v2/app/manifests/"+d.String(), nil, accept)
	resp.Body.Close()
	rec, _ = h.records.Get(context.Background(), d)
	if ri := rec.Repo("app"); ri.PullCount != 3 || ri.LastPulledAt == nil {
		t.Fatalf("want 3 pulls, got %+v", ri)
	}
}

func TestBadManifestsGetOCIErrorsAndNothingIsWritten(t *testing.T) {
	h := newHarness(t, func(p *Proxy) { p.MaxManifestBytes = 2048 })
	good := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	ct := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	cases := []struct {
		name, ref, body string
		hdr             map[string]string
		status          int
		code            string
	}{
		{"not json", "t1", `{"schemaVersion":2,`, ct, 400, CodeManifestInvalid},
		{"json array", "t1", `[1,2]`, ct, 400, CodeManifestInvalid},
		{"no schemaVersion", "t1", `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, ct, 400, CodeManifestInvalid},
		{"media type mismatch", "t1", good, map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, 400, CodeManifestInvalid},
		{"bad descriptor digest", "t1", strings.Replace(good, "sha256:4413", "sha256:XX13", 1), ct, 400, CodeDigestInvalid},
		{"digest mismatch", "sha256:" + strings.Repeat("a", 64), good, ct, 400, CodeDigestInvalid},
		{"malformed digest", "sha256:abc", good, ct, 400, CodeDigestInvalid},
		{"bad tag", "-bad", good, ct, 400, CodeManifestInvalid},
		{"too large", "t1", `{"schemaVersion":2,"x":"` + strings.Repeat("a", 4096) + `"}`, ct, 413, CodeManifestInvalid},
		// Valid to the proxy, refused by the registry (its config blob is not there).
		{"unknown blob", "t1", good, ct, 400, CodeManifestBlobUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := h.do(http.MethodPut, "/v2/bad/manifests/"+c.ref, []byte(c.body), c.hdr)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if code, _ := ociErr(t, resp); code != c.code {
				t.Errorf("code %s, want %s", code, c.code)
			}
		})
	}
	recs, _, err := h.records.List(context.Background(), index.ListOptions{})
	if err != nil || len(recs) != 0 {
		t.Fatalf("records written for rejected manifests: %v %v", recs, err)
	}
	resp := h.do(http.MethodGet, "/v2/bad/manifests/t1", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("rejected manifest stored: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func TestUnknownEndpointsAndNames(t *testing.T) {
	h := newHarness(t, nil)
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/UPPER/manifests/x", 400, CodeNameInvalid},
		{"GET", "/v2/a/b/nonsense/x", 404, CodeUnsupported},
		{"POST", "/v2/a/manifests/x", 405, CodeUnsupported},
		{"GET", "/v2/a/referrers/notadigest", 400, CodeDigestInvalid},
		{"GET", "/v2/a/manifests/latest", 404, CodeManifestUnknown}, // passed through from distribution
	} {
		resp := h.do(c.method, c.path, nil, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		if code, _ := ociErr(t, resp); code != c.code {
			t.Errorf("%s %s: code %s, want %s", c.method, c.path, code, c.code)
		}
	}
}

func TestUpstreamFailuresAreClearAndBounded(t *testing.T) {
	// A closed port: nothing listens.
	ln := httptest.NewServer(http.NotFoundHandler())
	deadURL, _ := url.Parse(ln.URL)
	ln.Close()

	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	slowURL, _ := url.Parse(slow.URL)

	status := func(code int) *url.URL {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(s.Close)
		u, _ := url.Parse(s.URL)
		return u
	}
	for _, c := range []struct {
		name   string
		up     *url.URL
		status int
	}{
		{"down", deadURL, 502},
		{"slow", slowURL, 504},
		{"500", status(500), 502},
		{"503", status(503), 503},
		{"504", status(504), 504},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Proxy{Upstream: c.up, Timeout: 200 * time.Millisecond}
			for _, path := range []string{"/v2/a/manifests/latest", "/v2/a/blobs/sha256:" + strings.Repeat("0", 64), "/v2/a/tags/list"} {
				rec := httptest.NewRecorder()
				p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != c.status {
					t.Errorf("%s: status %d, want %d", path, rec.Code, c.status)
				}
				var env struct {
					Errors []struct{ Code, Message string }
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || len(env.Errors) != 1 ||
					!strings.Contains(env.Errors[0].Message, c.up.Host) {
					t.Errorf("%s: error body does not name the upstream %s: %s", path, c.up.Host, rec.Body)
				}
			}
		})
	}
}

func TestZeroProxyAnswers(t *testing.T) {
	var p Proxy
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("zero Proxy: %d", rec.Code)
	}
}

type denyGate struct {
	mu   sync.Mutex
	seen []ManifestInfo
	err  error
}

func (g *denyGate) Admit(_ context.Context, repo string, m ManifestInfo) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = append(g.seen, m)
	return g.err
}

func TestGateAndArchive(t *testing.T) {
	gate := &denyGate{}
	h := newHarness(t, func(p *Proxy) { p.Gate = gate })
	d := imgDigest(t, pushRandom(t, h.host, "gated", "v1"))
	ctx := context.Background()

	gate.err = &DeniedError{Message: "image has 2 CRITICAL findings"}
	resp := h.do("GET", "/v2/gated/manifests/v1", nil, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("denied: %d", resp.StatusCode)
	}
	if code, msg := ociErr(t, resp); code != CodeDenied || !strings.Contains(msg, "CRITICAL") {
		t.Fatalf("denied: %s %s", code, msg)
	}
	if len(gate.seen) != 1 || gate.seen[0].Digest != d || gate.seen[0].Reference != "v1" || len(gate.seen[0].Manifest) == 0 {
		t.Fatalf("gate saw %+v", gate.seen)
	}
	rec, _ := h.records.Get(ctx, d)
	if rec.Repo("gated").PullCount != 0 {
		t.Fatal("a denied pull was recorded as a pull")
	}

	gate.err = errors.New("findings store down") // fail-open
	resp = h.do("GET", "/v2/gated/manifests/v1", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("gate error must fail open: %d", resp.StatusCode)
	}
	gate.err = nil

	if err := h.records.SetStatus(ctx, "gated", d, index.ImageArchived); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "HEAD"} {
		resp = h.do(m, "/v2/gated/manifests/v1", nil, nil)
		if resp.StatusCode != 404 {
			t.Fatalf("%s archived: %d", m, resp.StatusCode)
		}
		if m == "GET" {
			if code, msg := ociErr(t, resp); code != CodeManifestUnknown || !strings.Contains(msg, "archived") {
				t.Fatalf("archived: %s %s", code, msg)
			}
		} else {
			resp.Body.Close()
		}
	}
	if err := h.records.SetStatus(ctx, "gated", d, index.ImageActive); err != nil {
		t.Fatal(err)
	}
	resp = h.do("GET", "/v2/gated/manifests/v1", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("restored: %d", resp.StatusCode)
	}
}

type recordingObserver struct {
	mu  sync.Mutex
	evs []index.Event
	rec *index.Records
	// recorded is whether the record existed when Observe ran.
	recorded []bool
}

func (o *recordingObserver) Observe(ctx context.Context, ev index.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evs = append(o.evs, ev)
	_, err := o.rec.Get(ctx, ev.Digest)
	o.recorded = append(o.recorded, err == nil)
}

func TestObserversRecordsTagsAndDeletes(t *testing.T) {
	obs := &recordingObserver{}
	h := newHarness(t, func(p *Proxy) { p.Observers = []Observer{obs} })
	obs.rec = h.records
	ctx := context.Background()
	a := imgDigest(t, pushRandom(t, h.host, "moving", "latest"))
	b := imgDigest(t, pushRandom(t, h.host, "moving", "latest"))

	obs.mu.Lock()
	var pushes []index.Event
	for i, ev := range obs.evs {
		if !obs.recorded[i] {
			t.Errorf("observer ran before the record of %s was written", ev.Digest)
		}
		if ev.Kind == index.EventPush {
			pushes = append(pushes, ev)
		}
	}
	obs.mu.Unlock()
	if len(pushes) != 2 || pushes[0].Digest != a || pushes[1].Digest != b || pushes[1].Tag != "latest" || len(pushes[1].Manifest) == 0 {
		t.Fatalf("push events %+v", pushes)
	}
	ra, _ := h.records.Get(ctx, a)
	rb, _ := h.records.Get(ctx, b)
	if len(ra.Repo("moving").Tags) != 0 || len(rb.Repo("moving").Tags) != 1 {
		t.Fatalf("tag did not move: a=%v b=%v", ra.Repo("moving").Tags, rb.Repo("moving").Tags)
	}
	hist, err := h.records.TagHistory(ctx, "moving", "latest")
	if err != nil || len(hist) != 2 || hist[1].Previous != a || hist[1].Digest != b {
		t.Fatalf("history %+v %v", hist, err)
	}

	resp := h.do("DELETE", "/v2/moving/manifests/"+a.String(), nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	ra, _ = h.records.Get(ctx, a)
	if ri := ra.Repo("moving"); !ri.Deleted || ri.DeletedAt == nil {
		t.Fatalf("delete not recorded: %+v", ri)
	}
}

// TestRecordFailure: with the record store broken (Badger closed), a pull
// is still served (fail-open: its record is kept for later) but a push is
// refused 500 UNKNOWN, never acknowledged unrecorded.
func TestRecordFailure(t *testing.T) {
	h := newHarness(t, nil)
	pushRandom(t, h.host, "failopen", "v1")
	if err := h.db.Close(); err != nil { // every write now fails
		t.Fatal(err)
	}
	resp := h.do("GET", "/v2/failopen/manifests/v1", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pull with broken records: %d", resp.StatusCode)
	}
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(h.host+"/failopen:v2", name.Insecure)
	if err := remote.Write(ref, img, remote.WithRetryStatusCodes()); err == nil {
		t.Fatal("push acknowledged with broken records")
	}
	if n := h.proxy.RecordFailures(); n < 2 {
		t.Fatalf("RecordFailures = %d, want >= 2 (push and pull)", n)
	}
	h.openDB() // for cleanup symmetry
}

// TestSha512PassesThroughToUpstream: distribution cannot store sha512, but
// an upstream that can gets sha512 references and bodies untouched, and
// the push is recorded under its sha512 digest.
func TestSha512PassesThroughToUpstream(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha512:` +
		strings.Repeat("ab", 64) + `","size":2},"layers":[]}`)
	d := digest.SHA512.FromBytes(manifest)
	var mu sync.Mutex
	var gotPath string
	var gotBody []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		gotPath = r.URL.Path
		gotBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	}))
	defer up.Close()
	h := newHarness(t, func(p *Proxy) { p.Upstream, p.Transport, p.Local = mustURL(up.URL), nil, nil })
	resp := h.do("PUT", "/v2/big/manifests/"+d.String(), manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotPath != "/v2/big/manifests/"+d.String() || string(gotBody) != string(manifest) {
		t.Fatalf("upstream got %s %q", gotPath, gotBody)
	}
	if rec, err := h.records.Get(context.Background(), d); err != nil || rec.Repo("big") == nil {
		t.Fatalf("sha512 push not recorded: %+v %v", rec, err)
	}
	// A wrong sha512 is refused before it goes anywhere.
	bad := digest.NewDigestFromEncoded(digest.SHA512, strings.Repeat("0", 128))
	resp = h.do("PUT", "/v2/big/manifests/"+bad.String(), manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if code, _ := ociErr(t, resp); code != CodeDigestInvalid {
		t.Fatalf("bad sha512: %s", code)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestUpstreamReferrersFirst(t *testing.T) {
	subject := digest.FromString("subject")
	native := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"x","digest":"` + digest.FromString("n").String() + `","size":1}]}`
	for _, c := range []struct {
		name     string
		status   int
		wantBody bool // the upstream's own answer passes through
	}{{"supported", 200, true}, {"unsupported", 404, false}} {
		t.Run(c.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/referrers/") {
					w.WriteHeader(500)
					return
				}
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				w.WriteHeader(c.status)
				if c.status == 200 {
					_, _ = w.Write([]byte(native))
				}
			}))
			defer up.Close()
			h := newHarness(t, func(p *Proxy) {
				p.Upstream, p.Transport, p.Local, p.UpstreamReferrers = mustURL(up.URL), nil, nil, true
			})
			resp := h.do("GET", "/v2/app/referrers/"+subject.String(), nil, nil)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || (string(b) == native) != c.wantBody {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
		})
	}
}

func TestAccessLogLine(t *testing.T) {
	var buf syncWriter
	h := newHarness(t, nil)
	d := imgDigest(t, pushRandom(t, h.host, "logged/app", "v1"))
	srv := httptest.NewServer(AccessLog(zerolog.New(&buf), h.proxy))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/logged/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var line struct {
		Method, Repo, Digest, Tag, Op string
		Status                        int
		Bytes                         int64
		Duration                      float64
	}
	if err := json.Unmarshal(buf.bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.bytes())
	}
	if line.Op != "access" || line.Method != "GET" || line.Repo != "logged/app" || line.Tag != "v1" ||
		line.Digest != d.String() || line.Status != 200 || line.Bytes != n || line.Duration <= 0 {
		t.Fatalf("access line %+v", line)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncWriter) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b...)
}
