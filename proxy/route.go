package proxy

import (
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// routeKind names the distribution-spec endpoint a request addresses
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#endpoints).
type routeKind int

const (
	routeUnknown   routeKind = iota
	routeBase                // /v2/
	routeCatalog             // /v2/_catalog
	routeTags                // /v2/<name>/tags/list
	routeManifest            // /v2/<name>/manifests/<reference>
	routeBlob                // /v2/<name>/blobs/<digest>
	routeUploads             // /v2/<name>/blobs/uploads/ (start)
	routeUpload              // /v2/<name>/blobs/uploads/<session>
	routeReferrers           // /v2/<name>/referrers/<digest>
)

func (k routeKind) String() string {
	return [...]string{"unknown", "base", "catalog", "tags", "manifest", "blob", "uploads", "upload", "referrers"}[k]
}

// route is a parsed /v2/ path.
type route struct {
	kind routeKind
	repo string // repository name
	ref  string // manifest reference (tag or digest), blob digest, or upload session id
}

// nameRe is the spec's repository name grammar.
var nameRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// tagRe is the spec's tag grammar.
var tagRe = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// parseRoute splits a request path (already unescaped) into a route. The
// repository name is everything between /v2/ and the last endpoint suffix,
// as in distribution's router; an invalid name yields routeUnknown with
// repo set so the caller can answer NAME_INVALID.
func parseRoute(path string) route {
	switch path {
	case "/v2", "/v2/":
		return route{kind: routeBase}
	case "/v2/_catalog":
		return route{kind: routeCatalog}
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}
	}
	var r route
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		r = route{kind: routeTags, repo: strings.TrimSuffix(rest, "/tags/list")}
	case strings.HasSuffix(rest, "/blobs/uploads/"):
		r = route{kind: routeUploads, repo: strings.TrimSuffix(rest, "/blobs/uploads/")}
	case strings.HasSuffix(rest, "/blobs/uploads"):
		r = route{kind: routeUploads, repo: strings.TrimSuffix(rest, "/blobs/uploads")}
	default:
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return route{}
		}
		head, last := rest[:i], rest[i+1:]
		j := strings.LastIndexByte(head, '/')
		if j < 0 || last == "" {
			return route{}
		}
		repo, verb := head[:j], head[j+1:]
		switch verb {
		case "manifests":
			r = route{kind: routeManifest, repo: repo, ref: last}
		case "referrers":
			r = route{kind: routeReferrers, repo: repo, ref: last}
		case "blobs":
			r = route{kind: routeBlob, repo: repo, ref: last}
		case "uploads":
			if !strings.HasSuffix(repo, "/blobs") {
				return route{}
			}
			r = route{kind: routeUpload, repo: strings.TrimSuffix(repo, "/blobs"), ref: last}
		default:
			return route{}
		}
	}
	if !nameRe.MatchString(r.repo) || len(r.repo) > 255 {
		return route{kind: routeUnknown, repo: r.repo}
	}
	return r
}

// refDigest returns the reference as a digest when it is one.
func (r route) refDigest() (digest.Digest, bool) {
	if !strings.Contains(r.ref, ":") {
		return "", false
	}
	return digest.Digest(r.ref), true
}

// tag returns the reference when it is a tag.
func (r route) tag() string {
	if strings.Contains(r.ref, ":") {
		return ""
	}
	return r.ref
}
