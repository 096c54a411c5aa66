package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
)

// receiver is a webhook that fails its first failFirst requests with 503.
type receiver struct {
	mu        sync.Mutex
	failFirst int
	requests  int
	ok        map[string]int // event id → accepted deliveries
	bad       []string       // protocol violations
}

func newReceiver(failFirst int) (*receiver, *httptest.Server) {
	r := &receiver{failFirst: failFirst, ok: map[string]int{}}
	return r, httptest.NewServer(r)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != ContentType {
		r.bad = append(r.bad, req.Method+" "+req.Header.Get("Content-Type"))
	}
	if req.Header.Get("Authorization") != "Bearer s3cret" {
		r.bad = append(r.bad, "missing configured header")
	}
	var ev Event
	if err := json.NewDecoder(req.Body).Decode(&ev); err != nil {
		r.bad = append(r.bad, err.Error())
	} else if err := ev.Validate(); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	if r.requests <= r.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.ok[ev.ID]++
	w.WriteHeader(http.StatusAccepted)
}

func (r *receiver) snapshot() (requests int, ok map[string]int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok = map[string]int{}
	for k, v := range r.ok {
		ok[k] = v
	}
	return r.requests, ok, append([]string(nil), r.bad...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type fakeMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *fakeMetrics) WebhookDelivery(_, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[outcome]++
}

type node struct {
	db *index.DB
	ob *index.Outbox
}

func openNode(t *testing.T, dir string) node {
	t.Helper()
	db, err := index.Open(dir, index.Options{Logger: zerolog.Nop()})
	require.NoError(t, err)
	ob, err := index.NewOutbox(db)
	require.NoError(t, err)
	return node{db, ob}
}

func (n node) close(t *testing.T) {
	t.Helper()
	require.NoError(t, n.ob.Close())
	require.NoError(t, n.db.Close())
}

// run starts a deliverer and returns its stop function.
func run(n node, targets []Target, o DelivererOptions) (*Deliverer, func()) {
	o.BaseBackoff, o.MaxBackoff, o.PollInterval = time.Millisecond, 4*time.Millisecond, 2*time.Millisecond
	d := NewDeliverer(n.ob, targets, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	return d, func() { cancel(); <-done }
}

func imageEvents(t *testing.T, n int) []Event {
	t.Helper()
	var b Builder
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var evs []Event
	for i := range n {
		ev, err := b.ImageAction(index.Event{Kind: index.EventPush, Repository: "team/app",
			Digest: digest.FromString(fmt.Sprint(i)), Tag: "v1", At: at})
		require.NoError(t, err)
		evs = append(evs, ev)
	}
	return evs
}

func TestDeliveryRetriesAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	flaky, flakySrv := newReceiver(3)
	defer flakySrv.Close()
	good, goodSrv := newReceiver(0)
	defer goodSrv.Close()
	hdr := map[string]string{"Authorization": "Bearer s3cret"}
	targets := []Target{{URL: flakySrv.URL, Headers: hdr}, {URL: goodSrv.URL, Headers: hdr}}
	evs := imageEvents(t, 5)
	m := &fakeMetrics{n: map[string]int{}}

	n := openNode(t, dir)
	d, stop := run(n, targets, DelivererOptions{Metrics: m})
	pub := NewPublisher(n.ob, d.Wake)
	require.NoError(t, pub.Publish(ctx, evs...))
	require.NoError(t, pub.Publish(ctx, evs[0])) // same id: stored once
	// Stop as soon as the flaky receiver has failed and then accepted one
	// event, and the deliverer has recorded that.
	flakyID, goodID := targets[0].ID(), targets[1].ID()
	recorded := func(ob *index.Outbox) map[string]map[string]bool {
		out := map[string]map[string]bool{flakyID: {}, goodID: {}}
		p, err := ob.Pending(ctx, 0, 0)
		require.NoError(t, err)
		dn, err := ob.Done(ctx, 0, 0)
		require.NoError(t, err)
		for _, e := range append(p, dn...) {
			for tg, st := range e.Targets {
				if st.DeliveredAt != nil {
					out[tg][e.ID] = true
				}
			}
		}
		return out
	}
	waitFor(t, "first recorded delivery after failures", func() bool {
		return len(recorded(n.ob)[flakyID]) >= 1
	})
	stop()
	n.close(t)

	// Restart on the same directory: nothing lost, and nothing whose
	// acknowledgement was recorded is sent to that target again.
	n = openNode(t, dir)
	defer n.close(t)
	before := recorded(n.ob)
	require.NotEmpty(t, before[flakyID])
	_, stop = run(n, targets, DelivererOptions{Metrics: m})
	waitFor(t, "every event delivered", func() bool {
		_, ok, _ := flaky.snapshot()
		_, ok2, _ := good.snapshot()
		return len(ok) == len(evs) && len(ok2) == len(evs)
	})
	waitFor(t, "outbox drained", func() bool {
		p, err := n.ob.Pending(ctx, 0, 0)
		return err == nil && len(p) == 0
	})
	stop()

	for _, r := range []*receiver{flaky, good} {
		requests, ok, bad := r.snapshot()
		require.Empty(t, bad)
		id := goodID
		if r == flaky {
			id = flakyID
			require.GreaterOrEqual(t, requests, len(evs)+3)
		}
		for _, ev := range evs {
			require.GreaterOrEqual(t, ok[ev.ID], 1, "event %s delivered", ev.ID)
			if before[id][ev.ID] {
				require.Equal(t, 1, ok[ev.ID], "event %s recorded as delivered before the restart was sent again", ev.ID)
			}
		}
	}
	done, err := n.ob.Done(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, done, len(evs))
	attempts := 0
	for _, e := range done {
		fl := e.Targets[flakyID]
		require.NotNil(t, fl.DeliveredAt)
		require.NotNil(t, e.Targets[goodID].DeliveredAt)
		attempts += fl.Attempts
	}
	require.GreaterOrEqual(t, attempts, len(evs)+3, "the failed attempts to the flaky receiver are recorded")
	m.mu.Lock()
	defer m.mu.Unlock()
	require.Equal(t, 2*len(evs), m.n["delivered"])
	require.Equal(t, 3, m.n["failed"])
}

func TestDeliveryGivesUp(t *testing.T) {
	ctx := context.Background()
	down, srv := newReceiver(1 << 30)
	defer srv.Close()
	n := openNode(t, t.TempDir())
	defer n.close(t)
	targets := []Target{{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer s3cret"}}}
	d, stop := run(n, targets, DelivererOptions{MaxAttempts: 3})
	require.NoError(t, NewPublisher(n.ob, d.Wake).Publish(ctx, imageEvents(t, 2)...))
	waitFor(t, "outbox drained", func() bool {
		p, err := n.ob.Pending(ctx, 0, 0)
		return err == nil && len(p) == 0
	})
	stop()
	requests, ok, _ := down.snapshot()
	require.Equal(t, 6, requests, "bounded: MaxAttempts per event")
	require.Empty(t, ok)
	done, err := n.ob.Done(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, done, 2)
	for _, e := range done {
		st := e.Targets[targets[0].ID()]
		require.True(t, st.GaveUp)
		require.Equal(t, 3, st.Attempts)
		require.Equal(t, http.StatusServiceUnavailable, st.LastStatus)
	}
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	d := NewDeliverer(nil, nil, DelivererOptions{BaseBackoff: time.Second, MaxBackoff: 10 * time.Second})
	for _, tc := range []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{1, 800 * time.Millisecond, 1200 * time.Millisecond},
		{2, 1600 * time.Millisecond, 2400 * time.Millisecond},
		{4, 6400 * time.Millisecond, 9600 * time.Millisecond},
		{30, 8 * time.Second, 12 * time.Second},
	} {
		b := d.backoff(tc.attempts)
		require.GreaterOrEqual(t, b, tc.lo, "attempt %d", tc.attempts)
		require.LessOrEqual(t, b, tc.hi, "attempt %d", tc.attempts)
	}
}
