package index

import (
	"encoding/json"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// parsedManifest is the part of an OCI image manifest / index (or Docker
// schema 2 manifest / manifest list) the records need.
type parsedManifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *descriptor       `json:"config"`
	Layers       []descriptor      `json:"layers"`
	Manifests    []descriptor      `json:"manifests"`
	Subject      *descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Platform  *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

func (d descriptor) platform() scan.Platform {
	if d.Platform == nil {
		return scan.Platform{}
	}
	return scan.Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}
}

// parseManifest returns nil when b is not a JSON manifest object.
func parseManifest(b []byte) *parsedManifest {
	var m parsedManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil
	}
	return &m
}

func (m *parsedManifest) isIndex() bool {
	switch m.MediaType {
	case "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return m.MediaType == "" && len(m.Manifests) > 0
}

// imageSize is the size of an image manifest's config and layers; 0 for an
// index or a manifest without a config.
func (m *parsedManifest) imageSize() int64 {
	if m.isIndex() || m.Config == nil {
		return 0
	}
	n := max(m.Config.Size, 0)
	for _, l := range m.Layers {
		n += max(l.Size, 0)
	}
	return n
}

func (m *parsedManifest) subject() digest.Digest {
	if m.Subject == nil || m.Subject.Digest.Validate() != nil {
		return ""
	}
	return m.Subject.Digest
}
