package index

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/scan/match"
)

func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for n, c := range files {
		w, err := zw.Create(n)
		require.NoError(t, err)
		_, _ = w.Write([]byte(c))
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

const osvGo1 = `{"id":"GO-2099-0001","modified":"2099-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"example.com/m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]}]}`
const osvGo2 = `{"id":"GO-2099-0002","modified":"2099-01-02T00:00:00Z","affected":[{"package":{"ecosystem":"Go","name":"example.com/n"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}]}`

func TestUpdaterConditionalDownload(t *testing.T) {
	ctx := context.Background()
	body := zipOf(t, map[string]string{"GO-2099-0001.json": osvGo1})
	var gets, notMod atomic.Int32
	var truncate atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/Go/all.zip", r.URL.Path)
		gets.Add(1)
		etag := `"v` + strconv.Itoa(len(body)) + `"`
		if r.Header.Get("If-None-Match") == etag {
			notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if truncate.Load() {
			_, _ = w.Write(body[:len(body)/2])
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()

	store := NewAdvisoryStore(openTestDB(t), zerolog.Nop())
	u := &Updater{Store: store, BaseURL: srv.URL, Ecosystems: []string{"Go"}, TempDir: t.TempDir(), Log: zerolog.Nop()}
	rs, err := u.Update(ctx)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, []string{"GO-2099-0001"}, rs[0].Delta.Added)

	before, err := store.Sources(ctx)
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	rs, err = u.Update(ctx)
	require.NoError(t, err)
	require.True(t, rs[0].NotModified)
	require.Equal(t, int32(1), notMod.Load())
	after, err := store.Sources(ctx)
	require.NoError(t, err)
	require.True(t, after[0].ImportedAt.After(before[0].ImportedAt), "a 304 is a successful refresh: the age restarts")
	require.Equal(t, before[0].ChangedAt, after[0].ChangedAt)
	require.Equal(t, before[0].Generation, after[0].Generation)

	// A cut download changes nothing.
	body = zipOf(t, map[string]string{"GO-2099-0001.json": osvGo1, "GO-2099-0002.json": osvGo2})
	truncate.Store(true)
	_, err = u.Update(ctx)
	require.Error(t, err)
	got, _ := store.ForPackage(ctx, "Go", "example.com/n")
	require.Empty(t, got)
	got, _ = store.ForPackage(ctx, "Go", "example.com/m")
	require.Len(t, got, 1)
	ents, _ := os.ReadDir(u.TempDir)
	require.Empty(t, ents, "no temporary file left behind")

	// Over the size limit: refused, nothing changes.
	truncate.Store(false)
	u.MaxBytes = 10
	_, err = u.Update(ctx)
	require.ErrorIs(t, err, match.ErrTooLarge)

	u.MaxBytes = 0
	rs, err = u.Update(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"GO-2099-0002"}, rs[0].Delta.Added)
	got, _ = store.ForPackage(ctx, "Go", "example.com/n")
	require.Len(t, got, 1)
}

func TestUpdaterImportPath(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.json"), []byte(osvGo1), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"id":1}`), 0o644))
	store := NewAdvisoryStore(openTestDB(t), zerolog.Nop())
	u := &Updater{Store: store, Log: zerolog.Nop()}
	rs, ld, err := u.Import(ctx, dir, false)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, 1, ld.Count())
	require.Len(t, ld.Skipped, 2)

	// A single file merges.
	f := filepath.Join(t.TempDir(), "GO-2099-0002.json")
	require.NoError(t, os.WriteFile(f, []byte(osvGo2), 0o644))
	rs, _, err = u.Import(ctx, f, false)
	require.NoError(t, err)
	require.Equal(t, []string{"GO-2099-0002"}, rs[0].Delta.Added)
	srcs, _ := store.Sources(ctx)
	require.Equal(t, 2, srcs[0].Count)

	// A zip replaces.
	z := filepath.Join(t.TempDir(), "all.zip")
	require.NoError(t, os.WriteFile(z, zipOf(t, map[string]string{"x.json": osvGo2}), 0o644))
	rs, _, err = u.Import(ctx, z, false)
	require.NoError(t, err)
	require.Equal(t, []string{"GO-2099-0001"}, rs[0].Delta.Removed)
}

func TestUpdaterRunCallsOnUpdate(t *testing.T) {
	body := zipOf(t, map[string]string{"GO-2099-0001.json": osvGo1})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []UpdateResult, 1)
	u := &Updater{Store: NewAdvisoryStore(openTestDB(t), zerolog.Nop()), BaseURL: srv.URL, Ecosystems: []string{"Go"}, TempDir: t.TempDir(), Log: zerolog.Nop(),
		OnUpdate: func(_ context.Context, rs []UpdateResult) { got <- rs; cancel() }}
	err := u.Run(ctx)
	require.ErrorIs(t, err, context.Canceled)
	rs := <-got
	require.Equal(t, []string{"GO-2099-0001"}, rs[0].Delta.Added)
}
