package proxy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/embedded"
	"github.com/tollgate-registry/tollgate/scan"
)

// sharedDir returns ../shared (env TOLLGATE_SHARED): skips loudly when it
// is absent, fails under CI=true.
func sharedDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("TOLLGATE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(d, "images", "INDEX.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %s (set TOLLGATE_SHARED): %v", d, err)
		}
		t.Skipf("!!! SKIPPING: shared test material not found at %s (set TOLLGATE_SHARED) !!!", d)
	}
	return d
}

// testLogger logs to the test only when -v.
func testLogger(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// harness is a proxy in front of an embedded registry, with real Badger
// records and a fake tee.
type harness struct {
	t       testing.TB
	dir     string
	reg     *embedded.Registry
	db      *index.DB
	records *index.Records
	teer    *fakeTeer
	proxy   *Proxy
	srv     *httptest.Server
	host    string // host:port of the proxy, for references
}

func newHarness(t testing.TB, mod func(p *Proxy)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), teer: newFakeTeer()}
	opts := embedded.Options{Dir: filepath.Join(h.dir, "registry"), Logger: testLogger(t)}
	if _, bench := t.(*testing.B); bench {
		opts.Listen = "127.0.0.1:0" // the benchmarks' "direct" runs dial the registry
	}
	reg, err := embedded.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	h.openDB()
	h.proxy = &Proxy{Upstream: reg.URL(), Transport: reg.Transport(), Local: reg.Handler(), Logger: testLogger(t)} // as serve wires it
	h.wire()
	if mod != nil {
		mod(h.proxy)
	}
	h.srv = httptest.NewServer(AccessLog(testLogger(t), h.proxy))
	t.Cleanup(h.srv.Close)
	u, _ := url.Parse(h.srv.URL)
	h.host = u.Host
	return h
}

func (h *harness) openDB() {
	db, err := index.Open(filepath.Join(h.dir, "index"), index.Options{Logger: testLogger(h.t)})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	h.records = index.NewRecords(db, index.RecordsOptions{})
	h.t.Cleanup(func() { _ = db.Close() })
}

func (h *harness) wire() {
	h.proxy.Records = h.records
	h.proxy.Referrers = index.NewReferrers(h.db)
	h.proxy.Teer = h.teer
}

// restart closes and reopens Badger (records must survive).
func (h *harness) restart() {
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.openDB()
	h.wire()
}

func (h *harness) do(method, path string, body []byte, hdr map[string]string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// fakeTeer records every byte it is handed, per pulled digest and per
// upload session (pieces keyed by offset), and the UploadDone calls.
type fakeTeer struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled on UploadDone
	pulls   map[digest.Digest][][]byte
	uploads map[string]map[int64]*bytes.Buffer // repo/session → offset → bytes
	done    map[string]digest.Digest           // repo/session → committed digest ("" cancelled)
	sinkEnd map[string][]bool                  // repo/session or digest → Done(complete) values
}

func newFakeTeer() *fakeTeer {
	f := &fakeTeer{
		pulls: map[digest.Digest][][]byte{}, uploads: map[string]map[int64]*bytes.Buffer{},
		done: map[string]digest.Digest{}, sinkEnd: map[string][]bool{},
	}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// waitDone blocks until UploadDone was called for repo/session and
// returns its digest (the proxy calls it just after answering the client).
func (f *fakeTeer) waitDone(key string) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if d, ok := f.done[key]; ok {
			return d
		}
		f.cond.Wait()
	}
}

type fakeSink struct {
	f   *fakeTeer
	buf *bytes.Buffer
	key string
	end func()
}

func (s *fakeSink) Write(p []byte) (int, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.buf.Write(p)
	return len(p), nil
}

func (s *fakeSink) Done(complete bool) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.sinkEnd[s.key] = append(s.f.sinkEnd[s.key], complete)
	if s.end != nil {
		s.end()
	}
}

func (f *fakeTeer) Pull(_ context.Context, repo string, d digest.Digest, size int64) scan.BlobSink {
	f.mu.Lock()
	defer f.mu.Unlock()
	buf := &bytes.Buffer{}
	s := &fakeSink{f: f, buf: buf, key: d.String()}
	s.end = func() { f.pulls[d] = append(f.pulls[d], buf.Bytes()) }
	return s
}

func (f *fakeTeer) Upload(_ context.Context, repo, session string, offset int64) scan.BlobSink {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := repo + "/" + session
	if f.uploads[k] == nil {
		f.uploads[k] = map[int64]*bytes.Buffer{}
	}
	buf := &bytes.Buffer{}
	f.uploads[k][offset] = buf
	return &fakeSink{f: f, buf: buf, key: k}
}

func (f *fakeTeer) UploadDone(_ context.Context, repo, session string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done[repo+"/"+session] = d
	f.cond.Broadcast()
}

// uploadedBlobs reassembles each committed session's pieces in offset
// order (checking they are contiguous) and returns committed digest → bytes.
func (f *fakeTeer) uploadedBlobs(t testing.TB) map[digest.Digest][]byte {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[digest.Digest][]byte{}
	for k, d := range f.done {
		if d == "" {
			continue
		}
		pieces := f.uploads[k]
		offs := make([]int64, 0, len(pieces))
		for o := range pieces {
			offs = append(offs, o)
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		var all []byte
		for _, o := range offs {
			if int64(len(all)) != o {
				t.Errorf("session %s: piece at offset %d, but %d bytes before it", k, o, len(all))
			}
			all = append(all, pieces[o].Bytes()...)
		}
		out[d] = all
	}
	return out
}
