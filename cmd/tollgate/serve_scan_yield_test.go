package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

func TestActiveTeerCountsEveryTransferOnce(t *testing.T) {
	ctx := context.Background()
	x := newTransfers()
	inner := newRecTeer()
	a := activeTeer{inner: inner, t: x}
	up := a.Upload(ctx, "r", "s1", 0)
	pull := a.Pull(ctx, "r", digest.FromString("x"), 3)
	if x.n != 2 {
		t.Fatalf("%d transfers, want 2", x.n)
	}
	select {
	case <-x.idleChan():
		t.Fatal("idle during transfers")
	default:
	}
	_, _ = up.Write([]byte("abc"))
	up.Done(true)
	up.Done(true) // a second Done counts nothing
	if got := <-inner.sinks["s1"].ended; !got || inner.sinks["s1"].n != 3 {
		t.Fatalf("inner sink: complete %v, %d bytes", got, inner.sinks["s1"].n)
	}
	pull.Done(false)
	<-x.idleChan() // idle again
	if x.n != 0 {
		t.Fatalf("%d transfers after all ended", x.n)
	}
	a.UploadDone(ctx, "r", "s1", digest.FromString("abc"))
	if inner.done["s1"] == "" {
		t.Fatal("UploadDone not passed on")
	}

	// A transfer the inner Teer does not tee still counts, with a no-op sink.
	b := activeTeer{inner: nilTeer{}, t: x}
	s := b.Upload(ctx, "r", "s2", 0)
	if n, err := s.Write([]byte("abcd")); n != 4 || err != nil {
		t.Fatalf("no-op sink wrote %d, %v", n, err)
	}
	if x.n != 1 {
		t.Fatalf("%d transfers, want 1", x.n)
	}
	s.Done(true)
	<-x.idleChan()
}

type nilTeer struct{}

func (nilTeer) Pull(context.Context, string, digest.Digest, int64) scan.BlobSink { return nil }
func (nilTeer) Upload(context.Context, string, string, int64) scan.BlobSink      { return nil }
func (nilTeer) UploadDone(context.Context, string, string, digest.Digest)        {}

func TestYieldingReaderReadsOnceTransfersEnd(t *testing.T) {
	x := newTransfers()
	x.begin()
	r := &yieldingReader{done: context.Background().Done(), r: bytes.NewReader([]byte("layer")), t: x, budget: time.Hour}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	x.end()
	if b := <-got; string(b) != "layer" {
		t.Fatalf("read %q", b)
	}

	// A transfer that never ends holds a read back by the budget at most.
	x.begin()
	r = &yieldingReader{done: context.Background().Done(), r: bytes.NewReader([]byte("layer")), t: x, budget: time.Millisecond}
	if b, err := io.ReadAll(r); err != nil || string(b) != "layer" {
		t.Fatalf("read %q, %v", b, err)
	}
	if r.budget > 0 {
		t.Fatalf("budget left %s after waiting it out", r.budget)
	}
	// An ended context ends the wait too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := x.wait(ctx, time.Hour); d >= time.Hour {
		t.Fatalf("waited %s with an ended context", d)
	}
	x.end()
}
