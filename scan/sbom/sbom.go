// Package sbom renders a scan.Inventory as a software bill of materials:
// CycloneDX 1.6 JSON (github.com/CycloneDX/cyclonedx-go, spec
// https://cyclonedx.org/docs/1.6/json/) and SPDX 2.3 JSON
// (github.com/spdx/tools-golang, spec https://spdx.github.io/spdx-spec/v2.3/).
// Used by `tollgate scan --format` and the admin SBOM export.
package sbom

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/tollgate-registry/tollgate/scan"
)

// Options names the tool and subject of a BOM. The zero value works.
type Options struct {
	ToolVersion string    // default "dev"
	Name        string    // the image reference; default the image digest
	Now         time.Time // creation time; default time.Now
}

func (o Options) defaults(inv *scan.Inventory) Options {
	if o.ToolVersion == "" {
		o.ToolVersion = "dev"
	}
	if o.Name == "" {
		o.Name = inv.Image.String()
	}
	if o.Now.IsZero() {
		o.Now = time.Now().UTC()
	}
	return o
}

// Property names carried by CycloneDX components.
const (
	PropLayer     = "tollgate:layer"     // the layer digest that introduced the package
	PropPath      = "tollgate:path"      // the file the package was found in
	PropEcosystem = "tollgate:ecosystem" // the OSV ecosystem
	PropSource    = "tollgate:source"    // source package name[@version]
	PropAnalyzer  = "tollgate:analyzer"
	PropOSManaged = "tollgate:osManaged"
)

// CycloneDX builds a CycloneDX BOM whose metadata component is the image
// (a container) and whose components are the packages (libraries, with purl
// and the layer digest as property "tollgate:layer") plus the operating system.
func CycloneDX(inv *scan.Inventory, opts Options) *cdx.BOM {
	opts = opts.defaults(inv)
	bom := cdx.NewBOM()
	// CycloneDX wants every BOM to have its own serial number, even one whose
	// contents did not change (https://cyclonedx.org/docs/1.5/json/#serialNumber):
	// a random version-4 UUID.
	bom.SerialNumber = "urn:uuid:" + randomUUID()
	bom.Metadata = &cdx.Metadata{
		Timestamp: opts.Now.Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "tollgate", Version: opts.ToolVersion,
		}}},
		Component: &cdx.Component{
			BOMRef: inv.Image.String(), Type: cdx.ComponentTypeContainer, Name: opts.Name,
			Version: inv.Image.String(),
			Properties: &[]cdx.Property{
				{Name: "tollgate:platform", Value: inv.Platform.String()},
			},
		},
	}
	comps := make([]cdx.Component, 0, len(inv.Packages)+1)
	if inv.OS != nil {
		comps = append(comps, cdx.Component{
			BOMRef: "os:" + inv.OS.ID + "@" + inv.OS.VersionID, Type: cdx.ComponentTypeOS,
			Name: inv.OS.ID, Version: inv.OS.VersionID, Description: inv.OS.PrettyName,
		})
	}
	seen := map[string]int{}
	for _, p := range inv.Packages {
		ref := p.PURL
		if ref == "" {
			ref = p.Ecosystem + "/" + p.Name + "@" + p.Version
		}
		if n := seen[ref]; n > 0 {
			ref = fmt.Sprintf("%s#%d", ref, n)
		}
		seen[ref]++
		props := []cdx.Property{
			{Name: PropLayer, Value: p.Layer.String()},
			{Name: PropPath, Value: p.Path},
			{Name: PropEcosystem, Value: p.Ecosystem},
			{Name: PropAnalyzer, Value: p.Analyzer},
		}
		if p.SourceName != "" && p.Kind == scan.KindOS {
			props = append(props, cdx.Property{Name: PropSource, Value: p.SourceName + "@" + p.SourceVersion})
		}
		if p.OSManaged {
			props = append(props, cdx.Property{Name: PropOSManaged, Value: "true"})
		}
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version,
			PackageURL: p.PURL, Properties: &props}
		if len(p.Licenses) > 0 {
			lc := cdx.Licenses{}
			for _, l := range p.Licenses {
				lc = append(lc, cdx.LicenseChoice{License: &cdx.License{Name: l}})
			}
			c.Licenses = &lc
		}
		comps = append(comps, c)
	}
	bom.Components = &comps
	return bom
}

// WriteCycloneDX writes inv as CycloneDX 1.6 JSON.
func WriteCycloneDX(w io.Writer, inv *scan.Inventory, opts Options) error {
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(CycloneDX(inv, opts), cdx.SpecVersion1_6); err != nil {
		return fmt.Errorf("sbom: cyclonedx: %w", err)
	}
	return nil
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// SPDX builds an SPDX 2.3 document describing the image as one package that
// CONTAINS every found package (purl external references, source info with
// the layer digest).
func SPDX(inv *scan.Inventory, opts Options) *spdx.Document {
	opts = opts.defaults(inv)
	imgID := common.ElementID("Image")
	doc := &spdx.Document{
		SPDXVersion:    spdx.Version,
		DataLicense:    spdx.DataLicense,
		SPDXIdentifier: "DOCUMENT",
		DocumentName:   opts.Name,
		// unique per document, as SPDX 2.3 §6.5 asks
		DocumentNamespace: "https://tollgate.invalid/spdx/" + inv.Image.Encoded() + "/" + strings.ReplaceAll(inv.Platform.String(), "/", "-") + "/" + randomUUID(),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "tollgate-" + opts.ToolVersion}},
			Created:  opts.Now.Format(time.RFC3339),
		},
	}
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName: opts.Name, PackageSPDXIdentifier: imgID, PackageVersion: inv.Image.String(),
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "CONTAINER",
	})
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{
		RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", string(imgID)), Relationship: "DESCRIBES",
	})
	ids := map[string]int{}
	for _, p := range inv.Packages {
		id := "Package-" + spdxIDUnsafe.ReplaceAllString(p.Ecosystem+"-"+p.Name+"-"+p.Version, "-")
		if n := ids[id]; n > 0 {
			ids[id]++
			id = fmt.Sprintf("%s-%d", id, n)
		} else {
			ids[id] = 1
		}
		sp := &spdx.Package{
			PackageName: p.Name, PackageSPDXIdentifier: common.ElementID(id), PackageVersion: p.Version,
			PackageDownloadLocation: "NOASSERTION",
			PackageSourceInfo:       fmt.Sprintf("found in layer %s at /%s", p.Layer, p.Path),
			PackageLicenseConcluded: "NOASSERTION",
			PackageCopyrightText:    "NOASSERTION",
		}
		if len(p.Licenses) > 0 {
			sp.PackageLicenseDeclared = "NOASSERTION"
		}
		if p.PURL != "" {
			sp.PackageExternalReferences = []*spdx.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl", Locator: p.PURL}}
		}
		doc.Packages = append(doc.Packages, sp)
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(imgID)), RefB: common.MakeDocElementID("", id), Relationship: "CONTAINS",
		})
	}
	sort.SliceStable(doc.Packages[1:], func(i, j int) bool {
		return doc.Packages[i+1].PackageSPDXIdentifier < doc.Packages[j+1].PackageSPDXIdentifier
	})
	return doc
}

// WriteSPDX writes inv as SPDX 2.3 JSON.
func WriteSPDX(w io.Writer, inv *scan.Inventory, opts Options) error {
	if err := spdxjson.Write(SPDX(inv, opts), w, spdxjson.Indent("  ")); err != nil {
		return fmt.Errorf("sbom: spdx: %w", err)
	}
	return nil
}

// uuidFrom formats the first 16 bytes of a hex digest as a version-4-shaped UUID.
func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never returns an error (crypto/rand: Go 1.24+)
	return uuidFrom(hex.EncodeToString(b[:]))
}

func uuidFrom(hex string) string {
	if len(hex) < 32 {
		hex += strings.Repeat("0", 32-len(hex))
	}
	b := []byte(hex[:32])
	b[12] = '4'
	b[16] = "89ab"[strings.IndexByte("0123456789abcdef", b[16])%4]
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}
