package proxy

import (
	"net/url"
	"testing"
)

// TestUpstreamRepo: record names map back to where a fetcher reads them,
// as serveMirror maps requests to records.
func TestUpstreamRepo(t *testing.T) {
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	mirror := &Mirror{Registries: map[string]string{"quay": "https://quay.io", "local": "http://127.0.0.1:5999"}}
	cases := []struct {
		name    string
		p       *Proxy
		repo    string
		base    string
		want    string
		isDef   bool
		wantErr bool
	}{
		{"upstream passes names", &Proxy{Upstream: u("https://reg.example")}, "team/app", "https://reg.example", "team/app", true, false},
		{"upstream one-name", &Proxy{Upstream: u("http://127.0.0.1:5000")}, "app", "http://127.0.0.1:5000", "app", true, false},
		{"no upstream", &Proxy{}, "app", "", "", false, true},
		{"hub library", &Proxy{Mirror: mirror}, "library/alpine", DockerHub, "library/alpine", true, false},
		{"hub one-name", &Proxy{Mirror: mirror}, "alpine", DockerHub, "library/alpine", true, false},
		{"hub org", &Proxy{Mirror: mirror}, "bitnami/redis", DockerHub, "bitnami/redis", true, false},
		{"ns host", &Proxy{Mirror: mirror}, "ghcr.io/org/app", "https://ghcr.io", "org/app", false, false},
		{"ns configured", &Proxy{Mirror: mirror}, "quay/org/app", "https://quay.io", "org/app", false, false},
		{"ns port", &Proxy{Mirror: mirror}, "local/x", "http://127.0.0.1:5999", "x", false, false},
		{"ns equal to default", &Proxy{Upstream: u("https://ghcr.io"), Mirror: mirror}, "org/app", "https://ghcr.io", "org/app", true, false},
		{"ns docker.io", &Proxy{Upstream: u("https://ghcr.io"), Mirror: mirror}, "docker.io/library/alpine", DockerHub, "library/alpine", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, repo, isDef, err := c.p.UpstreamRepo(c.repo)
			if c.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %v %q", base, repo)
				}
				return
			}
			if err != nil || base.String() != c.base || repo != c.want || isDef != c.isDef {
				t.Fatalf("UpstreamRepo(%q) = %v %q %v %v; want %s %q %v", c.repo, base, repo, isDef, err, c.base, c.want, c.isDef)
			}
		})
	}
}
