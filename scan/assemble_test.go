package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// memBlobs is a BlobFetcher over a map that counts fetches per digest.
type memBlobs struct {
	mu      sync.Mutex
	blobs   map[digest.Digest][]byte
	fetches map[digest.Digest]int
}

func (m *memBlobs) put(b []byte) digest.Digest {
	d := digest.FromBytes(b)
	if m.blobs == nil {
		m.blobs, m.fetches = map[digest.Digest][]byte{}, map[digest.Digest]int{}
	}
	m.blobs[d] = b
	return d
}

func (m *memBlobs) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetches[d]++
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: not found", d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type desc struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
}

func manifest(t *testing.T, m *memBlobs, configMT string, config []byte, layers ...desc) []byte {
	cd := m.put(config)
	b, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc{MediaType: configMT, Digest: cd, Size: int64(len(config))},
		"layers":        layers,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func layerDesc(m *memBlobs, mt string, b []byte) desc {
	return desc{MediaType: mt, Digest: m.put(b), Size: int64(len(b))}
}

// memCache is a LayerCache in memory.
type memCache struct {
	mu sync.Mutex
	m  map[string]*scan.LayerInventory
}

func (c *memCache) GetLayer(ctx context.Context, d digest.Digest, av string) (*scan.LayerInventory, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if li, ok := c.m[d.String()+av]; ok {
		return li, nil
	}
	return nil, errors.New("not cached")
}

func (c *memCache) PutLayer(ctx context.Context, li *scan.LayerInventory) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*scan.LayerInventory{}
	}
	c.m[li.Digest.String()+li.AnalyzersVersion] = li
	return nil
}

const ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
const ociConfig = "application/vnd.oci.image.config.v1+json"

func TestAssemble(t *testing.T) {
	ctx := context.Background()
	m := &memBlobs{}
	base := gz(t, mkTar(t,
		entry{name: "etc/os-release", body: "ID=debian\nVERSION_ID=12\n"},
		entry{name: "var/lib/dpkg/status", body: dpkgStatus},
	))
	top := mkTar(t, entry{name: "app/node_modules/x/package.json", body: `{"name":"x","version":"1.0.0"}`})
	cfg := []byte(`{"architecture":"arm64","variant":"v8","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}]}`)
	cache := &memCache{}
	a := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), Cache: cache})

	sig := layerDesc(m, "application/vnd.dev.cosign.simplesigning.v1+json", []byte(`{"critical":{}}`))
	// The second layer claims gzip but is a plain tar: recorded, still analysed.
	body := manifest(t, m, ociConfig, cfg, layerDesc(m, ociLayerGzip, base), layerDesc(m, ociLayerGzip, top), sig)
	invs, err := a.Assemble(ctx, "repo/a", m, body, "")
	if err != nil || len(invs) != 1 {
		t.Fatalf("assemble: %v", err)
	}
	inv := invs[0]
	if inv.Image != digest.FromBytes(body) || inv.Platform.String() != "linux/arm64/v8" || len(inv.Layers) != 2 {
		t.Errorf("image %s platform %s layers %d", inv.Image, inv.Platform, len(inv.Layers))
	}
	if len(inv.Packages) != 3 || inv.Packages[0].Ecosystem != "Debian:12" {
		t.Errorf("packages %+v", inv.Packages)
	}
	mismatch := false
	for _, e := range inv.Errors {
		mismatch = mismatch || e.Reason == scan.ReasonUnsupportedMediaType
	}
	if !mismatch {
		t.Errorf("compression/media type mismatch not reported: %+v", inv.Errors)
	}
	if m.fetches[sig.Digest] != 0 {
		t.Error("a signature layer was fetched")
	}
	// Another repository's image sharing the base layer reads it from the cache.
	body2 := manifest(t, m, ociConfig, []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers"}}`), layerDesc(m, ociLayerGzip, base))
	if _, err := a.Assemble(ctx, "repo/b", m, body2, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	if n := m.fetches[digest.FromBytes(base)]; n != 1 {
		t.Errorf("shared layer fetched %d times, want once", n)
	}
}

func TestAssembleReasons(t *testing.T) {
	ctx := context.Background()
	m := &memBlobs{}
	a := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{})})
	layer := layerDesc(m, ociLayerGzip, gz(t, mkTar(t, entry{name: "a", body: "b"})))
	for _, tc := range []struct {
		name   string
		body   []byte
		mt     string
		reason scan.Reason
	}{
		{"unknown manifest media type", []byte(`{}`), "application/vnd.example.thing", scan.ReasonUnsupportedMediaType},
		{"artifact config", manifest(t, m, "application/vnd.cncf.helm.config.v1+json", []byte(`{}`), layer), "", scan.ReasonUnsupportedMediaType},
		{"unreadable config", manifest(t, m, ociConfig, []byte(`not json`), layer), "", scan.ReasonUnsupportedConfigFile},
		{"artifact layers only", manifest(t, m, ociConfig, []byte(`{"os":"linux"}`), desc{MediaType: "application/vnd.in-toto+json", Digest: digest.FromString("x"), Size: 1}), "", scan.ReasonUnsupportedMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Assemble(ctx, "r", m, tc.body, tc.mt)
			var re *scan.ReasonError
			if !errors.As(err, &re) || re.Reason != tc.reason {
				t.Fatalf("err %v, want %s", err, tc.reason)
			}
		})
	}
	// A layer that cannot be fetched is an error to retry, not a reason.
	body := manifest(t, m, ociConfig, []byte(`{"os":"linux"}`), desc{MediaType: ociLayerGzip, Digest: digest.FromString("missing"), Size: 1})
	_, err := a.Assemble(ctx, "r", m, body, "")
	var re *scan.ReasonError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("missing layer: %v", err)
	}
}

// Layers walked side by side (tollgate scan) give the same image as layers
// walked one by one: merge order is the manifest's, whatever finishes first;
// a layer that cannot be fetched fails the image with its own error, not the
// cancellation of the layers beside it.
func TestAssembleLayerConcurrency(t *testing.T) {
	ctx := context.Background()
	m := &memBlobs{}
	pj := func(v string) string { return `{"name":"x","version":"` + v + `"}` }
	ls := []desc{
		layerDesc(m, ociLayerGzip, gz(t, mkTar(t,
			entry{name: "etc/os-release", body: "ID=debian\nVERSION_ID=12\n"},
			entry{name: "var/lib/dpkg/status", body: dpkgStatus},
			entry{name: "big", body: string(bytes.Repeat([]byte("0123456789abcdef"), 1<<16))},
		))),
		layerDesc(m, ociLayerGzip, gz(t, mkTar(t, entry{name: "app/node_modules/x/package.json", body: pj("1.0.0")}))),
		layerDesc(m, ociLayerGzip, gz(t, mkTar(t, entry{name: "app/node_modules/x/package.json", body: pj("2.0.0")}))),
		layerDesc(m, ociLayerGzip, gz(t, mkTar(t, entry{name: "var/lib/dpkg/.wh.status"}))),
	}
	cfg := []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers"}}`)
	body := manifest(t, m, ociConfig, cfg, ls...)
	list := func(n int) string {
		a := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), LayerConcurrency: n})
		invs, err := a.Assemble(ctx, "r", m, body, "")
		if err != nil || len(invs) != 1 {
			t.Fatalf("concurrency %d: %v", n, err)
		}
		var s []string
		for _, p := range invs[0].Packages {
			s = append(s, p.Name+"@"+p.Version+"@"+p.Layer.String()[7:19])
		}
		return fmt.Sprint(s, invs[0].Layers, invs[0].OS)
	}
	one := list(1)
	if want := fmt.Sprintf("[x@2.0.0@%s]", ls[2].Digest.String()[7:19]); !bytes.HasPrefix([]byte(one), []byte(want)) {
		t.Fatalf("sequential: %s, want %s…", one, want)
	}
	for _, n := range []int{2, 4, 8} {
		if got := list(n); got != one {
			t.Errorf("concurrency %d: %s, want %s", n, got, one)
		}
	}
	missing := desc{MediaType: ociLayerGzip, Digest: digest.FromString("missing"), Size: 1}
	body = manifest(t, m, ociConfig, cfg, ls[0], missing, ls[1], ls[2])
	a := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzer.Default(analyzer.Options{}), LayerConcurrency: 4})
	if _, err := a.Assemble(ctx, "r", m, body, ""); err == nil || errors.Is(err, context.Canceled) || !bytes.Contains([]byte(err.Error()), []byte("not found")) {
		t.Fatalf("missing layer: %v", err)
	}
}
