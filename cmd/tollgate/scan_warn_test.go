package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func warnTarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestScanWarnsAboutWhatItCouldNotCover: a corrupt layer and an OS without
// advisory source are warned about on stderr (per layer error, naming the
// layer) and reported in the JSON scanStatus; the exit status stays 0.
func TestScanWarnsAboutWhatItCouldNotCover(t *testing.T) {
	garbage := static.NewLayer([]byte("garbage bytes, not a gzip stream nor a tar"), types.OCILayer)
	bad, _ := garbage.Digest()
	app := warnTarLayer(t, map[string]string{"app/node_modules/lodash/package.json": `{"name":"lodash","version":"4.17.15"}`})
	arch := warnTarLayer(t, map[string]string{"etc/os-release": "ID=arch\nNAME=\"Arch Linux\"\n"})
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for tag, ls := range map[string][]v1.Layer{"corrupt": {app, garbage}, "arch": {arch, app}} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err := mutate.AppendLayers(img, ls...)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
			t.Fatal(err)
		}
	}
	scanCLI := func(args ...string) (string, string) {
		t.Helper()
		var out, errw bytes.Buffer
		root := newRootCmd(&out, &errw)
		root.SetArgs(append([]string{"scan", "--data-dir", t.TempDir(), "--log-level", "error"}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("tollgate scan %v: %v (want exit 0)\n%s", args, err, errw.String())
		}
		return out.String(), errw.String()
	}

	out, stderr := scanCLI("oci:" + dir + ":corrupt")
	if !strings.Contains(stderr, "warning: layer "+bad.String()+": CORRUPT_LAYER: ") {
		t.Errorf("no CORRUPT_LAYER warning naming %s on stderr:\n%s", bad, stderr)
	}
	if !strings.Contains(out, "lodash") || strings.Contains(out, "warning") {
		t.Errorf("stdout: packages of the readable layer, no warnings:\n%s", out)
	}
	out, _ = scanCLI("--format", "json", "oci:"+dir+":corrupt")
	var rep struct {
		Images []struct {
			ScanStatus struct{ Reason, Message string } `json:"scanStatus"`
			Errors     []struct{ Layer, Reason string } `json:"errors"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Images) != 1 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	im := rep.Images[0]
	if im.ScanStatus.Reason != "CORRUPT_LAYER" || !strings.Contains(im.ScanStatus.Message, bad.String()) ||
		len(im.Errors) == 0 || im.Errors[0].Layer != bad.String() {
		t.Errorf("json scanStatus %+v errors %+v", im.ScanStatus, im.Errors)
	}

	_, stderr = scanCLI("oci:" + dir + ":arch")
	if !strings.Contains(stderr, "warning: UNSUPPORTED_OS: no advisory source for OS ID=arch") {
		t.Errorf("no UNSUPPORTED_OS warning on stderr:\n%s", stderr)
	}
}
