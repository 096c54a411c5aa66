package admin

import (
	"bytes"
	"errors"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

// SBOMHandler serves GET /v1/sbom?image=<repo>@<digest>|<repo>:<tag>&format=cyclonedx|spdx:
// the image's SBOM as CycloneDX 1.4 JSON or SPDX 2.3 JSON, for the CLI
// (`tollgate sbom`); CreateSbomExport writes the same documents to
// SBOMDir. Errors are {"message"} with 400 (bad request) or 404 (unknown
// image or no inventory yet). Mount it behind Auth.Wrap.
func (a *API) SBOMHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.o.SBOM == nil || a.o.Images == nil {
			writeServerJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "SBOMs are not available"})
			return
		}
		format := map[string]string{"cyclonedx": "CYCLONEDX_1_4", "spdx": "SPDX_2_3", "": "CYCLONEDX_1_4"}[r.URL.Query().Get("format")]
		if format == "" {
			writeServerJSON(w, http.StatusBadRequest, map[string]string{"message": "format: want cyclonedx or spdx"})
			return
		}
		repo, d, err := a.resolveImageRef(r, r.URL.Query().Get("image"))
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, index.ErrNotFound) {
				status = http.StatusNotFound
			}
			writeServerJSON(w, status, map[string]string{"message": err.Error()})
			return
		}
		var buf bytes.Buffer
		if err := a.o.SBOM.WriteSBOM(r.Context(), repo, d, format, &buf); err != nil {
			if errors.Is(err, index.ErrNotFound) {
				writeServerJSON(w, http.StatusNotFound, map[string]string{"message": "no inventory for " + d.String() + " yet"})
				return
			}
			a.log.Error().Err(err).Str("repo", repo).Str("digest", d.String()).Msg("sbom")
			writeServerJSON(w, http.StatusInternalServerError, map[string]string{"message": "internal error"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(buf.Bytes())
	})
}

// resolveImageRef resolves "repo@sha256:…" or "repo[:tag]" (default tag
// latest) through the image records.
func (a *API) resolveImageRef(r *http.Request, ref string) (string, digest.Digest, error) {
	repo, tag, d := ParseImageRef(ref)
	if repo == "" {
		return "", "", errors.New("image: want repo@sha256:… or repo:tag")
	}
	imgs, err := a.repoImages(r.Context(), repo)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "RepositoryNotFoundException" {
			return "", "", errors.Join(errors.New(ae.Message), index.ErrNotFound)
		}
		return "", "", err
	}
	for _, im := range imgs {
		if (d != "" && im.rec.Digest == d) || (d == "" && containsStr(im.ri.Tags, tag)) {
			return repo, im.rec.Digest, nil
		}
	}
	return "", "", errors.Join(errors.New("no image "+ref), index.ErrNotFound)
}

// ParseImageRef splits "repo@sha256:…", "repo:tag" or "repo" (tag
// "latest"); repo is "" when ref is unusable.
func ParseImageRef(ref string) (repo, tag string, d digest.Digest) {
	if r, dg, ok := strings.Cut(ref, "@"); ok {
		if digest.Digest(dg).Validate() != nil {
			return "", "", ""
		}
		if i := strings.LastIndexByte(r, ':'); i > strings.LastIndexByte(r, '/') {
			r = r[:i] // repo:tag@digest: the digest wins
		}
		return r, "", digest.Digest(dg)
	}
	tag = "latest"
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref, tag = ref[:i], ref[i+1:]
	}
	if ref == "" || tag == "" {
		return "", "", ""
	}
	return ref, tag, ""
}
