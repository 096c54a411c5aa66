// Package embedded runs the CNCF distribution registry
// (github.com/distribution/distribution/v3, handlers.App) in-process, with
// filesystem storage. The proxy and the scan fetcher reach it through
// Transport (distribution's handler called in-process), speaking HTTP to it
// exactly as to any upstream registry: one code path for embedded and
// upstream modes. The one exception is the proxy's blob GETs, which go
// through Handler so the registry writes straight into the client's
// connection. It opens no socket unless Options.Listen asks for one:
// anything listening would be an unauthenticated way around the proxy's
// records, archive and scanning.
package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage driver "filesystem"
	"github.com/rs/zerolog"
)

// Options configures Start. Dir is required; the zero value of the rest works.
type Options struct {
	// Dir is the storage root (filesystem driver rootdirectory), usually
	// <dataDir>/registry. It is created if missing.
	Dir string
	// Listen, when set, also serves the registry on that TCP address with
	// no authentication, bypassing the proxy: an explicit opt-in for
	// benchmarks and tests that need direct access (e.g. "127.0.0.1:0").
	// Empty (the default): no listener; use Transport.
	Listen string
	// ForeignURLs is the allow regexp for foreign (non-distributable) layer
	// URLs in pushed manifests; default `^https?://`.
	ForeignURLs string
	Logger      zerolog.Logger
}

// Registry is a running embedded distribution registry.
type Registry struct {
	url *url.URL
	app *handlers.App
	srv *http.Server // nil without Options.Listen
	log zerolog.Logger
	// done is closed when Serve returns (nil without a listener).
	done chan struct{}
}

// Host is the registry's name in URL() when it does not listen: a reserved
// (.invalid) name that never resolves, so nothing can dial it by mistake;
// only Transport serves it.
const Host = "embedded.tollgate.invalid"

// secretFile keeps the HMAC secret of upload-session state across restarts,
// so an interrupted upload can resume after tollgate restarts.
const secretFile = "http-secret"

// Start creates the storage directory, builds distribution's App (delete
// enabled, redirects off, foreign-layer URLs allowed, in-memory blob
// descriptor cache); with Options.Listen it also serves it on that address.
// Errors: directory or listener failures, and distribution's configuration
// panics turned into errors.
//
// Distribution logs through logrus' standard logger; the caller (cmd) routes
// or silences it, since that logger is process-global.
func Start(ctx context.Context, opts Options) (r *Registry, err error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded: Options.Dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	secret, err := loadSecret(filepath.Join(opts.Dir, secretFile))
	if err != nil {
		return nil, err
	}
	foreign := opts.ForeignURLs
	if foreign == "" {
		foreign = `^https?://`
	}
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": opts.Dir},
			"delete":     configuration.Parameters{"enabled": true},
			"redirect":   configuration.Parameters{"disable": true},
			"cache":      configuration.Parameters{"blobdescriptor": "inmemory"},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{
				"enabled": true, "age": "168h", "interval": "24h", "dryrun": false,
			}},
		},
	}
	cfg.HTTP.Secret = secret
	cfg.HTTP.Headers = http.Header{"X-Content-Type-Options": []string{"nosniff"}}
	cfg.Validation.Manifests.URLs.Allow = []string{foreign}
	cfg.Catalog.MaxEntries = 1000

	app, err := newApp(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r = &Registry{url: &url.URL{Scheme: "http", Host: Host}, app: app, log: opts.Logger}
	if opts.Listen != "" {
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			_ = app.Shutdown()
			return nil, fmt.Errorf("embedded: listen %s: %w", opts.Listen, err)
		}
		r.url.Host = ln.Addr().String()
		r.done = make(chan struct{})
		r.srv = &http.Server{
			Handler:           app,
			ReadHeaderTimeout: 30 * time.Second,
			// distribution logs through logrus; net/http errors go nowhere useful.
			ErrorLog: nil,
		}
		go func() {
			defer close(r.done)
			if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error().Err(err).Str("op", "embedded").Msg("embedded registry stopped")
			}
		}()
		r.log.Warn().Str("op", "embedded").Str("addr", ln.Addr().String()).
			Msg("embedded registry also listening without authentication (direct access bypasses the proxy)")
	}
	r.log.Info().Str("op", "embedded").Str("dir", opts.Dir).Str("url", r.url.String()).Msg("embedded registry started")
	return r, nil
}

// newApp calls handlers.NewApp, which panics on configuration errors.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("embedded: distribution: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// URL is the registry's base URL for the proxy's upstream and the scan
// fetcher, served by Transport: http://embedded.tollgate.invalid, or the
// listener's http://host:port with Options.Listen.
func (r *Registry) URL() *url.URL { u := *r.url; return &u }

// Close stops the listener (if any), waits for its in-flight requests until
// ctx is done, then stops distribution's background work.
func (r *Registry) Close(ctx context.Context) error {
	var err error
	if r.srv != nil {
		if err = r.srv.Shutdown(ctx); err != nil {
			_ = r.srv.Close()
		}
		<-r.done
	}
	if e := r.app.Shutdown(); e != nil && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

func loadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("embedded: read secret: %w", err)
	}
	var buf [32]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", fmt.Errorf("embedded: secret: %w", err)
	}
	s := hex.EncodeToString(buf[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("embedded: write secret: %w", err)
	}
	return s, nil
}
