package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestScanPyPINameCase: `tollgate scan` of an image whose dist-info says
// `Name: Jinja2` reports the advisory osv.dev files under "jinja2", and
// shows the name as found.
func TestScanPyPINameCase(t *testing.T) {
	data, feed := t.TempDir(), t.TempDir()
	osv := `{"id":"GHSA-462w-v97r-4m45","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2019-10906"],
"affected":[{"package":{"ecosystem":"PyPI","name":"jinja2"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.10.1"}]}]}]}`
	if err := os.WriteFile(filepath.Join(feed, "GHSA-462w-v97r-4m45.json"), []byte(osv), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "--data-dir", data, "--log-level", "error", "db", "import", feed); err != nil {
		t.Fatal(err)
	}
	layer := warnTarLayer(t, map[string]string{
		"usr/lib/python3/site-packages/Jinja2-2.10.dist-info/METADATA": "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n\n"})
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var img2 v1.Image
	if img2, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img2, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "py"})); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(t, "scan", "--data-dir", data, "--log-level", "error", "--format", "json", "oci:"+dir+":py")
	if err != nil {
		t.Fatalf("scan: %v\n%s", err, stderr)
	}
	var rep struct {
		Images []struct {
			Findings []struct {
				VulnerabilityID string `json:"vulnerabilityId"`
				Package         struct{ Name string }
			} `json:"findings"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Images) != 1 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	fs := rep.Images[0].Findings
	if len(fs) != 1 || fs[0].VulnerabilityID != "CVE-2019-10906" || fs[0].Package.Name != "Jinja2" {
		t.Fatalf("findings %+v, want CVE-2019-10906 for Jinja2", fs)
	}
}
