package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/index"
)

// Store is the part of index.Outbox a Deliverer reads and updates.
type Store interface {
	Pending(ctx context.Context, after uint64, limit int) ([]index.OutboxEntry, error)
	Record(ctx context.Context, seq uint64, target string, d index.Delivery, targets []string) error
	Prune(ctx context.Context, cutoff time.Time) (int, error)
}

// Metrics counts delivery attempts; outcome is "delivered", "failed" (will
// retry) or "gave_up". proxy/metrics implements it.
type Metrics interface {
	WebhookDelivery(target, outcome string)
}

// Target is one webhook receiving every event.
type Target struct {
	URL     string
	Headers map[string]string // added to each POST (e.g. Authorization)
}

// ID is the target's stable id in the outbox's delivery records: "wh-" and
// 16 hex digits of sha256(URL). Changing the URL makes a new target.
func (t Target) ID() string {
	h := sha256.Sum256([]byte(t.URL))
	return "wh-" + hex.EncodeToString(h[:8])
}

// DelivererOptions tune delivery. The zero value works.
type DelivererOptions struct {
	// Client posts the events; default an http.Client with a 10s timeout.
	Client *http.Client
	// MaxAttempts per event and target before giving up; default 12.
	MaxAttempts int
	// BaseBackoff is the wait after the first failure, doubled after each
	// further failure up to MaxBackoff; defaults 1s and 5m (with 12 attempts
	// an event is retried for about 20 minutes). A ±20% jitter is applied.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// PollInterval is how often the outbox is read when not woken; default 2s.
	PollInterval time.Duration
	// Retention keeps finished entries for inspection; default 24h.
	Retention time.Duration
	// BatchSize is how many pending entries are read at a time; default 100.
	BatchSize int
	Logger    zerolog.Logger
	Metrics   Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Deliverer posts outbox entries to webhooks: one goroutine per target, in
// outbox order, at-least-once. A failed attempt is recorded with its next
// attempt time (exponential backoff) and ends that target's round, so a down
// receiver gets one request per round, not one per event. Every outcome is
// recorded in the outbox before the next entry, so a restart resumes where
// delivery stopped: an event acknowledged by a receiver (2xx) and recorded
// is not sent to it again.
type Deliverer struct {
	store   Store
	targets []target
	ids     []string
	o       DelivererOptions
	log     zerolog.Logger
}

type target struct {
	Target
	id   string
	wake chan struct{}
}

// NewDeliverer returns a deliverer of store's entries to targets.
func NewDeliverer(store Store, targets []Target, o DelivererOptions) *Deliverer {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Deliverer{store: store, o: o, log: o.Logger.With().Str("op", "webhook").Logger()}
	for _, t := range targets {
		tg := target{Target: t, id: t.ID(), wake: make(chan struct{}, 1)}
		d.targets = append(d.targets, tg)
		d.ids = append(d.ids, tg.id)
	}
	return d
}

// Wake makes every target's loop read the outbox now. It never blocks.
func (d *Deliverer) Wake() {
	for _, t := range d.targets {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx is done, then returns ctx's error. With no targets it
// just waits.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range d.targets {
		wg.Go(func() { d.loop(ctx, t) })
	}
	wg.Go(func() { d.pruneLoop(ctx) })
	wg.Wait()
	return ctx.Err()
}

func (d *Deliverer) loop(ctx context.Context, t target) {
	tick := time.NewTicker(d.o.PollInterval)
	defer tick.Stop()
	for {
		if err := d.round(ctx, t); err != nil && ctx.Err() == nil {
			d.log.Error().Err(err).Str("target", t.id).Msg("webhook delivery round failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-tick.C:
		}
	}
}

func (d *Deliverer) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(max(d.o.Retention/24, d.o.PollInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := d.store.Prune(ctx, d.o.Now().Add(-d.o.Retention)); err != nil && ctx.Err() == nil {
			d.log.Error().Err(err).Msg("outbox prune failed")
		}
	}
}

// round attempts every due entry for t, in order, until one fails.
func (d *Deliverer) round(ctx context.Context, t target) error {
	var after uint64
	for {
		page, err := d.store.Pending(ctx, after, d.o.BatchSize)
		if err != nil {
			return err
		}
		for _, e := range page {
			after = e.Seq
			st := e.Targets[t.id]
			if !st.Due(d.o.Now()) {
				continue
			}
			ok, err := d.attempt(ctx, t, e, st)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
		}
		if len(page) < d.o.BatchSize {
			return nil
		}
	}
}

// attempt posts e to t and records the outcome; ok is false when the
// receiver did not accept it.
func (d *Deliverer) attempt(ctx context.Context, t target, e index.OutboxEntry, st index.Delivery) (ok bool, err error) {
	status, perr := d.post(ctx, t, e)
	if perr != nil && ctx.Err() != nil {
		// Shutting down: the failed attempt does not count and is not recorded.
		return false, ctx.Err()
	}
	// A receiver's acknowledgement is recorded even while shutting down, so
	// that a restart does not send the event to it again.
	rctx := context.WithoutCancel(ctx)
	now := d.o.Now().UTC()
	st.Attempts++
	st.LastAttemptAt = &now
	st.LastStatus = status
	st.NextAttemptAt = nil
	outcome := "delivered"
	if perr == nil {
		st.LastError = ""
		st.DeliveredAt = &now
	} else {
		st.LastError = perr.Error()
		if st.Attempts >= d.o.MaxAttempts {
			st.GaveUp = true
			outcome = "gave_up"
		} else {
			next := now.Add(d.backoff(st.Attempts))
			st.NextAttemptAt = &next
			outcome = "failed"
		}
	}
	if err := d.store.Record(rctx, e.Seq, t.id, st, d.ids); err != nil {
		return false, fmt.Errorf("events: record delivery of %s: %w", e.ID, err)
	}
	if d.o.Metrics != nil {
		d.o.Metrics.WebhookDelivery(t.id, outcome)
	}
	ev := d.log.Debug()
	if perr != nil {
		ev = d.log.Warn().Err(perr)
	}
	ev.Str("target", t.id).Str("event", e.ID).Str("type", e.Type).Int("attempt", st.Attempts).
		Str("outcome", outcome).Msg("webhook delivery")
	return perr == nil, nil
}

// backoff is BaseBackoff·2^(attempts-1), capped at MaxBackoff, ±20% jitter.
func (d *Deliverer) backoff(attempts int) time.Duration {
	b := d.o.BaseBackoff
	for i := 1; i < attempts && b < d.o.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.o.MaxBackoff)
	j := time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
	return max(j, time.Millisecond)
}

// post sends one structured-mode CloudEvent; a 2xx answer is success.
func (d *Deliverer) post(ctx context.Context, t target, e index.OutboxEntry) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(e.Payload))
	if err != nil {
		return 0, fmt.Errorf("events: webhook request: %w", err)
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("events: webhook post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("events: webhook answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}
