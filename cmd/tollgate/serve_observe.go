package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/proxy/events"
	"github.com/tollgate-registry/tollgate/proxy/metrics"
	"github.com/tollgate-registry/tollgate/proxy/policy"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// wireMetrics builds the Prometheus registry, counts registry requests by
// operation, and serves GET /metrics on the admin listener: open when
// admin.metricsOpen is set, else behind the admin credentials (not served at
// all when none are configured).
func wireMetrics(ctx context.Context, s *server) error {
	m := metrics.New()
	s.metrics = m
	m.WatchDBSize(s.db)
	queue := index.NewQueue(s.db)
	m.WatchQueueDepth(func() int {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		n, err := queue.Len(qctx)
		if err != nil {
			return -1
		}
		return n
	})
	advs := index.NewAdvisoryStore(s.db, s.log)
	m.WatchAdvisoryAge(func(ctx context.Context) (map[string]time.Time, error) {
		srcs, err := advs.Sources(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]time.Time, len(srcs))
		for _, src := range srcs {
			out[src.Source] = src.ImportedAt
		}
		return out, nil
	})
	s.wrapRegistry = append(s.wrapRegistry, m.Middleware)
	findings := index.NewFindingStore(s.db)
	s.background = append(s.background, func(ctx context.Context) error {
		return refreshFindingsGauge(ctx, findings, m, time.Minute)
	})

	h := m.Handler()
	if !s.cfg.Admin.MetricsOpen {
		auth, err := s.adminAuth()
		if errors.Is(err, admin.ErrNoCredentials) {
			s.log.Warn().Str("op", "metrics").Msg("/metrics not served: set admin.token (or access keys), or admin.metricsOpen")
			return nil
		}
		if err != nil {
			return fmt.Errorf("serve: metrics auth: %w", err)
		}
		h = auth.Wrap(h)
	}
	s.admin.Handle("GET /metrics", h)
	return nil
}

// adminAuth authenticates with the configured admin token and access keys;
// admin.ErrNoCredentials when there are none.
func (s *server) adminAuth() (*admin.Auth, error) {
	keys := map[string]string{}
	for _, k := range s.cfg.Admin.AccessKeys {
		keys[k.AccessKeyID] = k.SecretAccessKey
	}
	return admin.NewAuth(admin.AuthOptions{Token: s.cfg.Admin.Token, AccessKeys: keys, Logger: s.log})
}

// refreshFindingsGauge recounts stored findings by status and severity every
// period (a scrape must stay cheap, a full count is not).
func refreshFindingsGauge(ctx context.Context, fs *index.FindingStore, m *metrics.Registry, period time.Duration) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		counts := map[scan.FindingStatus]map[scan.Severity]int{}
		err := fs.Each(ctx, func(f scan.Finding) error {
			if counts[f.Status] == nil {
				counts[f.Status] = map[scan.Severity]int{}
			}
			counts[f.Status][f.Severity]++
			return nil
		})
		if err == nil {
			m.SetFindings(counts)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// wireEvents starts the webhook deliverer when admin.webhooks are
// configured, publishes ECR Image Action events for the pushes, pulls and
// deletes the proxy records, and Inspector2 Coverage events for coverage
// changes (CoverageWatcher); GET /v1/webhooks/deliveries (admin
// credentials) shows the outbox's delivery records. s.events is the publisher other components
// use for Inspector2 Scan / Finding / Coverage events (nil, which discards,
// without webhooks).
func wireEvents(_ context.Context, s *server) error {
	if len(s.cfg.Admin.Webhooks) == 0 {
		return nil
	}
	ob, err := index.NewOutbox(s.db)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func(context.Context) error { return ob.Close() })
	targets := make([]events.Target, 0, len(s.cfg.Admin.Webhooks))
	for _, w := range s.cfg.Admin.Webhooks {
		targets = append(targets, events.Target{URL: w.URL, Headers: w.Headers})
	}
	var em events.Metrics
	if s.metrics != nil {
		em = s.metrics
	}
	d := events.NewDeliverer(ob, targets, events.DelivererOptions{Logger: s.log, Metrics: em})
	s.background = append(s.background, d.Run)
	s.events = events.NewPublisher(ob, d.Wake)
	s.eventBuilder = events.Builder{Region: s.cfg.Admin.Region}
	s.proxy.Observers = append(s.proxy.Observers, imageActionObserver{s})
	cw := &events.CoverageWatcher{DB: s.db, Outbox: ob, Publisher: s.events, Builder: s.eventBuilder,
		Coverages: index.NewCoverages(s.db), Repos: s.imageRepos, Logger: s.log}
	s.background = append(s.background, cw.Run)
	if auth, err := s.adminAuth(); err == nil && s.admin != nil {
		s.admin.Handle("GET /v1/webhooks/deliveries", auth.Wrap(events.StatusHandler(ob)))
	}
	return nil
}

// imageRepos lists the repositories that hold image (not deleted).
func (s *server) imageRepos(ctx context.Context, image digest.Digest) []string {
	if s.records == nil {
		return nil
	}
	rec, err := s.records.Get(ctx, image)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range rec.Repos {
		if !r.Deleted {
			out = append(out, r.Repository)
		}
	}
	return out
}

// imageActionObserver publishes "ECR Image Action" for recorded pushes,
// pulls and deletes.
type imageActionObserver struct{ s *server }

func (o imageActionObserver) Observe(ctx context.Context, ev index.Event) {
	switch ev.Kind {
	case index.EventPush, index.EventPull, index.EventDelete:
	default:
		return
	}
	e, err := o.s.eventBuilder.ImageAction(ev)
	if err == nil {
		err = o.s.events.Publish(ctx, e)
	}
	if err != nil {
		o.s.log.Error().Err(err).Str("repo", ev.Repository).Str("digest", ev.Digest.String()).
			Str("op", "events").Msg("publish image action")
	}
}

// wirePolicy installs the pull policy as the proxy's Gate when policy rules
// are configured. Never-scanned images are scanned through s.imageScanner
// (set by the scan component) before the manifest is served. Findings are
// counted as the admin API reports them (admin.SuppressedCounts): one a
// SUPPRESS rule (CreateFilter) suppresses in every repository holding the
// image does not refuse the pull; rules are read at every decision, so
// UpdateFilter / DeleteFilter apply to the next pull (docs/policy.md).
func wirePolicy(_ context.Context, s *server) error {
	if len(s.cfg.Policy) == 0 {
		return nil
	}
	var pm policy.Metrics
	if s.metrics != nil {
		pm = s.metrics
	}
	var gate proxy.Gate = policy.New(policy.Options{
		Rules:     policy.RulesFromConfig(s.cfg.Policy),
		Findings:  policyCounts(s),
		Coverages: index.NewCoverages(s.db),
		Scanner:   policyScanner{s},
		Metrics:   pm,
		Logger:    s.log,
	})
	if s.transfers != nil {
		gate = idleWhileGated{inner: gate, t: s.transfers}
	}
	s.proxy.Gate = gate
	return nil
}

// policyCounts counts an image's ACTIVE findings after the suppression
// rules, with the same view of images, coverage, filters and in-use
// reports as the admin API, so a finding the API shows SUPPRESSED never
// refuses a pull.
func policyCounts(s *server) admin.SuppressedCounts {
	findings := index.NewFindingStore(s.db)
	o := admin.APIOptions{
		Findings: findings,
		Images:   s.records,
		Coverage: admin.Coverages{Store: index.NewCoverages(s.db)},
		Filters:  index.NewFilters(s.db),
		Region:   s.cfg.Admin.Region,
		Logger:   s.log,
	}
	if s.lifecycle != nil {
		o.InUse = admin.Lifecycle{Service: s.lifecycle}
	}
	return admin.SuppressedCounts{API: admin.NewAPI(o), Findings: findings}
}

// policyScanner runs a synchronous scan for the pull policy with the
// server's lifecycle.ImageScanner, looked up at call time (components may
// be wired in any order).
type policyScanner struct{ s *server }

func (p policyScanner) ScanNow(ctx context.Context, repo string, image digest.Digest) error {
	if p.s.imageScanner == nil {
		return errors.New("serve: no image scanner configured")
	}
	_, err := p.s.imageScanner.Scan(ctx, lifecycle.ScanRequest{
		Repository: repo,
		Image:      image,
		ScanType:   "ENHANCED",
		Triggers:   []string{lifecycle.TriggerPull},
	})
	return err
}

// observeScanner wraps the scan component's image scanner: every scan's
// duration goes to tollgate_scan_duration_seconds{phase="image"} (or
// "rescan"), and with webhooks every successful scan publishes its finding
// changes ("Inspector2 Finding") and, for an initial scan (not a rescan),
// "Inspector2 Scan" with the ACTIVE counts. The scan component wires it:
// s.imageScanner = s.observeScanner(scanner) (and the lifecycle's Scanner).
func (s *server) observeScanner(inner lifecycle.ImageScanner) lifecycle.ImageScanner {
	if inner == nil || (s.events == nil && s.metrics == nil) {
		return inner
	}
	var a *events.Announcer
	if s.events != nil {
		a = &events.Announcer{
			Publisher: s.events,
			Builder:   s.eventBuilder,
			Findings:  index.NewFindingStore(s.db),
			Tags: func(ctx context.Context, repo string, image digest.Digest) []string {
				if s.records == nil {
					return nil
				}
				rec, err := s.records.Get(ctx, image)
				if err != nil {
					return nil
				}
				if ri := rec.Repo(repo); ri != nil {
					return ri.Tags
				}
				return nil
			},
		}
	}
	return observedScanner{inner: inner, a: a, s: s}
}

type observedScanner struct {
	inner lifecycle.ImageScanner
	a     *events.Announcer // nil without webhooks
	s     *server
}

func (w observedScanner) Scan(ctx context.Context, req lifecycle.ScanRequest) (lifecycle.Result, error) {
	before, berr := w.a.Before(ctx, req.Image)
	start := time.Now()
	res, err := w.inner.Scan(ctx, req)
	phase := "image"
	if req.Rescan {
		phase = "rescan"
	}
	w.s.metrics.ScanDuration(phase, time.Since(start))
	if err != nil || berr != nil {
		return res, err
	}
	if aerr := w.a.ScanDone(ctx, req.Repository, req.Image, before, !req.Rescan); aerr != nil {
		// The scan stands; its events are lost only if the outbox write failed.
		w.s.log.Error().Err(aerr).Str("repo", req.Repository).Str("digest", req.Image.String()).
			Str("op", "events").Msg("publish scan events")
	}
	return res, nil
}
