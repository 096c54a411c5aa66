package embedded

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	r, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(dir, secretFile))
	if err != nil || len(strings.TrimSpace(string(secret))) < 32 {
		t.Fatalf("secret: %q %v", secret, err)
	}
	// Over the loopback listener and in-process: same answers.
	for _, c := range []struct {
		name string
		do   func(*http.Request) (*http.Response, error)
	}{{"loopback", http.DefaultClient.Do}, {"in-process", r.Transport().RoundTrip}} {
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
	}
	req, _ := http.NewRequest("GET", "http://example.invalid/v2/", nil)
	if _, err := r.Transport().RoundTrip(req); err == nil {
		t.Fatal("in-process transport served a foreign host")
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
