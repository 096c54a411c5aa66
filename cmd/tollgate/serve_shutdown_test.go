package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/config"
)

// TestServeShutdownCancelsAbandonedUploads: a client that PATCHed part of a
// layer and went away (a cancelled docker push: no final PUT) leaves an
// upload session nothing will finish. Shutdown cancels it at once instead of
// waiting server.shutdownTimeout for its analysis ("layer analyses still
// running at shutdown").
func TestServeShutdownCancelsAbandonedUploads(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.AdminListen = ""
	cfg.Server.ShutdownTimeout = 20 * time.Second
	cfg.DB.RefreshInterval = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, zerolog.New(logs)) }()
	addr := logs.waitLog(t, done, "registry listening")

	resp, err := http.Post("http://"+addr+"/v2/abandoned/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("POST: %d %q", resp.StatusCode, loc)
	}
	if strings.HasPrefix(loc, "/") {
		loc = "http://" + addr + loc
	}
	// The first bytes of a gzipped tar: the tee starts walking a layer.
	var part bytes.Buffer
	zw := gzip.NewWriter(&part)
	_, _ = zw.Write(bytes.Repeat([]byte("x"), 4096))
	_ = zw.Flush()
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(part.Bytes()))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %d", resp.StatusCode)
	}

	cancel() // SIGTERM; the client never sends the final PUT
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	logs.mu.Lock()
	out := logs.b.String()
	logs.mu.Unlock()
	if strings.Contains(out, "layer analyses still running") {
		t.Fatalf("shutdown waited for an abandoned upload's analysis:\n%s", out)
	}
}
