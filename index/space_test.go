package index

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func pushEvent(tag string) Event {
	b := make([]byte, 1024)
	rand.Read(b)
	m := []byte(`{"schemaVersion":2,"x":"` + hex.EncodeToString(b) + `"}`)
	return Event{Kind: EventPush, Repository: "full", Digest: digest.FromBytes(m), Tag: tag,
		MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(m)), Manifest: m, At: time.Now()}
}

// TestLowSpaceRefusesWrites: while the file system under the index has
// less than MinFreeBytes free, records and layer inventories are refused
// with an error wrapping ENOSPC (nothing written), and they are accepted
// again once space returns.
func TestLowSpaceRefusesWrites(t *testing.T) {
	db, err := Open(t.TempDir(), Options{MinFreeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var free atomic.Int64
	free.Store(1 << 30)
	db.space.statfs = func(string) (int64, error) { return free.Load(), nil }
	r, inv := NewRecords(db, RecordsOptions{}), NewInventories(db)
	ctx := context.Background()

	free.Store(512 << 10)
	ev := pushEvent("v1")
	if err := r.Record(ctx, ev); !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("record on a full disk: %v, want ENOSPC", err)
	}
	if _, err := r.Get(ctx, ev.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused record readable: %v", err)
	}
	li := &scan.LayerInventory{Digest: digest.FromString("layer"), AnalyzersVersion: "v"}
	if err := inv.PutLayer(ctx, li); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("layer inventory on a full disk: %v, want ENOSPC", err)
	}

	free.Store(1 << 30)
	if err := r.Record(ctx, ev); err != nil {
		t.Fatalf("record after space returned: %v", err)
	}
	if err := inv.PutLayer(ctx, li); err != nil {
		t.Fatalf("layer inventory after space returned: %v", err)
	}
	if _, err := r.Get(ctx, ev.Digest); err != nil {
		t.Errorf("record after space returned: %v", err)
	}
}

// TestFullDiskUnderBadger fills a real (tmpfs) file system under the
// index to the last byte. Without the free-space guard Badger's next write
// into its mmap'd memtable log is a SIGBUS that kills the process; with it
// every write fails with ENOSPC, the process lives, and once space returns
// writes succeed and every record written before or after is there after
// a reopen. It needs an unprivileged user and mount namespace (unshare
// -Urm) for the tmpfs, and is skipped without one.
func TestFullDiskUnderBadger(t *testing.T) {
	if dir := os.Getenv("TOLLGATE_FULLDISK_DIR"); dir != "" {
		fullDiskChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1): cannot mount a small tmpfs without root")
	}
	mnt := t.TempDir()
	probe := exec.Command(unshare, "-Urm", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs "$0"`, mnt)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("no unprivileged mount namespace (%v: %s): cannot mount a small tmpfs", err, out)
	}
	cmd := exec.Command(unshare, "-Urm", "sh", "-c",
		`mount -t tmpfs -o size=320m tmpfs "$1" && exec "$0" -test.run '^TestFullDiskUnderBadger$' -test.v`,
		os.Args[0], mnt)
	cmd.Env = append(os.Environ(), "TOLLGATE_FULLDISK_DIR="+mnt)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		if i := strings.Index(string(out), "SIGBUS"); i >= 0 {
			t.Fatalf("the process died of SIGBUS on the full disk:\n%s", out[max(0, i-200):min(len(out), i+1500)])
		}
		t.Fatalf("full-disk run: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func fullDiskChild(t *testing.T, dir string) {
	ctx := context.Background()
	idx := filepath.Join(dir, "index")
	db, err := Open(idx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, inv := NewRecords(db, RecordsOptions{}), NewInventories(db)
	before := pushEvent("before")
	if err := r.Record(ctx, before); err != nil {
		t.Fatalf("record with space: %v", err)
	}

	// Fill the file system to the last byte.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filler: %v", err)
			}
			break
		}
	}
	f.Close()

	var refused []Event
	accepted := 0
	for range 200 { // enough to overflow a memtable log page many times over
		ev := pushEvent("full")
		err := r.Record(ctx, ev)
		if err == nil {
			accepted++ // into an allocated page, or the next one is a SIGBUS
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("record on a full disk: %v, want ENOSPC", err)
		}
		refused = append(refused, ev)
	}
	if accepted > 0 || len(refused) < 3 {
		t.Fatalf("%d records accepted on a full disk", accepted)
	}
	li := &scan.LayerInventory{Digest: digest.FromString("layer"), AnalyzersVersion: "v"}
	if err := inv.PutLayer(ctx, li); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("layer inventory on a full disk: %v, want ENOSPC", err)
	}

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, ev := range refused[:3] {
		if err := r.Record(ctx, ev); err != nil {
			t.Fatalf("record after space returned: %v", err)
		}
	}
	if err := inv.PutLayer(ctx, li); err != nil {
		t.Fatalf("layer inventory after space returned: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	db, err = Open(idx, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	r = NewRecords(db, RecordsOptions{})
	for _, ev := range append([]Event{before}, refused[:3]...) {
		if _, err := r.Get(ctx, ev.Digest); err != nil {
			t.Errorf("record %s (tag %s) lost: %v", ev.Digest, ev.Tag, err)
		}
	}
}
