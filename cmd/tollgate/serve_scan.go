package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
	"github.com/tollgate-registry/tollgate/scan/tee"
)

// imageFetcher reads blobs and manifests of the registry the proxy fronts:
// what lifecycle.PipelineScanner needs for images whose layers the tee did
// not see (detached, mounted, pushed before tollgate, mirror cache hits).
type imageFetcher interface {
	scan.BlobFetcher
	scan.ManifestFetcher
}

// scanHooks lets tests observe the scan wiring; the zero value is serve's.
type scanHooks struct {
	// wrapFetcher wraps the registry fetcher (e.g. to count reads).
	wrapFetcher func(imageFetcher) imageFetcher
	// wired is called with the wired parts.
	wired func(*scanParts)
}

// scanParts are the pieces wireScan built that outlive it.
type scanParts struct {
	svc     *lifecycle.Service
	updater *index.Updater // without a Rematcher: deltas go to svc
	pix     *index.PkgIndex
	teer    *tee.Teer
	waits   *teeWaits
}

// maxTeeWait bounds how long an image scan waits for the tee's analysis of
// a layer still in flight before it reads the layer from the registry.
const maxTeeWait = 2 * time.Minute

// maxPrefetchYield bounds how long a layer's prefetch pauses, in all, for
// blob transfers in progress (it reads only while none is, up to this).
const maxPrefetchYield = 2 * time.Second

// wireScan wires scanning when scan.enabled: the tee on the proxy's data
// path (layer inventories while the bytes pass), the lifecycle (durable
// queue, eligibility, coverage) told of every recorded push and pull, its
// image scanner (assemble from the layer cache, else from the registry;
// match; replace findings), the background advisory refresh whose deltas
// the lifecycle turns into rescans, and POST /v1/db/import on the admin
// listener. It runs before wirePolicy and wireAdminAPI, which read
// s.imageScanner and s.lifecycle. Nothing here can fail a push or a pull:
// the tee detaches, the Observer only logs, scans run in the background.
func wireScan(ctx context.Context, s *server) error { return wireScanWith(ctx, s, scanHooks{}) }

func wireScanWith(ctx context.Context, s *server, h scanHooks) error {
	if !s.cfg.ScanEnabled() {
		s.log.Info().Str("op", "scan").Msg("scanning disabled (scan.enabled: false): no tee, no lifecycle, no advisory refresh")
		return nil
	}
	cfg := s.cfg
	l := cfg.Scan.Limits
	limits := scan.Limits{MaxEntryBufferBytes: l.MaxEntryBufferBytes, MaxEntryBytes: l.MaxEntryBytes,
		MaxLayerBytes: l.MaxLayerBytes, MaxEntries: l.MaxEntries, MaxNestingDepth: l.MaxNestingDepth,
		MaxCompressionRatio: l.MaxCompressionRatio}
	analyzers := analyzer.Default(analyzer.Options{MaxNestingDepth: l.MaxNestingDepth})
	invs := index.NewInventories(s.db)

	// The tee. A layer upload it did not analyse (detached, failed) is read
	// from the registry at once, one at a time (prefetcher), and the image
	// scan waits for that instead of starting the read itself only after the
	// manifest PUT; other deferred blobs only end the wait.
	waits := newTeeWaits()
	av := scan.AnalyzersVersion(analyzers)
	var pf *prefetcher // set below, once the fetcher exists (before any request)
	report := func(ctx context.Context, repo string, d digest.Digest, reason string) {
		if pf != nil && pf.start(ctx, repo, d) {
			s.log.Debug().Str("op", "tee").Str("repo", repo).Str("layer", d.String()).Str("reason", reason).
				Msg("layer not analysed in transfer: read from the registry now")
			return
		}
		waits.finish(d)
		s.log.Debug().Str("op", "tee").Str("repo", repo).Str("layer", d.String()).Str("reason", reason).
			Msg("layer not analysed in transfer: the image scan reads it from the registry")
	}
	if s.metrics != nil {
		report = s.metrics.CountDeferred(report)
	}
	deferred := func(ctx context.Context, repo string, d digest.Digest, reason string) {
		if has, err := invs.HasLayer(ctx, d, av); err == nil && has {
			waits.finish(d) // a re-upload of a stored layer (knownTeer ended its analysis)
			return
		}
		report(ctx, repo, d, reason)
	}
	xfers := newTransfers() // what the analysis yields to
	topts := tee.Options{
		Analyzers:       analyzers,
		Limits:          limits,
		BufferBytes:     cfg.Scan.TeeBufferBytes,
		Workers:         cfg.Scan.Workers,
		AnalysisTimeout: cfg.Scan.AnalysisTimeout,
		Store:           invs,
		Deferred:        deferred,
		Committed:       func(_ context.Context, _ string, li *scan.LayerInventory) { waits.finish(li.Digest) },
		Logger:          s.log,
	}
	if cfg.Scan.YieldsToTransfers(runtime.GOMAXPROCS(0)) {
		topts.Yield = xfers.waitIdle
	}
	s.wrapRegistry = append(s.wrapRegistry, xfers.middleware)
	s.transfers = xfers
	t := tee.New(topts)
	go t.Reserve() // the tee's buffer, mapped before the first push needs it
	s.proxy.Teer = s.metrics.CountTee(newKnownTeer(newTrackedTeer(t, waits), func(ctx context.Context, d digest.Digest) bool {
		ok, err := invs.HasLayer(ctx, d, av)
		return err == nil && ok
	}))
	s.closers = append(s.closers, func(ctx context.Context) error {
		// The listeners have stopped: an upload session no request is
		// feeding (a cancelled push, no final PUT) will never finish, so
		// its analysis ends now; only analyses with all their bytes in are
		// waited for.
		if n := t.CancelIdleUploads(); n > 0 {
			s.log.Info().Str("op", "shutdown").Int("sessions", n).Msg("unfinished upload sessions cancelled; not analysed")
		}
		done := make(chan struct{})
		go func() { t.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn().Str("op", "shutdown").Msg("layer analyses still running at shutdown; their layers are read from the registry later")
		}
		return nil
	})

	// The image scanner.
	fetcher, err := s.newImageFetcher()
	if err != nil {
		return err
	}
	if h.wrapFetcher != nil {
		fetcher = h.wrapFetcher(fetcher)
	}
	asm := scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzers, Limits: limits,
		Cache: waitingCache{Inventories: invs, waits: waits, max: maxTeeWait}, Logger: s.log})
	pf = newPrefetcher(scan.NewAssembler(scan.AssemblerOptions{Analyzers: analyzers, Limits: limits,
		Cache: invs, Logger: s.log}), yieldingFetcher{f: fetcher, t: xfers, budget: maxPrefetchYield}, waits, s.log)
	s.closers = append(s.closers, pf.close)
	advs := index.NewAdvisoryStore(s.db, s.log)
	pix := index.NewPkgIndex(s.db)
	fstore := index.NewFindingStore(s.db)
	scanner := s.observeScanner(lifecycle.PipelineScanner{
		Assembler:    asm,
		Fetcher:      fetcher,
		Inventories:  invs,
		Rematcher:    &index.Rematcher{Advisories: advs, Packages: pix, Findings: fstore, Log: s.log},
		AccessDenied: accessDenied,
	})

	// The lifecycle.
	seed := lifecycle.SeedFromConfig(cfg.Scanning)
	svc := lifecycle.New(lifecycle.Options{
		DB:            s.db,
		Logger:        s.log,
		Records:       s.records,
		Recorder:      s.records,
		Tags:          lifecycle.ResolveFunc(s.records.Tag),
		Scanner:       scanner,
		Findings:      lifecycle.Findings{Store: fstore},
		Seed:          &seed,
		SweepInterval: cfg.Scanning.SweepInterval,
		Workers:       cfg.Scan.Workers,
	})
	s.proxy.Observers = append(s.proxy.Observers, lifecycle.Observer{Service: svc, Logger: s.log})
	s.lifecycle, s.imageScanner = svc, scanner
	s.background = append(s.background, svc.Run) // Run frees a killed process's leases first

	// Advisories: refresh in the background (the first round does not delay
	// startup; failures only log), every import's deltas to the lifecycle.
	parts := &scanParts{svc: svc, pix: pix, teer: t, waits: waits}
	parts.updater = &index.Updater{
		Store:      advs,
		BaseURL:    cfg.DB.BaseURL,
		Ecosystems: cfg.DB.Ecosystems,
		MaxBytes:   cfg.DB.MaxDownloadBytes,
		Interval:   cfg.DB.RefreshInterval,
		TempDir:    cfg.DataDir,
		Client:     feedClient(),
		OnUpdate:   func(ctx context.Context, rs []index.UpdateResult) { parts.rescan(ctx, s, rs) },
		Log:        s.log,
	}
	if cfg.DB.RefreshInterval > 0 {
		s.background = append(s.background, parts.updater.Run)
	} else {
		s.log.Info().Str("op", "advisory-update").Msg("db.refreshInterval is 0: no background advisory refresh")
	}
	if auth, err := s.adminAuth(); err == nil {
		s.admin.Handle("POST /v1/db/import", auth.Wrap(admin.DBImportHandler(parts, s.log)))
		s.admin.Handle("GET /v1/db/status", auth.Wrap(admin.DBStatusHandler(advs, s.log)))
	}
	warnNoAdvisories(ctx, s, advs)
	if h.wired != nil {
		h.wired(parts)
	}
	return nil
}

// warnNoAdvisories says once, at startup, that the advisory database is
// empty: every scan then ends SUCCESSFUL with no findings, which looks like
// a clean image.
func warnNoAdvisories(ctx context.Context, s *server, advs admin.DBSources) {
	srcs, err := advs.Sources(ctx)
	if err != nil || len(srcs) > 0 {
		return
	}
	adminURL, uerr := adminURLFromConfig(s.cfg, "")
	if uerr != nil {
		adminURL = "http://ADMIN-ADDR"
	}
	refresh := "`tollgate db update` (with the server stopped)"
	if s.cfg.DB.RefreshInterval > 0 {
		refresh = "the background refresh (db.refreshInterval) downloads the feeds from db.baseURL"
	}
	s.log.Warn().Str("op", "advisory-update").
		Msgf("no advisory data: findings will be empty until `tollgate db import PATH --admin-url %s` or %s", adminURL, refresh)
}

// Import imports the advisories at paths (files, directories or zips on
// the server) as one index.ImportBatch and queues the rescans its deltas
// call for: admin.DBImporter, behind POST /v1/db/import.
func (p *scanParts) Import(ctx context.Context, paths []string, merge bool) ([]index.UpdateResult, error) {
	var rs []index.UpdateResult
	var err error
	batch := p.updater.NewImportBatch(merge)
	for _, path := range paths {
		r, _, ierr := batch.Import(ctx, path)
		rs = append(rs, r...)
		if ierr != nil {
			err = fmt.Errorf("%s: %w", path, ierr)
			break
		}
	}
	if len(rs) > 0 {
		if n, rerr := p.svc.OnAdvisoryDeltas(ctx, p.pix, deltas(rs)...); rerr != nil {
			err = errors.Join(err, rerr)
		} else {
			p.updater.Log.Info().Str("op", "advisory-import").Strs("paths", paths).Int("rescans", n).Msg("advisories imported")
		}
	}
	return rs, err
}

// rescan hands a refresh round's deltas to the lifecycle (CONTINUOUS_SCAN,
// eligible images only); a failure only logs: the next sweep does not
// repair it, but the next delta of those packages does.
func (p *scanParts) rescan(ctx context.Context, s *server, rs []index.UpdateResult) {
	ds := deltas(rs)
	if len(ds) == 0 {
		return
	}
	n, err := p.svc.OnAdvisoryDeltas(ctx, p.pix, ds...)
	if err != nil {
		s.log.Error().Err(err).Str("op", "advisory-update").Msg("could not queue the rescans of an advisory delta")
		return
	}
	s.log.Info().Str("op", "advisory-update").Int("rescans", n).Msg("advisory delta applied")
}

func deltas(rs []index.UpdateResult) []index.AdvisoryDelta {
	var out []index.AdvisoryDelta
	for _, r := range rs {
		if !r.Delta.Empty() {
			out = append(out, r.Delta)
		}
	}
	return out
}

// feedClient downloads advisory feeds: connect and header timeouts so an
// unreachable feed (air-gapped sites) fails fast; no total timeout (the
// archives are large).
func feedClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr}
}

// accessDenied reports a registry refusal (401/403): ACCESS_DENIED.
func accessDenied(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden)
}

// newImageFetcher reads from what the proxy fronts, beside the proxy (so
// its reads are never recorded as pulls): the embedded registry in-process,
// or the upstream with upstream.username/password (token auth by
// go-containerregistry's transport), with mirror mode's repository mapping
// (proxy.UpstreamRepo).
func (s *server) newImageFetcher() (imageFetcher, error) {
	tr := s.proxy.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	opts := []remote.Option{remote.WithTransport(tr), remote.WithUserAgent("tollgate/" + buildVersion())}
	anon, err := remote.NewPuller(append(opts, remote.WithAuth(authn.Anonymous))...)
	if err != nil {
		return nil, fmt.Errorf("serve: registry fetcher: %w", err)
	}
	def := anon
	if s.registry == nil && s.cfg.Upstream.Username != "" {
		auth := authn.FromConfig(authn.AuthConfig{Username: s.cfg.Upstream.Username, Password: s.cfg.Upstream.Password})
		if def, err = remote.NewPuller(append(opts, remote.WithAuth(auth))...); err != nil {
			return nil, fmt.Errorf("serve: registry fetcher: %w", err)
		}
	}
	return &registryFetcher{resolve: s.proxy.UpstreamRepo, def: def, anon: anon}, nil
}

// registryFetcher is the imageFetcher over a registry's HTTP API.
type registryFetcher struct {
	resolve   func(recordRepo string) (base *url.URL, repo string, isDefault bool, err error)
	def, anon *remote.Puller // def authenticates to the configured upstream
}

func (f *registryFetcher) ref(recordRepo string, d digest.Digest) (name.Digest, *remote.Puller, error) {
	base, repo, isDefault, err := f.resolve(recordRepo)
	if err != nil {
		return name.Digest{}, nil, err
	}
	var opts []name.Option
	if base.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.NewDigest(base.Host+"/"+repo+"@"+d.String(), opts...)
	if err != nil {
		return name.Digest{}, nil, fmt.Errorf("fetch %s@%s: %w", recordRepo, d, err)
	}
	if isDefault {
		return ref, f.def, nil
	}
	return ref, f.anon, nil
}

// Fetch reads blob d of repo; the reader verifies the digest at EOF.
func (f *registryFetcher) Fetch(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	ref, p, err := f.ref(repo, d)
	if err != nil {
		return nil, err
	}
	l, err := p.Layer(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s@%s: %w", repo, d, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s@%s: %w", repo, d, err)
	}
	return rc, nil
}

// FetchManifest reads manifest d of repo.
func (f *registryFetcher) FetchManifest(ctx context.Context, repo string, d digest.Digest) ([]byte, string, error) {
	ref, p, err := f.ref(repo, d)
	if err != nil {
		return nil, "", err
	}
	desc, err := p.Get(ctx, ref)
	if err != nil {
		return nil, "", fmt.Errorf("fetch manifest %s@%s: %w", repo, d, err)
	}
	return desc.Manifest, string(desc.MediaType), nil
}
