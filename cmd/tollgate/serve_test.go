package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// waitLog blocks until a log line with message msg appears and returns its
// "addr" field.
func (s *syncBuffer) waitLog(t *testing.T, done <-chan error, msg string) string {
	t.Helper()
	re := regexp.MustCompile(`"addr":"([^"]+)"[^\n]*"message":"` + regexp.QuoteMeta(msg) + `"`)
	for {
		s.mu.Lock()
		m := re.FindStringSubmatch(s.b.String())
		s.mu.Unlock()
		if m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before %q: %v\n%s", msg, err, s.b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type running struct {
	reg, admin string
	cancel     context.CancelFunc
	done       chan error
}

func startServe(t *testing.T, dir string) *running {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.AdminListen = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = 10 * time.Second
	cfg.Admin.Token = "t0ken"
	f := false
	cfg.Scan.Enabled = &f
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- runServe(ctx, cfg, zerolog.New(logs)) }()
	r.reg = logs.waitLog(t, r.done, "registry listening")
	r.admin = logs.waitLog(t, r.done, "admin listening")
	return r
}

// stop cancels the serve context (as SIGTERM does) and requires a clean,
// error-free shutdown.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func adminImages(t *testing.T, r *running) []index.ImageRecord {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.admin+"/v1/images", nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/images: %d", resp.StatusCode)
	}
	var page struct{ Images []index.ImageRecord }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return page.Images
}

// TestServeEmbeddedEndToEnd runs `tollgate serve` wiring with no
// configuration beyond ports: push and pull through it, records listed on
// the admin listener, clean shutdown, and the records (and the image)
// still there after a restart on the same data directory.
func TestServeEmbeddedEndToEnd(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, dir)
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + r.admin + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	img, _ := random.Image(2048, 2)
	ref, _ := name.ParseReference(r.reg+"/e2e/app:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if _, err := remote.Image(ref); err != nil {
		t.Fatal(err)
	}
	recs := adminImages(t, r)
	if len(recs) != 1 || recs[0].Digest.String() != want.String() || recs[0].Repo("e2e/app").PullCount != 1 {
		t.Fatalf("records %+v", recs)
	}
	r.stop(t)

	r = startServe(t, dir)
	defer r.stop(t)
	ref, _ = name.ParseReference(r.reg+"/e2e/app:v1", name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatalf("digest %s, want %s", d, want)
	}
	recs = adminImages(t, r)
	if len(recs) != 1 || recs[0].Repo("e2e/app").PullCount != 2 || recs[0].Repo("e2e/app").Tags[0] != "v1" {
		t.Fatalf("records after restart %+v", recs)
	}
}

func TestServeFlagsOverrideConfig(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd(&out, &out)
	root.SetArgs([]string{"serve", "--upstream", "ftp://nope", "--data-dir", t.TempDir()})
	err := root.ExecuteContext(context.Background())
	if err == nil || !regexp.MustCompile(`upstream\.url "ftp://nope"`).MatchString(err.Error()) {
		t.Fatalf("a bad --upstream must fail validation, got %v", err)
	}
}

// TestServeShutdownAbortsStalledTransfers: a download whose client stops
// reading does not hold the process past server.shutdownTimeout.
func TestServeShutdownAbortsStalledTransfers(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.AdminListen = ""
	cfg.Server.ShutdownTimeout = 300 * time.Millisecond
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, zerolog.New(logs)) }()
	addr := logs.waitLog(t, done, "registry listening")

	layer, _ := random.Layer(64<<20, "application/vnd.oci.image.layer.v1.tar")
	repo, _ := name.NewRepository(addr+"/stall/app", name.Insecure)
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	d, _ := layer.Digest()
	resp, err := http.Get("http://" + addr + "/v2/stall/app/blobs/" + d.String())
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	defer resp.Body.Close()
	// The client reads nothing more: the transfer stalls on a full socket.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatal("the stalled download completed instead of being aborted")
	}
}
