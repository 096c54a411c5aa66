package proxy

// Fault tests (issue 7, "Robustness") at the transfer: whatever goes wrong
// upstream or in analysis, the client's push or pull completes
// byte-identical, or fails exactly as it would without the proxy. Covered
// elsewhere and not repeated here: a client that disconnects mid-upload
// (truncated_upload_test.go), an upstream that is down, slow or answers 5xx
// (TestUpstreamFailuresAreClearAndBounded), a failing record store
// (TestRecordFailure, TestFaultFullDiskUnderBadger), a slow analyzer detaching a pull at the tee
// (scan/tee TestSlowAnalyzerDetachesWithoutBlocking).

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
	"github.com/tollgate-registry/tollgate/scan/tee"
)

// resettingUpstream serves two blobs in repo r: good in full, and bad by
// sending its first cut bytes and then resetting the TCP connection (RST,
// linger 0). chunked leaves out Content-Length.
func resettingUpstream(t *testing.T, good, bad []byte, cut int, chunked bool) *httptest.Server {
	gd, bd := digest.FromBytes(good), digest.FromBytes(bad)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []byte
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(http.StatusOK)
			return
		case "/v2/r/blobs/" + gd.String():
			b = good
		case "/v2/r/blobs/" + bd.String():
			b = bad
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(b).String())
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		if &b[0] == &good[0] {
			w.Write(b)
			return
		}
		w.Write(b[:cut])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // close sends RST: a reset, not a clean FIN
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

type pullResult struct {
	status int
	body   []byte
	err    error
}

func get(t *testing.T, u string) pullResult {
	t.Helper()
	// A fresh client each time: no connection reuse across the reset.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(u)
	if err != nil {
		return pullResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return pullResult{status: resp.StatusCode, body: b, err: err}
}

// TestFaultUpstreamResetMidBlob: an upstream that resets the connection
// part-way through a blob. The client pulling through the proxy sees what it
// sees pulling directly (a 200 whose body ends early with a read error), the
// tee is told the blob is incomplete (nothing half-read gets scanned), and the
// proxy stays healthy: a later pull of a good blob is byte-identical and
// teed complete.
func TestFaultUpstreamResetMidBlob(t *testing.T) {
	good := make([]byte, 3<<20)
	bad := make([]byte, 3<<20)
	rand.Read(good)
	rand.Read(bad)
	gd, bd := digest.FromBytes(good), digest.FromBytes(bad)
	const cut = 1 << 20
	for _, tc := range []struct {
		name    string
		chunked bool
	}{
		{"content-length", false},
		// Without Content-Length a clean return would let net/http write
		// the terminating chunk: a truncated blob passed off as complete.
		{"chunked", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := resettingUpstream(t, good, bad, cut, tc.chunked)
			upURL, _ := url.Parse(up.URL)
			ft := newFakeTeer()
			p := &Proxy{Upstream: upURL, Teer: ft, Logger: testLogger(t)}
			px := httptest.NewServer(p)
			defer px.Close()

			direct := get(t, up.URL+"/v2/r/blobs/"+bd.String())
			via := get(t, px.URL+"/v2/r/blobs/"+bd.String())
			if direct.err == nil || direct.status != http.StatusOK {
				t.Fatalf("direct pull of the reset blob: status %d err %v, want 200 and a read error", direct.status, direct.err)
			}
			if via.status != direct.status || via.err == nil {
				t.Fatalf("through the proxy: status %d err %v (%d bytes); directly: status %d err %v (%d bytes)",
					via.status, via.err, len(via.body), direct.status, direct.err, len(direct.body))
			}
			if !errors.Is(via.err, io.ErrUnexpectedEOF) && !errors.Is(direct.err, io.ErrUnexpectedEOF) {
				t.Logf("errors: direct %v, via proxy %v", direct.err, via.err)
			}
			if len(via.body) >= len(bad) || !bytes.Equal(via.body, bad[:len(via.body)]) {
				t.Errorf("through the proxy got %d bytes that are not a strict prefix of the blob", len(via.body))
			}
			ft.mu.Lock()
			ends := append([]bool(nil), ft.sinkEnd[bd.String()]...)
			ft.mu.Unlock()
			if len(ends) != 1 || ends[0] {
				t.Errorf("tee ends for the reset blob %v, want one incomplete", ends)
			}

			again := get(t, px.URL+"/v2/r/blobs/"+gd.String())
			if again.err != nil || again.status != http.StatusOK || !bytes.Equal(again.body, good) {
				t.Fatalf("later good pull: status %d err %v, %d bytes identical=%v", again.status, again.err,
					len(again.body), bytes.Equal(again.body, good))
			}
			ft.mu.Lock()
			ends = append([]bool(nil), ft.sinkEnd[gd.String()]...)
			ft.mu.Unlock()
			if len(ends) != 1 || !ends[0] {
				t.Errorf("tee ends for the good blob %v, want one complete", ends)
			}
		})
	}
}

// stuck is an analyzer that blocks on the dpkg status entry, ignoring its
// context, until release is closed (test cleanup): "forever" for the test.
type stuck struct {
	release chan struct{}
	entered chan struct{}
	once    *sync.Once
}

func (stuck) Name() string             { return "stuck" }
func (stuck) Version() string          { return "1" }
func (stuck) Wants(h *tar.Header) bool { return h.Name == "var/lib/dpkg/status" }
func (s stuck) Analyze(context.Context, *tar.Header, io.Reader) ([]scan.Package, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return nil, nil
}

type deferrals struct {
	mu sync.Mutex
	m  map[digest.Digest][]string
}

func (d *deferrals) fn(_ context.Context, _ string, dg digest.Digest, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[dg] = append(d.m[dg], reason)
}

func (d *deferrals) get(dg digest.Digest) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.m[dg]...)
}

// stuckLayer is a gzip-less tar layer: a dpkg status, then size random bytes.
func stuckLayer(t *testing.T, size int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	st := []byte("Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b13\nArchitecture: amd64\n\n")
	tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(st)), Typeflag: tar.TypeReg})
	tw.Write(st)
	pad := make([]byte, size)
	rand.Read(pad)
	tw.WriteHeader(&tar.Header{Name: "usr/share/blob.bin", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
	tw.Write(pad)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestFaultAnalyzerBlocksForever: with the real tee (Badger inventory
// store) and an analyzer stuck forever on an entry, pushes through the proxy
// complete and pull back byte-identical. The first layer fits the tee buffer,
// so its analysis starts and sticks: the push is answered anyway. A later,
// larger layer cannot be analysed in step (its blob detaches or finds no
// worker) and is deferred, so it will be scanned later from the registry.
// No inventory is committed for a layer that was not fully analysed, and
// every push is recorded.
func TestFaultAnalyzerBlocksForever(t *testing.T) {
	an := stuck{release: make(chan struct{}), entered: make(chan struct{}), once: &sync.Once{}}
	def := &deferrals{m: map[digest.Digest][]string{}}
	h := newHarness(t, nil)
	inv := index.NewInventories(h.db)
	as := []scan.Analyzer{an, analyzer.Dpkg{}}
	teer := tee.New(tee.Options{
		Analyzers:   as,
		Store:       inv,
		Deferred:    def.fn,
		BufferBytes: 64 << 10,
		Workers:     3,
		Logger:      testLogger(t),
	})
	h.proxy.Teer = teer
	t.Cleanup(func() { close(an.release); teer.Wait() })

	push := func(tag string, layer []byte) name.Reference {
		t.Helper()
		img, err := mutate.AppendLayers(empty.Image, static.NewLayer(layer, types.DockerLayer))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(h.host+"/faults/stuck:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatalf("push %s with a stuck analyzer: %v", tag, err)
		}
		return ref
	}
	pullSame := func(ref name.Reference, layer []byte) v1.Hash {
		t.Helper()
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("layers %v %d", err, len(ls))
		}
		rc, err := ls[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, layer) {
			t.Fatalf("pull %s: %v, byte-identical=%v", ref, err, bytes.Equal(got, layer))
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	small := stuckLayer(t, 1<<10)
	ref1 := push("small", small)
	// A bounded wait: the whole small blob is in the tee buffer, so its
	// analysis reaches the status entry; the push was answered before that.
	select {
	case <-an.entered:
	case <-time.After(2 * time.Minute):
		t.Fatal("the analyzer never ran on the small layer: the test shows nothing")
	}
	d1 := pullSame(ref1, small)

	big := stuckLayer(t, 4<<20)
	ref2 := push("big", big)
	d2 := pullSame(ref2, big)

	ctx := context.Background()
	av := scan.AnalyzersVersion(as)
	for _, l := range [][]byte{small, big} {
		d := digest.FromBytes(l)
		if ok, err := inv.HasLayer(ctx, d, av); err != nil || ok {
			t.Errorf("layer %s: inventory committed=%v err=%v while its analysis is stuck", d, ok, err)
		}
	}
	bd := digest.FromBytes(big)
	if got := def.get(bd); len(got) == 0 {
		t.Errorf("big layer %s never deferred, so it would never be scanned", bd)
	} else {
		t.Logf("big layer deferred: %v", got)
	}
	for _, d := range []v1.Hash{d1, d2} {
		if _, err := h.records.Image(ctx, digest.Digest(d.String())); err != nil {
			t.Errorf("push of %s not recorded: %v", d, err)
		}
	}
}
