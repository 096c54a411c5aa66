package proxy

import (
	"fmt"
	"net/url"
	"strings"
)

// UpstreamRepo maps a repository name as the proxy records it (index
// events, scan jobs) to the registry that holds it and the repository name
// there, for readers that fetch from behind the proxy (the deferred scan's
// blob and manifest fetcher). isDefault reports whether base is
// p.Upstream, whose credentials (Mirror.Username/Password) apply.
//
// Outside mirror mode this is (p.Upstream, repo, true). In mirror mode
// records name "<ns>/<repository>" for containerd's ?ns= registries other
// than p.Upstream, and "library/<name>" for Docker Hub's one-name
// images; the first component is taken for an ns when it names a
// configured Mirror.Registries entry or looks like a host (a dot, a port
// or "localhost"), as Docker's reference normalisation does.
func (p *Proxy) UpstreamRepo(recordRepo string) (base *url.URL, repo string, isDefault bool, err error) {
	def := p.Upstream
	if p.Mirror == nil {
		if def == nil {
			return nil, "", false, fmt.Errorf("proxy: no upstream registry configured")
		}
		return def, recordRepo, true, nil
	}
	if def == nil {
		def, _ = url.Parse(DockerHub)
	}
	base, repo, isDefault = def, recordRepo, true
	if ns, rest, ok := strings.Cut(recordRepo, "/"); ok && rest != "" {
		_, configured := p.Mirror.Registries[ns]
		if configured || strings.ContainsAny(ns, ".:") || ns == "localhost" {
			b, err := p.Mirror.registryURL(ns)
			if err != nil {
				return nil, "", false, fmt.Errorf("proxy: repository %q: %w", recordRepo, err)
			}
			if !strings.EqualFold(b.Host, def.Host) {
				base, repo, isDefault = b, rest, false
			}
		}
	}
	if isDockerHub(base.Host) && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return base, repo, isDefault, nil
}
