package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

const benchBlobSize = 64 << 20

// benchBlob is a random blob and its digest.
func benchBlob(b *testing.B) ([]byte, digest.Digest) {
	blob := make([]byte, benchBlobSize)
	_, _ = rand.Read(blob)
	return blob, digest.FromBytes(blob)
}

// pushBlob uploads blob to base docker-style (POST, PATCH, PUT).
func pushBlob(b testing.TB, base, repo string, blob []byte, d digest.Digest) {
	b.Helper()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil || resp.StatusCode != 202 {
		b.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
	bu, _ := url.Parse(base)
	loc, _ := bu.Parse(resp.Header.Get("Location"))
	req, _ := http.NewRequest("PATCH", loc.String(), &onlyReader{blob: blob})
	req.ContentLength = -1
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 202 {
		b.Fatalf("PATCH: %v %v", resp, err)
	}
	resp.Body.Close()
	loc, _ = loc.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest("PUT", loc.String(), nil)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		b.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
}

// onlyReader hides bytes.Reader's WriterTo so both paths stream alike.
type onlyReader struct {
	blob []byte
	off  int
}

func (r *onlyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.blob) {
		return 0, io.EOF
	}
	n := copy(p, r.blob[r.off:])
	r.off += n
	return n, nil
}

// discardTeer takes every byte and drops it: the proxy's tee calls
// without an analysis behind them.
type discardTeer struct{}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Done(bool)                   {}

func (discardTeer) Pull(context.Context, string, digest.Digest, int64) scan.BlobSink {
	return discardSink{}
}
func (discardTeer) Upload(context.Context, string, string, int64) scan.BlobSink { return discardSink{} }
func (discardTeer) UploadDone(context.Context, string, string, digest.Digest)   {}

func benchHarness(b *testing.B) *harness {
	return newHarness(b, func(p *Proxy) { p.Teer = discardTeer{} })
}

// BenchmarkBlobPush: 64 MiB uploads directly to the embedded registry's
// loopback port vs through the proxy (in-process transport, tee calls on).
func BenchmarkBlobPush(b *testing.B) {
	h := benchHarness(b)
	blob, d := benchBlob(b)
	for _, c := range []struct{ name, base string }{{"direct", h.reg.URL().String()}, {"proxy", h.srv.URL}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(benchBlobSize)
			for i := 0; b.Loop(); i++ {
				pushBlob(b, c.base, fmt.Sprintf("bench/%s%d", c.name, i), blob, d)
			}
		})
	}
}

// BenchmarkBlobPull: 64 MiB GETs directly vs through the proxy.
func BenchmarkBlobPull(b *testing.B) {
	h := benchHarness(b)
	blob, d := benchBlob(b)
	pushBlob(b, h.reg.URL().String(), "bench/pull", blob, d)
	buf := make([]byte, 256<<10)
	for _, c := range []struct{ name, base string }{{"direct", h.reg.URL().String()}, {"proxy", h.srv.URL}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(benchBlobSize)
			for b.Loop() {
				resp, err := http.Get(c.base + "/v2/bench/pull/blobs/" + d.String())
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("GET: %v %v", resp, err)
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if err != nil || n != benchBlobSize {
					b.Fatalf("GET: %d bytes, %v", n, err)
				}
			}
		})
	}
}
