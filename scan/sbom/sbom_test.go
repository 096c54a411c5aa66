package sbom

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func inventory() *scan.Inventory {
	l := digest.FromString("layer")
	return &scan.Inventory{
		Image:    digest.FromString("image"),
		Platform: scan.Platform{OS: "linux", Architecture: "amd64"},
		OS:       &scan.OSRelease{ID: "debian", VersionID: "12"},
		Packages: []scan.Package{
			{Name: "libssl3", Version: "3.0.20-1~deb12u2", Ecosystem: "Debian:12", Kind: scan.KindOS, SourceName: "openssl", SourceVersion: "3.0.20-1~deb12u2",
				PURL: "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&distro=debian-12", Layer: l, Path: "var/lib/dpkg/status"},
			{Name: "lodash", Version: "4.17.15", Ecosystem: "npm", Kind: scan.KindLang, PURL: "pkg:npm/lodash@4.17.15", Layer: l, Path: "app/node_modules/lodash/package.json", Licenses: []string{"MIT"}},
			{Name: "lodash", Version: "4.17.15", Ecosystem: "npm", Kind: scan.KindLang, PURL: "pkg:npm/lodash@4.17.15", Layer: l, Path: "other/node_modules/lodash/package.json"},
		},
	}
}

func TestCycloneDX(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, inventory(), Options{Name: "app:1", Now: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component struct{ Type, Name string } `json:"component"`
		} `json:"metadata"`
		Components []struct {
			BOMRef     string `json:"bom-ref"`
			Type       string `json:"type"`
			PURL       string `json:"purl"`
			Properties []struct{ Name, Value string }
		} `json:"components"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SpecVersion != "1.6" || doc.Metadata.Component.Type != "container" || doc.Metadata.Component.Name != "app:1" {
		t.Errorf("header %+v", doc)
	}
	if len(doc.Components) != 4 || doc.Components[0].Type != "operating-system" {
		t.Fatalf("components %+v", doc.Components)
	}
	refs := map[string]bool{}
	for _, c := range doc.Components[1:] {
		if refs[c.BOMRef] {
			t.Errorf("duplicate bom-ref %s", c.BOMRef)
		}
		refs[c.BOMRef] = true
		layer := ""
		for _, p := range c.Properties {
			if p.Name == PropLayer {
				layer = p.Value
			}
		}
		if c.PURL == "" || layer != digest.FromString("layer").String() {
			t.Errorf("component %+v", c)
		}
	}
}

func TestSPDX(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSPDX(&buf, inventory(), Options{}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			SPDXID       string `json:"SPDXID"`
			ExternalRefs []struct {
				ReferenceType    string `json:"referenceType"`
				ReferenceLocator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
		Relationships []struct {
			RelationshipType string `json:"relationshipType"`
		} `json:"relationships"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) != 4 || len(doc.Relationships) != 4 {
		t.Fatalf("%s %d packages %d relationships", doc.SPDXVersion, len(doc.Packages), len(doc.Relationships))
	}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] {
			t.Errorf("duplicate SPDXID %s", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	for _, p := range doc.Packages[1:] {
		if len(p.ExternalRefs) != 1 || p.ExternalRefs[0].ReferenceType != "purl" {
			t.Errorf("package %s refs %+v", p.SPDXID, p.ExternalRefs)
		}
	}
}

// Two documents of the same inventory are two BOMs: CycloneDX wants a
// serial number per BOM and SPDX a namespace per document, so a consumer
// that dedups by them keeps both exports.
func TestDocumentIdentityIsUnique(t *testing.T) {
	id := func(write func(*bytes.Buffer) error, field string) string {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		s, _ := doc[field].(string)
		if s == "" {
			t.Fatalf("no %s in %s", field, buf.String())
		}
		return s
	}
	opts := Options{Name: "app:1", Now: time.Unix(0, 0)}
	cdx := func(b *bytes.Buffer) error { return WriteCycloneDX(b, inventory(), opts) }
	spdx := func(b *bytes.Buffer) error { return WriteSPDX(b, inventory(), opts) }
	if a, b := id(cdx, "serialNumber"), id(cdx, "serialNumber"); a == b {
		t.Errorf("CycloneDX serialNumber repeated: %s", a)
	}
	if a, b := id(spdx, "documentNamespace"), id(spdx, "documentNamespace"); a == b {
		t.Errorf("SPDX documentNamespace repeated: %s", a)
	}
}
