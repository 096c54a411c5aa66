package embedded

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard) // distribution's process-global logger
	os.Exit(m.Run())
}

func TestStartServeTransportAndRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "registry")
	ctx := context.Background()
	r, err := Start(ctx, Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(dir, secretFile))
	if err != nil || len(strings.TrimSpace(string(secret))) < 32 {
		t.Fatalf("secret: %q %v", secret, err)
	}
	// Over the opt-in loopback listener, in-process through the Transport
	// and through the Handler: same answers.
	viaHandler := func(req *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, req)
		if req.Method == http.MethodHead {
			rec.Body.Reset() // a server drops HEAD bodies; the recorder keeps them
		}
		return rec.Result(), nil
	}
	for _, c := range []struct {
		name string
		do   func(*http.Request) (*http.Response, error)
	}{{"loopback", http.DefaultClient.Do}, {"in-process", r.Transport().RoundTrip}, {"handler", viaHandler}} {
		for _, m := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(m, r.URL().String()+"/v2/", nil)
			resp, err := c.do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, m, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "{}"
			if m == "HEAD" {
				want = ""
			}
			if resp.StatusCode != 200 || string(b) != want || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
				t.Fatalf("%s %s: %d %q %v", c.name, m, resp.StatusCode, b, resp.Header)
			}
		}
		req, _ := http.NewRequest("GET", r.URL().String()+"/v2/nope/manifests/latest", nil)
		resp, err := c.do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), "MANIFEST_UNKNOWN") {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, b)
		}
		// HEAD: the same status, and the error's size as Content-Length.
		req, _ = http.NewRequest("HEAD", r.URL().String()+"/v2/nope/manifests/latest", nil)
		hresp, err := c.do(req)
		if err != nil {
			t.Fatal(err)
		}
		hresp.Body.Close()
		sized := c.name != "handler" // a ResponseRecorder is no server: proxy's TestLocalBlobServingMatchesTransport checks the handler through one
		if hresp.StatusCode != 404 || (sized && hresp.Header.Get("Content-Length") != strconv.Itoa(len(b))) {
			t.Fatalf("%s HEAD: %d, Content-Length %q, want 404 and %d", c.name, hresp.StatusCode, hresp.Header.Get("Content-Length"), len(b))
		}
	}
	req, _ := http.NewRequest("GET", "http://example.invalid/v2/", nil)
	if _, err := r.Transport().RoundTrip(req); err == nil {
		t.Fatal("in-process transport served a foreign host")
	}
	if resp, _ := viaHandler(req); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("handler answered %d for a foreign host, want 502", resp.StatusCode)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Restart keeps the upload-state secret (sessions survive restarts).
	r2, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close(ctx)
	again, _ := os.ReadFile(filepath.Join(dir, secretFile))
	if string(again) != string(secret) {
		t.Fatal("secret changed across restart")
	}
}

func TestStartNeedsDir(t *testing.T) {
	if _, err := Start(context.Background(), Options{}); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
}

// TestStartOpensNoSocket: by default the registry is reachable only through
// Transport. Nothing listens (a listener would let anyone on the host push
// and delete around the proxy's records and scanning), and URL names a host
// that cannot be dialled; the registry still answers through Transport.
func TestStartOpensNoSocket(t *testing.T) {
	ctx := context.Background()
	before := listeningSockets(t)
	r, err := Start(ctx, Options{Dir: filepath.Join(t.TempDir(), "registry")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if after := listeningSockets(t); after != before {
		t.Fatalf("Start opened %d listening socket(s)", after-before)
	}
	if h := r.URL().Host; h != Host {
		t.Fatalf("URL host %q, want %q", h, Host)
	}
	c := &http.Client{Transport: r.Transport()}
	resp, err := c.Post(r.URL().String()+"/v2/a/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
		t.Fatalf("upload through Transport: %d %v", resp.StatusCode, resp.Header)
	}
}

// listeningSockets counts this process's TCP sockets in LISTEN state: the
// socket inodes among /proc/self/fd that /proc/net/tcp{,6} lists as 0A.
func listeningSockets(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				n++
			}
		}
	}
	return n
}
