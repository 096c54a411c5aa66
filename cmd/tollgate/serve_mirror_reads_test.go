package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/config"
)

// blobCounter is an upstream registry counting blob GETs per digest.
type blobCounter struct {
	mu   sync.Mutex
	gets map[digest.Digest]int
}

func (c *blobCounter) count(d digest.Digest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[d]
}

func newCountingUpstream(t *testing.T) (*httptest.Server, *blobCounter) {
	t.Helper()
	c := &blobCounter{gets: map[digest.Digest]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, d, ok := strings.Cut(r.URL.Path, "/blobs/"); ok && r.Method == http.MethodGet && strings.HasPrefix(d, "sha256:") {
			c.mu.Lock()
			c.gets[digest.Digest(d)]++
			c.mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, c
}

// TestMirrorFirstPullReadsEachLayerOnce: the first pull of an image through
// the mirror reads its layer from the upstream once — with a pull policy
// (the image is scanned before the manifest is answered) and without (the
// layer is analysed as the client pulls it) — and the image ends scanned.
func TestMirrorFirstPullReadsEachLayerOnce(t *testing.T) {
	for _, withPolicy := range []bool{false, true} {
		name := "no policy"
		if withPolicy {
			name = "pull policy"
		}
		t.Run(name, func(t *testing.T) {
			up, counter := newCountingUpstream(t)
			img, layer := apkImage(t, "musl 1.2.4-r1")
			upRef, err := nameRef(strings.TrimPrefix(up.URL, "http://") + "/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(upRef, img); err != nil {
				t.Fatal(err)
			}
			e := startScanEnv(t, func(c *config.Config) {
				c.Upstream.Mirror, c.Upstream.URL = true, up.URL
				if withPolicy {
					c.Policy = []config.PullPolicy{{RepositoryFilter: "*", Severity: "CRITICAL", ScanTimeout: 20 * time.Second}}
				}
			})
			start := time.Now()
			ref, err := nameRef(e.host + "/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			pulled, err := remote.Image(ref)
			if err != nil {
				t.Fatalf("pull through the mirror: %v", err)
			}
			ls, err := pulled.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatal(err)
				}
				_ = rc.Close()
			}
			d, _ := img.Digest()
			e.scanned(t, digest.Digest(d.String()), start.Add(-time.Second))
			if n := counter.count(layer); n != 1 {
				t.Errorf("layer %s read %d times from the upstream on the first pull, want 1", layer, n)
			}
		})
	}
}

func nameRef(s string) (name.Reference, error) { return name.ParseReference(s, name.Insecure) }
