package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
)

// fullDisk is the record store of a full disk under the Badger directory:
// while full is set every write fails as Badger's does on ENOSPC (the
// value log write fails; nothing is committed). Reads go through.
type fullDisk struct {
	*index.Records
	full   atomic.Bool
	writes atomic.Int64 // refused writes
}

func (f *fullDisk) Record(ctx context.Context, ev index.Event) error {
	if f.full.Load() {
		f.writes.Add(1)
		return fmt.Errorf("index: record %s %s: %w", ev.Kind, ev.Digest,
			&os.PathError{Op: "write", Path: "index/000001.vlog", Err: syscall.ENOSPC})
	}
	return f.Records.Record(ctx, ev)
}

type eventLog struct {
	mu  sync.Mutex
	evs []index.Event
}

func (o *eventLog) Observe(_ context.Context, ev index.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.evs = append(o.evs, ev)
}

func (o *eventLog) pushes(d digest.Digest) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, ev := range o.evs {
		if ev.Kind == index.EventPush && ev.Digest == d {
			n++
		}
	}
	return n
}

// pullAll pulls ref through the proxy and returns its manifest and blobs.
func pullAll(t *testing.T, ref name.Reference) ([]byte, [][]byte) {
	t.Helper()
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	m, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("pull %s: layer: %v", ref, err)
		}
		blobs = append(blobs, b)
	}
	return m, blobs
}

func sameBlobs(t *testing.T, img v1.Image, m []byte, blobs [][]byte) {
	t.Helper()
	want, _ := img.RawManifest()
	if !bytes.Equal(m, want) {
		t.Error("manifest not byte-identical")
	}
	ls, _ := img.Layers()
	for i, l := range ls {
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if i >= len(blobs) || !bytes.Equal(blobs[i], b) {
			t.Errorf("layer %d not byte-identical", i)
		}
	}
}

// TestFaultFullDiskUnderBadger: with the disk under the Badger directory
// full, a pull completes byte-identical (its record is kept and written
// once space returns: no record is lost), and a push is refused as a
// registry refuses one on a storage error (500 UNKNOWN), never answered
// 201 unrecorded, and no observer (scan queue) hears of it. Once space
// returns the same push succeeds and is recorded, and the kept pull
// record is written.
func TestFaultFullDiskUnderBadger(t *testing.T) {
	h := newHarness(t, nil)
	fd := &fullDisk{Records: h.records}
	obs := &eventLog{}
	h.proxy.Records = fd
	h.proxy.Observers = []Observer{obs}
	ctx := context.Background()

	a := pushRandom(t, h.host, "full/a", "v1")
	ad := imgDigest(t, a)
	refA, _ := name.ParseReference(h.host+"/full/a:v1", name.Insecure)

	fd.full.Store(true)
	m, blobs := pullAll(t, refA)
	sameBlobs(t, a, m, blobs)
	if n := h.proxy.PendingRecords(); n != 1 {
		t.Errorf("PendingRecords = %d after a pull on a full disk, want 1 (kept)", n)
	}

	b := pushRandomNoFatal(t, h.host, "full/b", "v1")
	bd := imgDigest(t, b.img)
	var te *transport.Error
	if b.err == nil {
		t.Fatal("push answered success while its record could not be written")
	} else if !errors.As(b.err, &te) || te.StatusCode != http.StatusInternalServerError ||
		len(te.Errors) == 0 || te.Errors[0].Code != CodeUnknown {
		t.Fatalf("push on a full disk: %v, want 500 %s", b.err, CodeUnknown)
	}
	if _, err := h.records.Get(ctx, bd); !errors.Is(err, index.ErrNotFound) {
		t.Errorf("unrecorded push: Get = %v, want not found", err)
	}
	if n := obs.pushes(bd); n != 0 {
		t.Errorf("observers told %d times of a push that was not recorded", n)
	}
	if fd.writes.Load() == 0 {
		t.Fatal("the full disk refused no write: the test shows nothing")
	}

	if n := h.proxy.PendingRecords(); n != 2 {
		t.Errorf("PendingRecords = %d, want 2 (the pull and the refused push, kept)", n)
	}

	// Space returns. The client retries its push: the registry has the
	// manifest, so crane does not PUT it again (a HEAD answers); the kept
	// records are written by the next record, here the pull of b.
	fd.full.Store(false)
	refB, _ := name.ParseReference(h.host+"/full/b:v1", name.Insecure)
	if err := remote.Write(refB, b.img); err != nil {
		t.Fatalf("push after space returned: %v", err)
	}
	m, blobs = pullAll(t, refB)
	sameBlobs(t, b.img, m, blobs)
	rec, err := h.records.Get(ctx, bd)
	if err != nil || rec.Repo("full/b") == nil || len(rec.Repo("full/b").Tags) != 1 || rec.Repo("full/b").PushedAt.IsZero() {
		t.Fatalf("the push refused on a full disk was lost: %+v %v", rec, err)
	}
	if n := obs.pushes(bd); n != 1 {
		t.Errorf("observers told %d times of the recorded push, want 1", n)
	}
	if n := h.proxy.PendingRecords(); n != 0 {
		t.Errorf("PendingRecords = %d after space returned", n)
	}
	ra, err := h.records.Get(ctx, ad)
	if err != nil || ra.Repo("full/a").PullCount != 1 || ra.Repo("full/a").LastPulledAt == nil {
		t.Fatalf("the pull made on a full disk was lost: %+v %v", ra.Repo("full/a"), err)
	}
}

type pushResult struct {
	img v1.Image
	err error
}

func pushRandomNoFatal(t *testing.T, host, repo, tag string) pushResult {
	t.Helper()
	img := pushRandomImage(t)
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return pushResult{img: img, err: remote.Write(ref, img, remote.WithRetryStatusCodes())}
}

func pushRandomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
