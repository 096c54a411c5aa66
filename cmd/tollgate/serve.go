package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/tollgate-registry/tollgate/config"
	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy"
	"github.com/tollgate-registry/tollgate/proxy/admin"
	"github.com/tollgate-registry/tollgate/proxy/embedded"
	"github.com/tollgate-registry/tollgate/proxy/events"
	"github.com/tollgate-registry/tollgate/proxy/metrics"
	"github.com/tollgate-registry/tollgate/scan/lifecycle"
)

// server is everything `tollgate serve` runs. wireCore fills the core
// (index, registry, proxy, admin); optional components (scan tee,
// lifecycle, policy, admin API, metrics, …) are listed in components() and
// hook into it: set Teer/Gate/Observers on proxy, mount admin routes, add
// background tasks and closers.
type server struct {
	cfg config.Config
	log zerolog.Logger

	// transfers counts the registry requests in flight (set by the scan
	// component): what the analysis yields to.
	transfers *transfers

	db        *index.DB
	records   *index.Records
	referrers *index.Referrers
	registry  *embedded.Registry // nil when an upstream is configured
	proxy     *proxy.Proxy
	admin     *admin.Server

	// embeddedListen, when set (hidden flag --embedded-listen, for
	// benchmarks only), also serves the embedded registry on that address
	// without authentication. Empty: no socket; reached in-process only.
	embeddedListen string

	// Observability and policy (serve_observe.go): metrics is nil without
	// wireMetrics; events is nil (discarding) without webhooks; imageScanner
	// is set by the scan component and used by the pull policy;
	// wrapRegistry wraps the registry listener's handler, outermost last.
	metrics      *metrics.Registry
	events       *events.Publisher
	eventBuilder events.Builder
	imageScanner lifecycle.ImageScanner
	// lifecycle is set by the lifecycle component; the admin API
	// (serve_adminapi.go) uses it for configuration, scans, archiving, in-use.
	lifecycle    *lifecycle.Service
	wrapRegistry []func(http.Handler) http.Handler

	// background tasks run until the serve context ends; an error is logged.
	background []func(ctx context.Context) error
	// closers run in reverse order after the listeners stopped.
	closers []func(ctx context.Context) error
}

// component wires one optional part into s.
type component func(ctx context.Context, s *server) error

// components lists the optional parts wired after the core, in order. Add
// yours here; each lives in its own file.
func components() []component {
	return []component{wireAdminAuth, wireMetrics, wireEvents, wireScan, wirePolicy, wireAdminAPI}
}

func newServeCmd(g *globals) *cobra.Command {
	var listen, adminListen, upstream, embeddedListen string
	var mirror bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry proxy and the admin API",
		Long: `Run the OCI registry proxy on --listen (default :5000) in front of the
embedded registry (data under --data-dir), or of --upstream; with --mirror a
read-only pull-through mirror (default upstream: Docker Hub). The admin API
listens on --admin-listen (default 127.0.0.1:5001).

Admin API authentication: a bearer token (admin.token, env
TOLLGATE_ADMIN_TOKEN) and/or SigV4 access keys (admin.accessKeys, env
TOLLGATE_ADMIN_ACCESS_KEY_ID + TOLLGATE_ADMIN_SECRET_ACCESS_KEY; service
inspector2, ecr or tollgate, any region). With neither configured, serve
generates a token into <data-dir>/admin-token (mode 0600, kept across
restarts); the tollgate CLI reads it with the same --data-dir, or uses
--token / TOLLGATE_ADMIN_TOKEN, or signs with the key variables above.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			fl := cmd.Flags()
			if fl.Changed("listen") {
				cfg.Server.Listen = listen
			}
			if fl.Changed("admin-listen") {
				cfg.Server.AdminListen = adminListen
			}
			if fl.Changed("upstream") {
				cfg.Upstream.URL = upstream
			}
			if fl.Changed("mirror") {
				cfg.Upstream.Mirror = mirror
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return runServeWith(cmd.Context(), cfg, g.logger(cfg), embeddedListen)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":5000", "registry API listen address (env TOLLGATE_LISTEN)")
	f.StringVar(&adminListen, "admin-listen", "127.0.0.1:5001", "admin API listen address; empty disables it (env TOLLGATE_ADMIN_LISTEN)")
	f.StringVar(&upstream, "upstream", "", "upstream registry URL instead of the embedded registry (env TOLLGATE_UPSTREAM_URL)")
	f.BoolVar(&mirror, "mirror", false, "read-only pull-through mirror of --upstream (default Docker Hub) (env TOLLGATE_UPSTREAM_MIRROR)")
	f.StringVar(&embeddedListen, "embedded-listen", "", "benchmarks only: also serve the embedded registry, unauthenticated and around the proxy, on this address")
	_ = f.MarkHidden("embedded-listen")
	return cmd
}

// runServe wires the server, serves until ctx ends (SIGTERM/SIGINT), then
// shuts down within cfg.Server.ShutdownTimeout.
func runServe(ctx context.Context, cfg config.Config, log zerolog.Logger) error {
	if unknown := config.UnknownEnv(os.Environ()); len(unknown) > 0 {
		log.Warn().Strs("variables", unknown).Msg("environment variables named TOLLGATE_* that tollgate does not read (misspelt?); `tollgate serve --help` and README list the ones it does")
	}
	return runServeWith(ctx, cfg, log, "")
}

// runServeWith is runServe with the embedded registry also listening on
// embeddedListen when that is set (benchmarks' direct access).
func runServeWith(ctx context.Context, cfg config.Config, log zerolog.Logger, embeddedListen string) (err error) {
	routeLogrus(log)
	s := &server{cfg: cfg, log: log, embeddedListen: embeddedListen}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout)
		defer cancel()
		for i := len(s.closers) - 1; i >= 0; i-- {
			if cerr := s.closers[i](cctx); cerr != nil {
				log.Error().Err(cerr).Str("op", "shutdown").Msg("close")
				err = errors.Join(err, cerr)
			}
		}
	}()
	if err := wireCore(ctx, s); err != nil {
		return err
	}
	for _, c := range components() {
		if err := c(ctx, s); err != nil {
			return err
		}
	}
	return s.run(ctx)
}

// wireCore opens the index, starts the embedded registry (unless an
// upstream is configured) and builds the proxy and the admin server.
func wireCore(ctx context.Context, s *server) error {
	cfg := s.cfg
	db, err := index.Open(filepath.Join(cfg.DataDir, "index"), index.Options{Logger: s.log})
	if err != nil {
		return err
	}
	s.db = db
	s.closers = append(s.closers, func(context.Context) error { return db.Close() })
	s.records = index.NewRecords(db, index.RecordsOptions{})
	s.referrers = index.NewReferrers(db)

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = cfg.Upstream.Timeout
	tr.DialContext = (&net.Dialer{Timeout: min(cfg.Upstream.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 32
	tr.DisableCompression = true
	tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 256<<10
	if cfg.Upstream.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // configured by the operator
	}
	p := &proxy.Proxy{
		Transport:        tr,
		Timeout:          cfg.Upstream.Timeout,
		MaxManifestBytes: cfg.Server.MaxManifestBytes,
		Records:          s.records,
		Referrers:        s.referrers,
		Logger:           s.log,
	}
	switch {
	case cfg.Upstream.Mirror:
		raw := cfg.Upstream.URL
		if raw == "" {
			raw = proxy.DockerHub
		}
		if p.Upstream, err = url.Parse(raw); err != nil {
			return fmt.Errorf("serve: upstream: %w", err)
		}
		p.Mirror = &proxy.Mirror{Registries: cfg.Upstream.Registries, Username: cfg.Upstream.Username, Password: cfg.Upstream.Password}
		// Blobs read from the upstream are kept, so the scan before a first
		// pull's answer and the client's own pull read each layer once.
		p.Transport = &proxy.MirrorCache{Next: tr, Dir: filepath.Join(cfg.DataDir, "mirror-cache"), MaxBytes: cfg.Upstream.MirrorCacheBytes, Logger: s.log}
		s.log.Info().Str("upstream", p.Upstream.String()).Msg("pull-through mirror mode")
	case cfg.Upstream.URL != "":
		if p.Upstream, err = url.Parse(cfg.Upstream.URL); err != nil {
			return fmt.Errorf("serve: upstream: %w", err)
		}
		p.UpstreamReferrers = true // it may hold referrers pushed around the proxy
		s.log.Info().Str("upstream", p.Upstream.String()).Msg("proxying an upstream registry")
	default:
		reg, err := embedded.Start(ctx, embedded.Options{Dir: filepath.Join(cfg.DataDir, "registry"), Listen: s.embeddedListen, Logger: s.log})
		if err != nil {
			return err
		}
		s.registry = reg
		s.closers = append(s.closers, reg.Close)
		p.Upstream = reg.URL()
		p.Transport = reg.Transport() // in-process: the embedded registry opens no socket
		p.Local = reg.Handler()       // blob GETs: straight into the client's writer
		p.UpstreamName = "embedded registry"
	}
	s.proxy = p
	s.admin = admin.New(admin.Options{Logger: s.log, DB: db, Records: s.records, Ready: s.ready})
	return nil
}

// ready is the admin /readyz check: the registry behind the proxy answers.
func (s *server) ready(ctx context.Context) error {
	if s.registry == nil {
		return nil // an upstream's health is not ours to report
	}
	u := s.registry.URL()
	u.Path = "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := s.registry.Transport().RoundTrip(req)
	if err != nil {
		return fmt.Errorf("embedded registry: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("embedded registry: /v2/ answered %d", resp.StatusCode)
	}
	return nil
}

// run serves the registry and admin listeners and the background tasks
// until ctx ends, then shuts the listeners down gracefully: in-flight
// requests finish or are aborted at cfg.Server.ShutdownTimeout.
func (s *server) run(ctx context.Context) error {
	type listener struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}
	var ls []listener
	add := func(name, addr string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("serve: %s listener %s: %w", name, addr, err)
		}
		ls = append(ls, listener{name, &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}, ln})
		s.log.Info().Str("op", "serve").Str("addr", ln.Addr().String()).Msgf("%s listening", name)
		return nil
	}
	var regHandler http.Handler = proxy.AccessLog(s.log, s.proxy)
	for _, wrap := range s.wrapRegistry {
		regHandler = wrap(regHandler)
	}
	if err := add("registry", s.cfg.Server.Listen, regHandler); err != nil {
		return err
	}
	if err := add("admin", s.cfg.Server.AdminListen, s.admin); err != nil {
		_ = ls[0].ln.Close()
		return err
	}
	bgCtx, bgCancel := context.WithCancel(ctx)
	defer bgCancel()
	var wg sync.WaitGroup
	for _, task := range s.background {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := task(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error().Err(err).Str("op", "background").Msg("task ended")
			}
		}()
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() {
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve: %s: %w", l.name, err)
				return
			}
			errc <- nil
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info().Str("op", "shutdown").Dur("timeout", s.cfg.Server.ShutdownTimeout).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	for _, l := range ls {
		if err := l.srv.Shutdown(sctx); err != nil {
			s.log.Warn().Err(err).Str("op", "shutdown").Msgf("%s: aborting in-flight requests", l.name)
			_ = l.srv.Close()
		}
	}
	bgCancel()
	wg.Wait()
	return runErr
}

// routeLogrus sends distribution's logrus output (process-global, hence
// here in cmd) to zerolog at warn level and above.
func routeLogrus(log zerolog.Logger) {
	l := logrus.StandardLogger()
	l.SetOutput(discard{})
	l.SetLevel(logrus.WarnLevel)
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(logrusHook{log.With().Str("op", "distribution").Logger()})
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

type logrusHook struct{ log zerolog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	ev := h.log.Warn()
	if e.Level <= logrus.ErrorLevel {
		ev = h.log.Error()
	}
	for k, v := range e.Data {
		if k == "go.version" || k == "instance.id" {
			continue
		}
		ev = ev.Interface(k, v)
	}
	ev.Msg(e.Message)
	return nil
}
