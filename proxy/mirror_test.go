package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// authUpstream is an in-process registry that requires bearer tokens
// (token endpoint at /token) and answers blob GETs with a 307 to a second
// server (a CDN).
type authUpstream struct {
	inner, cdn, srv *httptest.Server
	tokens, cdnHits atomic.Int64
	url             *url.URL
}

const testToken = "s3cr3t-token"

func newAuthUpstream(t *testing.T) *authUpstream {
	t.Helper()
	a := &authUpstream{}
	a.inner = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(a.inner.Close)
	innerURL, _ := url.Parse(a.inner.URL)
	a.cdn = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.cdnHits.Add(1)
		if r.Header.Get("Authorization") != "" {
			http.Error(w, "credentials leaked to the CDN", http.StatusBadRequest)
			return
		}
		resp, err := http.Get(a.inner.URL + strings.TrimPrefix(r.URL.Path, "/cdn"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(a.cdn.Close)
	rp := httputil.NewSingleHostReverseProxy(innerURL)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			a.tokens.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]string{"token": testToken})
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, a.srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, r, a.cdn.URL+"/cdn"+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	a.url, _ = url.Parse(a.srv.URL)
	return a
}

// seed pushes a random image straight into the inner registry.
func (a *authUpstream) seed(t *testing.T, repo, tag string) v1.Image {
	t.Helper()
	u, _ := url.Parse(a.inner.URL)
	ref, _ := name.ParseReference(u.Host+"/"+repo+":"+tag, name.Insecure)
	img, _ := random.Image(4096, 2)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestMirrorAuthenticatesFollowsRedirectsAndTees(t *testing.T) {
	a := newAuthUpstream(t)
	img := a.seed(t, "team/app", "v1")
	a2 := newAuthUpstream(t) // the registries behind ?ns=
	hub := a2.seed(t, "library/alpine", "3")
	a2.seed(t, "team/app", "v1")
	h := newHarness(t, func(p *Proxy) {
		p.Upstream, p.Transport = a.url, nil // over HTTP
		p.Mirror = &Mirror{Registries: map[string]string{"docker.io": a2.srv.URL, "other.example": a2.srv.URL}}
	})

	// docker's registry-mirrors: plain pull, no client credentials.
	ref, _ := name.ParseReference(h.host+"/team/app:v1", name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	for _, l := range layers {
		rc, err := l.Compressed() // ggcr verifies the digest while reading
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer: %v", err)
		}
		rc.Close()
	}
	wd, _ := img.Digest()
	gd, _ := got.Digest()
	if wd != gd {
		t.Fatalf("digest %s, want %s", gd, wd)
	}
	if a.tokens.Load() == 0 {
		t.Fatal("the proxy never fetched a token")
	}
	if a.cdnHits.Load() < int64(len(layers)) {
		t.Fatalf("CDN hits %d < %d layers: redirects not followed by the proxy", a.cdnHits.Load(), len(layers))
	}
	h.srv.Close() // wait for handlers: every sink has ended
	srcLayers, _ := img.Layers()
	for _, l := range srcLayers {
		ld, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(rc)
		rc.Close()
		h.teer.mu.Lock()
		teed := h.teer.pulls[digest.Digest(ld.String())]
		h.teer.mu.Unlock()
		if len(teed) == 0 || !bytes.Equal(teed[0], want) {
			t.Errorf("tee did not see layer %s through the redirect", ld)
		}
	}
	rec, err := h.records.Get(context.Background(), digest.Digest(wd.String()))
	if err != nil || rec.Repo("team/app") == nil || rec.Repo("team/app").PullCount != 1 || rec.Repo("team/app").Tags[0] != "v1" {
		t.Fatalf("mirror pull record: %+v %v", rec, err)
	}

	// containerd's hosts.toml: ?ns=, library/ for Docker Hub names.
	h.srv = httptest.NewServer(h.proxy)
	hd, _ := hub.Digest()
	for _, c := range []struct{ path, repo string }{
		{"/v2/alpine/manifests/3?ns=docker.io", "docker.io/library/alpine"},
		{"/v2/team/app/manifests/v1?ns=other.example", "other.example/team/app"},
	} {
		resp := h.do("GET", c.path, nil, map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", c.path, resp.StatusCode)
		}
		d := digest.Digest(resp.Header.Get("Docker-Content-Digest"))
		rec, err := h.records.Get(context.Background(), d)
		if err != nil || rec.Repo(c.repo) == nil || !rec.Repos[len(rec.Repos)-1].PushedAt.After(rec.Repos[0].PushedAt.Add(-1)) {
			t.Fatalf("%s: record %+v %v", c.path, rec, err)
		}
	}
	if rec, _ := h.records.Get(context.Background(), digest.Digest(hd.String())); rec == nil || rec.Repo("docker.io/library/alpine") == nil {
		t.Fatalf("library/ mapping: %+v", rec)
	}

	// Read-only.
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH"} {
		resp := h.do(m, "/v2/team/app/manifests/v1", []byte("{}"), nil)
		if resp.StatusCode != 405 {
			t.Errorf("%s: %d", m, resp.StatusCode)
		}
		if code, _ := ociErr(t, resp); code != CodeUnsupported {
			t.Errorf("%s: %s", m, code)
		}
	}
}

// TestUpstreamPassesAuthThrough: in --upstream mode the client's
// credentials go upstream and the upstream's bearer challenge (realm
// unchanged) comes back, so `docker login` works through the proxy.
func TestUpstreamPassesAuthThrough(t *testing.T) {
	a := newAuthUpstream(t)
	a.seed(t, "team/app", "v1")
	h := newHarness(t, func(p *Proxy) { p.Upstream, p.Transport, p.Local = a.url, nil, nil })

	resp := h.do("GET", "/v2/", nil, nil)
	resp.Body.Close()
	chal := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 401 || !strings.Contains(chal, `realm="`+a.srv.URL+`/token"`) {
		t.Fatalf("challenge: %d %q", resp.StatusCode, chal)
	}
	tr, err := http.Get(a.srv.URL + "/token?service=test&scope=repository:team/app:pull")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(tr.Body).Decode(&tok)
	tr.Body.Close()
	auth := map[string]string{"Authorization": "Bearer " + tok.Token, "Accept": "application/vnd.docker.distribution.manifest.v2+json"}
	resp = h.do("GET", "/v2/team/app/manifests/v1", nil, auth)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("authorized pull: %d %s", resp.StatusCode, b)
	}
	var m struct{ Layers []struct{ Digest string } }
	_ = json.Unmarshal(b, &m)
	// The blob GET is redirected upstream; the proxy follows it without
	// sending the client's credentials to the CDN.
	resp = h.do("GET", "/v2/team/app/blobs/"+m.Layers[0].Digest, nil, auth)
	lb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || digest.FromBytes(lb).String() != m.Layers[0].Digest || resp.Header.Get("Docker-Content-Digest") != m.Layers[0].Digest {
		t.Fatalf("blob via redirect: %d %s", resp.StatusCode, lb[:min(len(lb), 200)])
	}
}

func TestMirrorUnreachable(t *testing.T) {
	s := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(s.URL)
	s.Close()
	p := &Proxy{Upstream: u, Mirror: &Mirror{}}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/team/app/manifests/v1", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), u.Host) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestMirrorRepoMapping(t *testing.T) {
	m := &Mirror{Registries: map[string]string{"quay.io": "https://quay.example"}}
	for ns, want := range map[string]string{"docker.io": DockerHub, "quay.io": "https://quay.example", "ghcr.io": "https://ghcr.io"} {
		u, err := m.registryURL(ns)
		if err != nil || u.String() != want {
			t.Errorf("%s: %v %v", ns, u, err)
		}
	}
	if _, err := (&Mirror{Registries: map[string]string{"x": "ftp://x"}}).registryURL("x"); err == nil {
		t.Error("ftp:// accepted")
	}
}

// TestMirrorUpstreamRefusal: when the upstream refuses even the mirror's
// token (private repository), the client gets 401 UNAUTHORIZED without
// the upstream's challenge, which it could not answer through the mirror.
func TestMirrorUpstreamRefusal(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			_ = json.NewEncoder(w).Encode(map[string]string{"token": "useless"})
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	p := &Proxy{Upstream: mustURL(srv.URL), Mirror: &Mirror{}}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/private/app/manifests/v1", nil))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != "" ||
		!strings.Contains(rec.Body.String(), `"UNAUTHORIZED"`) || !strings.Contains(rec.Body.String(), "private/app") {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}
