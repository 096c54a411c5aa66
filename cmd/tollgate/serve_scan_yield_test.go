package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate-registry/tollgate/proxy"
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

// A pull waiting in the policy gate does not count as a transfer: the
// analysis its scan needs goes on meanwhile.
func TestGatedPullDoesNotHoldAnalysisBack(t *testing.T) {
	x := newTransfers()
	idleInGate := make(chan time.Duration, 1)
	gate := idleWhileGated{t: x, inner: gateFunc(func(ctx context.Context, repo string, desc proxy.ManifestInfo) error {
		idleInGate <- x.waitIdle(nil, 5*time.Second) // what the tee's analysis would wait
		return nil
	})}
	srv := httptest.NewServer(x.middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = gate.Admit(r.Context(), "r", proxy.ManifestInfo{})
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/r/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := <-idleInGate; d >= 5*time.Second {
		t.Fatalf("the analysis waited %s for the gated pull itself", d)
	}
	x.mu.Lock()
	n := x.n
	x.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d transfers counted after the request ended", n)
	}
}

type gateFunc func(ctx context.Context, repo string, desc proxy.ManifestInfo) error

func (f gateFunc) Admit(ctx context.Context, repo string, desc proxy.ManifestInfo) error {
	return f(ctx, repo, desc)
}
