package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLocalBlobServingMatchesTransport: blob GET/HEAD served through the
// embedded registry's in-process handler (Proxy.Local, as serve wires it)
// answer exactly as the same requests through its Transport: status,
// the headers a client reads, the bytes; and a full GET is teed once,
// complete, while HEAD, a range GET and a 404 are not.
func TestLocalBlobServingMatchesTransport(t *testing.T) {
	blob := make([]byte, 3<<20+17) // several of the registry's 32 KiB writes
	_, _ = rand.Read(blob)
	type answer struct {
		status int
		header map[string]string
		body   []byte
		teed   [][]byte
		ends   []bool
	}
	get := func(local bool) map[string]answer {
		h := newHarness(t, func(p *Proxy) {
			if !local {
				p.Local = nil
			}
		})
		d := digest.FromBytes(blob)
		pushBlob(t, h.srv.URL, "r", blob, d)
		missing := "sha256:" + strings.Repeat("0", 64)
		out := map[string]answer{}
		for _, c := range []struct {
			name, method, path, rng string
		}{
			{"get", "GET", "/v2/r/blobs/" + d.String(), ""},
			{"head", "HEAD", "/v2/r/blobs/" + d.String(), ""},
			{"range", "GET", "/v2/r/blobs/" + d.String(), "bytes=100-4195"},
			{"missing", "GET", "/v2/r/blobs/" + missing, ""},
			{"missing-head", "HEAD", "/v2/r/blobs/" + missing, ""},
		} {
			hdr := map[string]string{}
			if c.rng != "" {
				hdr["Range"] = c.rng
			}
			resp := h.do(c.method, c.path, nil, hdr)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			a := answer{status: resp.StatusCode, body: body, header: map[string]string{}}
			for _, k := range []string{"Content-Length", "Content-Type", "Docker-Content-Digest", "Content-Range", "Accept-Ranges", "Docker-Distribution-Api-Version", "Etag"} {
				a.header[k] = resp.Header.Get(k)
			}
			out[c.name] = a
		}
		h.srv.Close() // waits for the handlers: every sink has ended
		h.teer.mu.Lock()
		a := out["get"]
		a.teed, a.ends = h.teer.pulls[d], h.teer.sinkEnd[d.String()]
		out["get"] = a
		h.teer.mu.Unlock()
		return out
	}
	viaTransport, viaLocal := get(false), get(true)

	if g := viaLocal["get"]; g.status != 200 || !bytes.Equal(g.body, blob) {
		t.Fatalf("local GET: status %d, %d bytes (want 200, the %d pushed)", g.status, len(g.body), len(blob))
	}
	if g := viaLocal["get"]; len(g.teed) != 1 || !bytes.Equal(g.teed[0], blob) || len(g.ends) != 1 || !g.ends[0] {
		t.Errorf("local GET: tee got %d copies, ends %v; want the whole blob once, complete", len(g.teed), g.ends)
	}
	// A HEAD error answer is sized like its GET, as the registry's own
	// listener (net/http) sizes it.
	if got, want := viaLocal["missing-head"].header["Content-Length"], strconv.Itoa(len(viaLocal["missing"].body)); got != want {
		t.Errorf("HEAD of an unknown blob: Content-Length %q, want %s (the GET's error body)", got, want)
	}
	if r := viaLocal["range"]; r.status != http.StatusPartialContent || !bytes.Equal(r.body, blob[100:4196]) {
		t.Errorf("local range GET: status %d, %d bytes", r.status, len(r.body))
	}
	for name, want := range viaTransport {
		got := viaLocal[name]
		if got.status != want.status || !bytes.Equal(got.body, want.body) {
			t.Errorf("%s: local answered %d with %d bytes, transport %d with %d", name, got.status, len(got.body), want.status, len(want.body))
		}
		for k, v := range want.header {
			if got.header[k] != v {
				t.Errorf("%s: header %s local %q, transport %q", name, k, got.header[k], v)
			}
		}
		if len(got.teed) != len(want.teed) || len(got.ends) != len(want.ends) {
			t.Errorf("%s: local teed %d (ends %v), transport %d (ends %v)", name, len(got.teed), got.ends, len(want.teed), want.ends)
		}
	}
}

// TestLocalBlobFailures: what a client sees when the in-process registry
// handler fails, and what the tee is told.
func TestLocalBlobFailures(t *testing.T) {
	d := digest.FromString("x")
	path := "/v2/r/blobs/" + d.String()
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		status  int    // answer the client gets (unless broken)
		code    string // OCI error code in the body ("" none)
		broken  bool   // the body must not arrive whole
		ends    []bool // sink Done values
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500); _, _ = w.Write([]byte("boom")) }, 502, CodeUnavailable, false, nil},
		{"503", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, 503, CodeUnavailable, false, nil},
		{"panic before answering", func(http.ResponseWriter, *http.Request) { panic("registry bug") }, 502, CodeUnavailable, false, nil},
		{"panic mid-body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(make([]byte, 10))
			panic("registry bug")
		}, 200, "", true, []bool{false}},
		{"short body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = w.Write(make([]byte, 10))
		}, 200, "", true, []bool{false}},
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, 200, "", false, []bool{true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ft := newFakeTeer()
			p := &Proxy{Upstream: mustURL("http://reg.invalid"), Local: c.handler, Teer: ft, UpstreamName: "embedded registry", Logger: testLogger(t)}
			srv := httptest.NewServer(p)
			var body []byte
			resp, rerr := http.Get(srv.URL + path)
			if rerr == nil {
				body, rerr = io.ReadAll(resp.Body)
				_ = resp.Body.Close()
			}
			srv.Close() // waits for the handler: its sink has ended
			switch {
			case c.broken:
				if rerr == nil {
					t.Errorf("read %d bytes without error; the client must see a broken transfer", len(body))
				}
			case rerr != nil:
				t.Fatal(rerr)
			case resp.StatusCode != c.status:
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.code != "" {
				var env struct {
					Errors []struct{ Code, Message string }
				}
				if err := json.Unmarshal(body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != c.code ||
					!strings.Contains(env.Errors[0].Message, "embedded registry") {
					t.Errorf("body %q: want one %s error naming the embedded registry", body, c.code)
				}
			}
			ft.mu.Lock()
			defer ft.mu.Unlock()
			if got := ft.sinkEnd[d.String()]; len(got) != len(c.ends) || (len(got) == 1 && got[0] != c.ends[0]) {
				t.Errorf("sink ends %v, want %v", got, c.ends)
			}
		})
	}
}

// TestLocalBlobClientGoesAway: a client that stops reading mid-blob ends
// the registry's copy and tells the tee the body was incomplete.
func TestLocalBlobClientGoesAway(t *testing.T) {
	h := newHarness(t, nil)
	blob := make([]byte, 32<<20) // more than the sockets buffer
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	pushBlob(t, h.srv.URL, "r", blob, d)
	resp := h.do("GET", "/v2/r/blobs/"+d.String(), nil, nil)
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	h.srv.CloseClientConnections()
	h.srv.Close()
	h.teer.mu.Lock()
	defer h.teer.mu.Unlock()
	if got := h.teer.sinkEnd[d.String()]; len(got) != 1 || got[0] {
		t.Errorf("sink ends %v, want one incomplete", got)
	}
}
