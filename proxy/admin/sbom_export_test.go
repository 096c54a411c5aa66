package admin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/inspector2"
	"github.com/aws/aws-sdk-go-v2/service/inspector2/types"
	"github.com/opencontainers/go-digest"
	"github.com/package-url/packageurl-go"
	"github.com/rs/zerolog"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
	"github.com/xeipuuv/gojsonschema"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

type imageFindingsMap map[digest.Digest][]scan.Finding

func (m imageFindingsMap) ForImage(_ context.Context, d digest.Digest) ([]scan.Finding, error) {
	return m[d], nil
}

// exportedSBOM runs CreateSbomExport in format for repository "base"
// (one image, dgst(3)) through the SDK, waits for SUCCEEDED and returns
// the one file written.
func exportedSBOM(t *testing.T, c *inspector2.Client, dir string, format types.SbomReportFormat) []byte {
	t.Helper()
	se, err := c.CreateSbomExport(context.Background(), &inspector2.CreateSbomExportInput{ReportFormat: format,
		S3Destination: &types.Destination{BucketName: aws.String("ignored"), KmsKeyArn: aws.String("ignored")},
		ResourceFilterCriteria: &types.ResourceFilterCriteria{EcrRepositoryName: []types.ResourceStringFilter{
			{Comparison: types.ResourceStringComparisonEquals, Value: aws.String("base")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := awaitSbomExport(t, c, se.ReportId); st.Status != types.ExternalReportStatusSucceeded {
		t.Fatalf("%s export: %+v", format, st)
	}
	files, _ := filepath.Glob(filepath.Join(dir, aws.ToString(se.ReportId), "*.json"))
	if len(files) != 1 {
		t.Fatalf("%s export files: %v", format, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cycloneDXSchema compiles the CycloneDX 1.4 JSON schema that
// github.com/CycloneDX/cyclonedx-go ships (in the module cache), offline:
// the SPDX license and JSF schemas it refers to by URL are loaded from
// there too.
func cycloneDXSchema(t *testing.T) *gojsonschema.Schema {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go").Output()
	if err != nil {
		t.Fatalf("locate cyclonedx-go's schemas: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "schema")
	file := func(name string) gojsonschema.JSONLoader {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CycloneDX schema: %v", err)
		}
		return gojsonschema.NewReferenceLoader("file://" + filepath.ToSlash(p))
	}
	sl := gojsonschema.NewSchemaLoader()
	for id, name := range map[string]string{"spdx.schema.json": "spdx.schema.json", "jsf-0.82.schema.json": "jsf-0.82.schemax.json"} {
		if err := sl.AddSchema("http://cyclonedx.org/schema/"+id, file(name)); err != nil {
			t.Fatal(err)
		}
	}
	schema, err := sl.Compile(file("bom-1.4.schema.json"))
	if err != nil {
		t.Fatalf("compile the CycloneDX 1.4 schema: %v", err)
	}
	return schema
}

// TestSDKSbomExportDocumentsValidate: the exports a user downloads are
// valid documents of the formats they asked for. CYCLONEDX_1_4 decodes with
// cyclonedx-go, validates against the CycloneDX 1.4 JSON schema, lists the
// packages with parseable purls and the image's finding as a vulnerability
// affecting its package; SPDX_2_3 parses with spdx/tools-golang as SPDX-2.3,
// its relationships resolve and it describes the image, which contains the
// packages (purl external references).
func TestSDKSbomExportDocumentsValidate(t *testing.T) {
	s := newFakeStore()
	seed(s)
	db, err := index.Open(t.TempDir(), index.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	img, layer := dgst(3), digest.FromString("layer")
	ssl := scan.Package{Name: "libssl3", Version: "3.0.11-1~deb12u2", Ecosystem: "Debian:12", Kind: scan.KindOS,
		SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u2", PURL: "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
		Layer: layer, Path: "var/lib/dpkg/status"}
	lodash := scan.Package{Name: "lodash", Version: "4.17.15", Ecosystem: "npm", Kind: scan.KindLang, PURL: "pkg:npm/lodash@4.17.15",
		Layer: layer, Path: "app/node_modules/lodash/package.json", Licenses: []string{"MIT"}}
	invs := index.NewInventories(db)
	if err := invs.PutImage(ctx, &scan.Inventory{Image: img, Platform: scan.Platform{OS: "linux", Architecture: "amd64"},
		OS: &scan.OSRelease{ID: "debian", VersionID: "12"}, Packages: []scan.Package{ssl, lodash}}); err != nil {
		t.Fatal(err)
	}
	fs := imageFindingsMap{img: {{ID: "f-ssl", Image: img, VulnerabilityID: "CVE-2024-0001", AdvisoryID: "DEBIAN-CVE-2024-0001",
		Title: "CVE-2024-0001 in libssl3", Severity: scan.SeverityHigh, Status: scan.FindingActive, Package: ssl,
		FixedVersions: []string{"3.0.15-1~deb12u1"}, CVSS: []scan.CVSS{{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", BaseScore: 7.5}}}}}
	dir := t.TempDir()
	api := NewAPI(APIOptions{Findings: s, Images: s, Coverage: s, Filters: index.NewFilters(db),
		SBOM: SBOMs{Inventories: invs, Findings: fs, ToolVersion: "test"}, SBOMDir: dir, Logger: zerolog.Nop()})
	runExports(t, api)
	c := inspectorClient(newTestServer(t, api).URL, testKeyID, testSecret)

	// CycloneDX 1.4.
	raw := exportedSBOM(t, c, dir, types.SbomReportFormatCyclonedx14)
	schema := cycloneDXSchema(t)
	res, err := schema.Validate(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid() {
		t.Fatalf("CycloneDX export does not validate against bom-1.4.schema.json: %v", res.Errors())
	}
	// The schema does reject what 1.4 does not allow (a 1.6-only component type).
	bad := strings.Replace(string(raw), `"type": "library"`, `"type": "cryptographic-asset"`, 1)
	if res, err := schema.Validate(gojsonschema.NewStringLoader(bad)); err != nil || res.Valid() {
		t.Fatalf("a component type CycloneDX 1.4 does not know validated: %v", err)
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(string(raw)), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != cdx.SpecVersion1_4 {
		t.Fatalf("bomFormat %q specVersion %v, want CycloneDX 1.4", bom.BOMFormat, bom.SpecVersion)
	}
	purls := map[string]string{} // bom-ref → purl
	for _, comp := range *bom.Components {
		if comp.Type != cdx.ComponentTypeLibrary {
			continue
		}
		if _, err := packageurl.FromString(comp.PackageURL); err != nil {
			t.Errorf("component %s: purl %q: %v", comp.Name, comp.PackageURL, err)
		}
		purls[comp.BOMRef] = comp.PackageURL
	}
	if len(purls) != 2 || !containsStr(mapValues(purls), ssl.PURL) || !containsStr(mapValues(purls), lodash.PURL) {
		t.Fatalf("library components: %v", purls)
	}
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) != 1 {
		t.Fatalf("vulnerabilities: %+v", bom.Vulnerabilities)
	}
	v := (*bom.Vulnerabilities)[0]
	if v.ID != "CVE-2024-0001" || v.Affects == nil || len(*v.Affects) != 1 || purls[(*v.Affects)[0].Ref] != ssl.PURL {
		t.Fatalf("vulnerability %+v affects %+v", v, v.Affects)
	}
	if v.Ratings == nil || len(*v.Ratings) == 0 || (*v.Ratings)[0].Severity != cdx.SeverityHigh {
		t.Fatalf("vulnerability ratings %+v", v.Ratings)
	}

	// SPDX 2.3.
	doc, err := spdxjson.Read(strings.NewReader(string(exportedSBOM(t, c, dir, types.SbomReportFormatSpdx23))))
	if err != nil {
		t.Fatalf("SPDX export does not parse: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.DocumentNamespace == "" || doc.CreationInfo == nil {
		t.Fatalf("SPDX header: %+v", doc)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("SPDX export: %v", err)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 {
		t.Fatalf("described packages %v %v", described, err)
	}
	var spdxPurls []string
	for _, p := range doc.Packages {
		for _, ref := range p.PackageExternalReferences {
			if ref.RefType == "purl" {
				spdxPurls = append(spdxPurls, ref.Locator)
			}
		}
	}
	if len(spdxPurls) != 2 || !containsStr(spdxPurls, ssl.PURL) || !containsStr(spdxPurls, lodash.PURL) {
		t.Fatalf("SPDX purls: %v", spdxPurls)
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
