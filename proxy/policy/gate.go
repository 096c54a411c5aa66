package policy

import (
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/proxy"
)

// Index media types whose children are evaluated.
const (
	mediaTypeOCIIndex     = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	attestationAnnotation = "vnd.docker.reference.type"
)

// Admit implements proxy.Gate: it evaluates the pull of desc from repo and
// returns a *proxy.DeniedError (403 DENIED) naming the findings and how to
// see them when the policy refuses it. When evaluation itself fails (a
// lookup error), a rule with FailOpen serves the image (the error is
// returned, which the proxy logs and serves) and a fail-closed rule refuses.
func (p *Policy) Admit(ctx context.Context, repo string, desc proxy.ManifestInfo) error {
	rule := p.Rule(repo)
	if rule == nil {
		return nil
	}
	d, err := p.Evaluate(ctx, repo, desc.Digest, Children(desc.MediaType, desc.Manifest))
	if err != nil {
		p.decided("error")
		if rule.FailOpen {
			return err
		}
		p.log.Error().Err(err).Str("repo", repo).Str("digest", desc.Digest.String()).Msg("pull policy evaluation failed; refusing (fail-closed)")
		return &proxy.DeniedError{Message: "the pull policy for " + repo + " could not be evaluated; retry later"}
	}
	if !d.Allowed {
		p.decided("denied")
		p.log.Info().Str("repo", repo).Str("digest", desc.Digest.String()).Msg(d.Message)
		return &proxy.DeniedError{Message: d.Message}
	}
	p.decided("allowed")
	return nil
}

func (p *Policy) decided(s string) {
	if p.o.Metrics != nil {
		p.o.Metrics.PolicyDecision(s)
	}
}

// indexManifest is the part of an OCI image index / Docker manifest list
// the policy reads.
type indexManifest struct {
	MediaType string `json:"mediaType"`
	Manifests []struct {
		Digest      digest.Digest     `json:"digest"`
		Annotations map[string]string `json:"annotations"`
		Platform    *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
		} `json:"platform"`
	} `json:"manifests"`
}

// Children returns the image manifests an image index (OCI index or Docker
// manifest list, by mediaType or, when mediaType is empty, by the body's
// own mediaType or manifests field) names, skipping attestation manifests
// (buildx's unknown/unknown entries); nil for anything else or an
// unparsable body. body is untrusted.
func Children(mediaType string, body []byte) []digest.Digest {
	if mediaType != "" && mediaType != mediaTypeOCIIndex && mediaType != mediaTypeDockerList {
		return nil
	}
	var ix indexManifest
	if err := json.Unmarshal(body, &ix); err != nil {
		return nil
	}
	if mediaType == "" && ix.MediaType != "" && ix.MediaType != mediaTypeOCIIndex && ix.MediaType != mediaTypeDockerList {
		return nil
	}
	var out []digest.Digest
	for _, m := range ix.Manifests {
		if m.Digest.Validate() != nil {
			continue
		}
		if m.Annotations[attestationAnnotation] == "attestation-manifest" {
			continue
		}
		if m.Platform != nil && m.Platform.OS == "unknown" && m.Platform.Architecture == "unknown" {
			continue
		}
		out = append(out, m.Digest)
	}
	return out
}
