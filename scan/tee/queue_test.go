package tee

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// newQueue is a bare blob queue: no analysis goroutine, no registry.
func newQueue(t *testing.T, bufferBytes int64) *blob {
	t.Helper()
	tr := New(Options{BufferBytes: bufferBytes, MaxTotalBytes: bufferBytes})
	b := &blob{t: tr, final: make(chan digest.Digest, 1), gone: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	b.idle = time.AfterFunc(time.Hour, func() {})
	t.Cleanup(func() { b.idle.Stop() })
	return b
}

// The analysis reads exactly the bytes the transfer wrote, in order,
// whatever the write and read sizes (across slab edges, a slab filled
// while it is being read, reads larger than a slab), with the writer and
// the reader running at the same time.
func TestQueueDeliversBytesInOrder(t *testing.T) {
	src := make([]byte, 3*slabBytes+12345)
	_, _ = rand.Read(src)
	for _, tc := range []struct {
		name        string
		write, read int
	}{
		{"small writes, small reads", 1000, 777},
		{"slab-sized writes, odd reads", slabBytes, 4096 + 3},
		{"odd writes, reads over a slab", 32<<10 + 1, 3 * slabBytes / 2},
		{"one write", len(src), 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newQueue(t, int64(len(src)))
			done := make(chan []byte)
			go func() {
				var got bytes.Buffer
				p := make([]byte, tc.read)
				for {
					n, err := b.Read(p)
					got.Write(p[:n])
					if err != nil {
						if !errors.Is(err, io.EOF) {
							t.Errorf("Read: %v", err)
						}
						done <- got.Bytes()
						return
					}
				}
			}()
			for off := 0; off < len(src); off += tc.write {
				b.write(src[off:min(off+tc.write, len(src))])
			}
			b.mu.Lock()
			b.closed = true
			b.cond.Broadcast()
			b.mu.Unlock()
			if got := <-done; !bytes.Equal(got, src) {
				t.Fatalf("read %d bytes, not the %d written (or not in order)", len(got), len(src))
			}
			if n := b.t.total.Load(); n != 0 {
				t.Fatalf("%d bytes still counted as buffered after everything was read", n)
			}
		})
	}
}

// A writer that outruns the analysis past the buffer detaches the blob:
// the reader gets errDetached, and the buffered bytes are no longer
// counted against the memory cap.
func TestQueueDetachesPastBuffer(t *testing.T) {
	b := newQueue(t, 2*slabBytes)
	chunk := make([]byte, slabBytes-7)
	for range 3 {
		b.write(chunk)
	}
	if _, err := b.Read(make([]byte, 10)); !errors.Is(err, errDetached) {
		t.Fatalf("Read after the buffer overflowed = %v, want errDetached", err)
	}
	if b.reason != ReasonBehind {
		t.Fatalf("detach reason %q, want %q", b.reason, ReasonBehind)
	}
	if n := b.t.total.Load(); n != 0 {
		t.Fatalf("%d bytes still counted after the detach", n)
	}
}

// With Options.Yield the analysis of a layer reads nothing past its first
// bytes while Yield holds it (a transfer is in flight), then analyses the
// buffered blob in full; a non-layer blob is dropped without waiting.
func TestYieldHoldsAnalysisUntilReleased(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	release := make(chan struct{})
	var calls atomic.Int32
	tr := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn, Workers: 2,
		Yield: func(stop <-chan struct{}, max time.Duration) time.Duration {
			calls.Add(1)
			start := time.Now()
			select {
			case <-release:
			case <-stop:
			}
			return time.Since(start)
		}})
	ctx := context.Background()

	// Not a layer: the head is enough to drop it, Yield is never asked.
	cfg := bytes.Repeat([]byte(`{"architecture":"amd64"}`), 100)
	s := tr.Pull(ctx, "r", digest.FromBytes(cfg), int64(len(cfg)))
	feed(s, cfg, 100)
	s.Done(true)
	tr.Wait()
	if n := calls.Load(); n != 0 {
		t.Fatalf("Yield called %d times for a config blob", n)
	}

	b := layer(t, 1<<20)
	d := digest.FromBytes(b)
	s = tr.Pull(ctx, "r", d, int64(len(b)))
	feed(s, b, 32<<10)
	s.Done(true)
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if calls.Load() == 0 {
		t.Fatal("the analysis of a layer never asked Yield")
	}
	if st.get(d) != nil {
		t.Fatal("layer stored while Yield held its analysis")
	}
	close(release)
	tr.Wait()
	if li := st.get(d); li == nil || len(li.Packages) != 1 {
		t.Fatalf("after the release stored %+v, deferred %v", li, rec.list())
	}
}

// A budget Yield uses up is not asked again: the analysis then runs beside
// the transfers.
func TestYieldBudgetBoundsWaiting(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	var calls atomic.Int32
	tr := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn, Workers: 2,
		YieldBudget: 5 * time.Millisecond,
		Yield: func(_ <-chan struct{}, max time.Duration) time.Duration {
			calls.Add(1)
			time.Sleep(max)
			return max
		}})
	b := layer(t, 1<<20)
	d := digest.FromBytes(b)
	s := tr.Pull(context.Background(), "r", d, int64(len(b)))
	feed(s, b, 32<<10)
	s.Done(true)
	tr.Wait()
	if st.get(d) == nil {
		t.Fatalf("not stored; deferred %v", rec.list())
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("Yield called %d times, want once (its answer used the whole budget)", n)
	}
}

// After Reserve, teeing a blob allocates no buffer memory: the slabs come
// from the reserved free list and go back to it.
func TestReservedSlabsAreReused(t *testing.T) {
	tr := New(Options{BufferBytes: 4 * slabBytes, MaxTotalBytes: 4 * slabBytes})
	tr.Reserve()
	if n := len(tr.free); n != 4 {
		t.Fatalf("Reserve left %d slabs in the free list, want 4", n)
	}
	b := &blob{t: tr, gone: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	b.idle = time.AfterFunc(time.Hour, func() {})
	defer b.idle.Stop()
	chunk := make([]byte, 32<<10)
	p := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		for range 3 * slabBytes / len(chunk) {
			b.write(chunk)
		}
		for b.buffered > 0 {
			if _, err := b.Read(p); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per 768 KiB teed, want 0", allocs)
	}
}

// A config uploaded beside a layer frees its worker as soon as its head
// shows it is not a layer, before its upload is committed: with one
// worker, the layer that follows is still teed, not deferred.
func TestNonLayerFreesWorkerBeforeCommit(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tr := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn, Workers: 1})
	ctx := context.Background()
	cfg := bytes.Repeat([]byte(`{"architecture":"amd64"}`), 100)
	cs := tr.Upload(ctx, "r", "cfg", 0)
	feed(cs, cfg, 4096)
	cs.Done(true)
	teeNextLayer(t, tr, st, rec, "the config", func() { tr.UploadDone(ctx, "r", "cfg", digest.FromBytes(cfg)) })
}

// An upload whose client went away mid-layer (its request ended
// incomplete, no final PUT) frees its worker at once: with one worker, the
// next layer is still teed, not deferred until the 15-minute idle timeout.
func TestAbandonedUploadFreesWorker(t *testing.T) {
	st, rec := &memStore{}, &recorder{}
	tr := New(Options{Analyzers: analyzer.Default(analyzer.Options{}), Store: st, Deferred: rec.fn, Workers: 1})
	ctx := context.Background()
	b := layer(t, 1<<16)
	cut := tr.Upload(ctx, "r", "cut", 0)
	feed(cut, b[:len(b)/2], 4096)
	// Let the analysis start on the layer (past its head) before the cut.
	tr.mu.Lock()
	cb := tr.sessions["r\x00cut"]
	tr.mu.Unlock()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
		cb.mu.Lock()
		read := cb.buffered < int64(len(b)/2)
		cb.mu.Unlock()
		if read {
			break
		}
	}
	cut.Done(false) // the client disconnected
	teeNextLayer(t, tr, st, rec, "the abandoned upload", func() { tr.CancelIdleUploads() })
}

// teeNextLayer waits until tr's only worker is free, then uploads a layer
// and checks it was teed and stored (holder names what could still hold
// the worker); finish ends the other uploads before tr.Wait.
func teeNextLayer(t *testing.T, tr *Teer, st *memStore, rec *recorder, holder string, finish func()) {
	t.Helper()
	ctx := context.Background()
	for start := time.Now(); len(tr.slots) > 0 && time.Since(start) < 10*time.Second; {
		time.Sleep(time.Millisecond)
	}
	b := layer(t, 1<<16)
	s := tr.Upload(ctx, "r", "next", 0)
	if s == nil {
		t.Fatalf("the next layer was not teed: %s still holds the only worker", holder)
	}
	feed(s, b, 4096)
	s.Done(true)
	tr.UploadDone(ctx, "r", "next", digest.FromBytes(b))
	finish()
	tr.Wait()
	if st.get(digest.FromBytes(b)) == nil {
		t.Fatalf("the next layer was not stored; deferred %v", rec.list())
	}
	if len(rec.list()) != 0 {
		t.Fatalf("deferred %v", rec.list())
	}
}
