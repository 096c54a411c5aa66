package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DockerHub is the registry a mirror fronts by default, and the API host
// behind containerd's ?ns=docker.io.
const DockerHub = "https://registry-1.docker.io"

// Mirror configures pull-through mirror mode (Docker's registry-mirrors,
// containerd's hosts.toml): read-only (writes answer 405 UNSUPPORTED); the
// proxy authenticates itself upstream with the token flow of
// go-containerregistry's transport (anonymous, or Username/Password for
// Proxy.Upstream); single-component names on Docker Hub (or ns=docker.io)
// get "library/";
// containerd's ?ns=<registry> selects the upstream per request; blob
// redirects are followed by the proxy. Records name images
// "<ns>/<repository>" when ns selects a registry other than
// Proxy.Upstream (default DockerHub), else "<repository>".
type Mirror struct {
	// Registries maps ?ns= values to base URLs; a missing entry means
	// https://<ns> ("docker.io" means DockerHub).
	Registries map[string]string
	// Username and Password authenticate to Proxy.Upstream (empty:
	// anonymous).
	Username, Password string

	mu         sync.Mutex
	transports map[string]http.RoundTripper
}

const maxMirrorTransports = 1024

// serveMirror answers a request in mirror mode.
func (p *Proxy) serveMirror(w http.ResponseWriter, r *http.Request, rt route) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		WriteError(w, r, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "this registry is a read-only pull-through mirror"))
		return
	}
	switch rt.kind {
	case routeBase:
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Docker-Distribution-API-Version", "registry/2.0")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}"))
		}
		return
	case routeCatalog, routeUploads, routeUpload:
		WriteError(w, r, errorf(http.StatusNotFound, CodeUnsupported, "not available on a pull-through mirror"))
		return
	}
	def := p.Upstream
	if def == nil {
		def, _ = url.Parse(DockerHub)
	}
	base, recordPrefix := def, ""
	hub := isDockerHub(def.Host)
	if ns := r.URL.Query().Get("ns"); ns != "" {
		b, err := p.Mirror.registryURL(ns)
		if err != nil {
			WriteError(w, r, errorf(http.StatusBadRequest, CodeUnsupported, "ns=%q: %v", ns, err))
			return
		}
		if !strings.EqualFold(b.Host, def.Host) {
			base, recordPrefix = b, ns+"/"
			hub = isDockerHub(b.Host)
		}
		hub = hub || ns == "docker.io"
	}
	repo := rt.repo
	if hub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	tr, err := p.mirrorTransport(r, base, repo, base == def)
	if err != nil {
		p.writeRoundTripError(w, r, upstreamError(base.Host, err))
		return
	}
	up := upstream{base: base, rt: tr, name: base.Host, repo: repo, record: recordPrefix + repo, mirror: true}
	p.serve(w, r, rt, up)
}

// registryURL maps containerd's ns parameter to a base URL.
func (m *Mirror) registryURL(ns string) (*url.URL, error) {
	raw, ok := m.Registries[ns]
	if !ok {
		if ns == "docker.io" || ns == "index.docker.io" {
			raw = DockerHub
		} else {
			raw = "https://" + ns
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("not a registry URL: %q", raw)
	}
	return u, nil
}

func isDockerHub(host string) bool {
	switch strings.ToLower(host) {
	case "registry-1.docker.io", "docker.io", "index.docker.io":
		return true
	}
	return false
}

// mirrorTransport returns the authenticating transport for pulls of repo
// from base (go-containerregistry's ping + token flow), cached per
// registry and repository.
func (p *Proxy) mirrorTransport(r *http.Request, base *url.URL, repo string, isDefault bool) (http.RoundTripper, error) {
	m := p.Mirror
	k := base.String() + "|" + repo
	m.mu.Lock()
	tr, ok := m.transports[k]
	m.mu.Unlock()
	if ok {
		return tr, nil
	}
	var opts []name.Option
	if base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(base.Host, opts...)
	if err != nil {
		return nil, err
	}
	auth := authn.Anonymous
	if isDefault && m.Username != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: m.Username, Password: m.Password})
	}
	scope := name.Repository{}.Scope(transport.PullScope)
	if rr, err := name.NewRepository(base.Host+"/"+repo, opts...); err == nil {
		scope = rr.Scope(transport.PullScope)
	}
	tr, err = transport.NewWithContext(r.Context(), reg, auth, p.transport, []string{scope})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.transports == nil {
		m.transports = make(map[string]http.RoundTripper)
	}
	if len(m.transports) >= maxMirrorTransports {
		for old := range m.transports {
			delete(m.transports, old)
			break
		}
	}
	m.transports[k] = tr
	m.mu.Unlock()
	return tr, nil
}
