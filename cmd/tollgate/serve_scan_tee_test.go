package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan/analyzer"
	"github.com/tollgate-registry/tollgate/scan/tee"
)

// gzLayer is a gzip layer of one file of n random bytes.
func gzLayer(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	b := make([]byte, n)
	rand.Read(b)
	if err := tw.WriteHeader(&tar.Header{Name: "usr/share/blob.bin", Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(b)
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestReuploadOfDeferredLayerLeavesNoWait: a layer uploaded twice, whose
// analysis detaches both times, is deferred once (the tee reports a digest
// once), and no mark is left in teeWaits that no report would end (the
// image scan would wait maxTeeWait for it before reading the layer).
func TestReuploadOfDeferredLayerLeavesNoWait(t *testing.T) {
	waits := newTeeWaits()
	var mu sync.Mutex
	var reports []string
	tr := tee.New(tee.Options{
		Analyzers:   analyzer.Default(analyzer.Options{}),
		BufferBytes: 4 << 10, // one write of the layer is more: it detaches
		Workers:     2,
		Deferred: func(_ context.Context, _ string, d digest.Digest, reason string) {
			mu.Lock()
			reports = append(reports, reason)
			mu.Unlock()
			waits.finish(d)
		},
	})
	tt := newTrackedTeer(tr, waits)
	ctx := context.Background()
	b := gzLayer(t, 64<<10)
	d := digest.FromBytes(b)
	for _, sess := range []string{"first", "second"} {
		s := tt.Upload(ctx, "r", sess, 0)
		if s == nil {
			t.Fatalf("%s upload not teed", sess)
		}
		s.Write(b)
		s.Done(true)
		tt.UploadDone(ctx, "r", sess, d)
	}
	tr.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 || reports[0] != tee.ReasonBehind {
		t.Errorf("deferrals %q, want one %q", reports, tee.ReasonBehind)
	}
	if n := waits.len(); n != 0 {
		t.Errorf("%d layers still waited for: the image scan would wait maxTeeWait for a report that never comes", n)
	}
}
