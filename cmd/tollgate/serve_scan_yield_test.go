package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Every registry request counts as a transfer while it is served, and the
// tee's analysis (waitIdle) waits until none has been in flight for
// analysisQuiet.
func TestWaitIdleWaitsForQuietRegistry(t *testing.T) {
	x := newTransfers()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(x.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})))
	defer srv.Close()
	never := make(chan struct{})

	time.Sleep(analysisQuiet) // quiet since the start
	if d := x.waitIdle(never, time.Hour); d != 0 {
		t.Fatalf("waited %s on a quiet registry", d)
	}

	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		resp, err := http.Get(srv.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	waited := make(chan time.Duration)
	go func() { waited <- x.waitIdle(never, time.Hour) }()
	select {
	case d := <-waited:
		t.Fatalf("waitIdle returned after %s while a request was in flight", d)
	case <-time.After(50 * time.Millisecond):
	}
	ended := time.Now()
	close(release)
	<-reqDone
	<-waited
	if since := time.Since(ended); since < analysisQuiet {
		t.Fatalf("waitIdle returned %s after the request ended, before the quiet period (%s)", since, analysisQuiet)
	}

	// max bounds the wait, and stop ends it.
	x.begin()
	defer x.end()
	if d := x.waitIdle(never, 10*time.Millisecond); d < 10*time.Millisecond || d > time.Minute {
		t.Fatalf("waited %s with max 10ms", d)
	}
	stop := make(chan struct{})
	close(stop)
	if d := x.waitIdle(stop, time.Hour); d >= time.Hour {
		t.Fatalf("waited %s after stop", d)
	}
}

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
