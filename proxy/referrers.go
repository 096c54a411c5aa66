package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// referrers serves GET /v2/<name>/referrers/<digest>
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers)
// from the ReferrerLister: an image index of the descriptors of manifests
// in the repository whose subject is <digest>, filtered by the
// artifactType query parameter (then OCI-Filters-Applied: artifactType).
// Without a ReferrerLister, and in mirror mode, the request goes upstream.
// With UpstreamReferrers, the upstream is asked first and the index only
// answers when the upstream lacks the API (404 or 405).
func (p *Proxy) referrers(w http.ResponseWriter, r *http.Request, rt route, up upstream) {
	if p.Referrers == nil || up.mirror {
		p.forward(w, r, rt, up)
		return
	}
	if p.UpstreamReferrers {
		resp := p.exchange(r.Context(), w, r, rt, up, nil, 0)
		if resp == nil {
			return
		}
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			defer resp.Body.Close()
			p.relay(w, r, up, resp, nil)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}
	d, ok := rt.refDigest()
	if !ok || d.Validate() != nil {
		WriteError(w, r, errorf(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q", rt.ref))
		return
	}
	at := r.URL.Query().Get("artifactType")
	list, err := p.Referrers.List(r.Context(), up.recordRepo(), d, at)
	if err != nil {
		WriteError(w, r, &Error{Status: http.StatusInternalServerError, Code: CodeUnavailable, Message: "referrers index unavailable", Err: err})
		return
	}
	if list == nil {
		list = []v1.Descriptor{}
	}
	body, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: list,
	})
	if err != nil {
		WriteError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", v1.MediaTypeImageIndex)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	if at != "" {
		h.Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
