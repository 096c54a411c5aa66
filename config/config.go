// Package config holds tollgate's configuration: plain structs with defaults
// (Default), strict YAML loading (unknown keys are errors), TOLLGATE_*
// environment overrides, and Validate. Only cmd/tollgate reads files; other
// packages take their own Options structs.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. YAML keys are the lowerCamel field names.
type Config struct {
	DataDir  string       `yaml:"dataDir"`
	Log      Log          `yaml:"log"`
	Server   Server       `yaml:"server"`
	Upstream Upstream     `yaml:"upstream"`
	Scan     Scan         `yaml:"scan"`
	DB       DB           `yaml:"db"`
	Scanning Scanning     `yaml:"scanning"`
	Admin    Admin        `yaml:"admin"`
	Policy   []PullPolicy `yaml:"policy"`
}

// Log configures the zerolog logger.
type Log struct {
	Format string `yaml:"format"` // json (default) or console
	Level  string `yaml:"level"`  // trace, debug, info (default), warn, error
}

// Server configures the listeners.
type Server struct {
	Listen          string        `yaml:"listen"`          // registry API, default ":5000"
	AdminListen     string        `yaml:"adminListen"`     // admin API, default "127.0.0.1:5001"
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"` // default 30s
	// MaxManifestBytes caps manifest bodies (default 4 MiB, as distribution).
	MaxManifestBytes int64 `yaml:"maxManifestBytes"`
}

// Upstream selects what the proxy fronts. Empty URL means the embedded registry.
type Upstream struct {
	URL string `yaml:"url"`
	// Mirror makes the proxy a read-only pull-through mirror of URL
	// (default https://registry-1.docker.io when URL is empty).
	Mirror   bool          `yaml:"mirror"`
	Username string        `yaml:"username"`
	Password string        `yaml:"password"`
	Timeout  time.Duration `yaml:"timeout"` // response-header timeout, default 30s
	Insecure bool          `yaml:"insecure"`
	// Registries maps containerd's ?ns=<registry> to base URLs (mirror mode).
	// A missing entry means https://<ns>.
	Registries map[string]string `yaml:"registries"`
	// MirrorCacheBytes bounds the mirror's on-disk blob cache under
	// <dataDir>/mirror-cache (bytes, default 10 GiB; least recently used
	// blobs go first). The cache lets a first pull read each layer from the
	// upstream once although it is scanned before it is served.
	MirrorCacheBytes int64 `yaml:"mirrorCacheBytes"`
}

// Scan configures the tee and the layer analysis limits.
type Scan struct {
	Enabled        *bool `yaml:"enabled"`        // default true
	Workers        int   `yaml:"workers"`        // concurrent analyses, default number of cores
	TeeBufferBytes int64 `yaml:"teeBufferBytes"` // per-blob tee buffer before detaching, default 32 MiB, at most 1 GiB (all blobs together: 128 MiB, or one buffer if larger)
	// AnalysisTimeout bounds a layer's analysis in the tee once its last
	// byte has arrived (default 5m; while bytes arrive the tee buffer bounds
	// it). Past it the analysis worker is freed, nothing is committed, and
	// the layer is read from the registry by its image scan.
	AnalysisTimeout time.Duration `yaml:"analysisTimeout"`
	// AnalysisYields says whether the tee's layer analysis waits while
	// blob transfers are in flight (at most 2 s per layer), so that they
	// get the CPU first: "always", "never", or "auto" (the default: on
	// machines with at most 2 cores, GOMAXPROCS, where an analysis beside
	// a transfer slows it). Waiting costs time to findings: a layer is then
	// analysed after its upload instead of during it.
	AnalysisYields string `yaml:"analysisYields"`
	Limits         Limits `yaml:"limits"`
}

// Values of Scan.AnalysisYields.
const (
	YieldAuto   = "auto"
	YieldAlways = "always"
	YieldNever  = "never"
)

// YieldsToTransfers resolves AnalysisYields for a machine with procs
// usable cores.
func (s Scan) YieldsToTransfers(procs int) bool {
	switch s.AnalysisYields {
	case YieldAlways:
		return true
	case YieldNever:
		return false
	}
	return procs <= 2
}

// Limits bound analysis memory and work per layer.
type Limits struct {
	MaxEntryBufferBytes int64   `yaml:"maxEntryBufferBytes"` // in-memory per entry before spilling to disk, default 32 MiB
	MaxEntryBytes       int64   `yaml:"maxEntryBytes"`       // largest entry analysed at all, default 1 GiB
	MaxLayerBytes       int64   `yaml:"maxLayerBytes"`       // uncompressed bytes per layer, default 64 GiB
	MaxEntries          int64   `yaml:"maxEntries"`          // tar entries per layer, default 2,000,000
	MaxNestingDepth     int     `yaml:"maxNestingDepth"`     // nested archives, default 8
	MaxCompressionRatio float64 `yaml:"maxCompressionRatio"` // uncompressed/compressed, default 200
}

// DB configures the advisory database.
type DB struct {
	// Sources are base URLs in osv.dev's layout (<base>/<ecosystem>/all.zip).
	BaseURL          string        `yaml:"baseURL"`          // default https://osv-vulnerabilities.storage.googleapis.com
	Ecosystems       []string      `yaml:"ecosystems"`       // default: every ecosystem tollgate scans
	RefreshInterval  time.Duration `yaml:"refreshInterval"`  // default 6h; 0 disables
	MaxDownloadBytes int64         `yaml:"maxDownloadBytes"` // default 2 GiB per archive
}

// Scanning is the registry scanning configuration applied at first start
// (afterwards it lives in Badger and changes through the admin API).
type Scanning struct {
	ScanType               string         `yaml:"scanType"` // ENHANCED (default) or BASIC
	Rules                  []ScanningRule `yaml:"rules"`
	RescanDuration         string         `yaml:"rescanDuration"`         // LIFETIME, DAYS_14 (default) … DAYS_180
	PullDateRescanDuration string         `yaml:"pullDateRescanDuration"` // DAYS_14 (default) … DAYS_180
	PullDateRescanMode     string         `yaml:"pullDateRescanMode"`     // LAST_PULL_DATE (default) or LAST_IN_USE_AT
	SweepInterval          time.Duration  `yaml:"sweepInterval"`          // default 1h
}

// ScanningRule is ECR's RegistryScanningRule.
type ScanningRule struct {
	ScanFrequency     string             `yaml:"scanFrequency"` // SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL
	RepositoryFilters []RepositoryFilter `yaml:"repositoryFilters"`
}

// RepositoryFilter is ECR's ScanningRepositoryFilter.
type RepositoryFilter struct {
	Filter     string `yaml:"filter"`
	FilterType string `yaml:"filterType"` // WILDCARD
}

// Admin configures the admin API.
type Admin struct {
	Token       string      `yaml:"token"`
	AccessKeys  []AccessKey `yaml:"accessKeys"`
	Region      string      `yaml:"region"` // SigV4 region, default us-east-1
	MetricsOpen bool        `yaml:"metricsOpen"`
	SbomDir     string      `yaml:"sbomDir"`   // default <dataDir>/sbom
	ReportDir   string      `yaml:"reportDir"` // default <dataDir>/reports
	Webhooks    []Webhook   `yaml:"webhooks"`
}

// AccessKey is an AWS-style key pair accepted for SigV4.
type AccessKey struct {
	AccessKeyID     string `yaml:"accessKeyId"`
	SecretAccessKey string `yaml:"secretAccessKey"`
}

// Webhook receives CloudEvents.
type Webhook struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

// PullPolicy refuses pulls of images with ACTIVE findings at or above Severity.
type PullPolicy struct {
	RepositoryFilter string `yaml:"repositoryFilter"` // wildcard, default "*"
	Severity         string `yaml:"severity"`         // CRITICAL, HIGH, MEDIUM, LOW
	// ScanTimeout bounds the wait for the scan of a not-yet-scanned image
	// before its first pull is answered (default 25s, kept below
	// upstream.timeout which bounds it too; see docs/policy.md).
	ScanTimeout time.Duration `yaml:"scanTimeout"`
	// FailOpen serves the image when that scan does not finish in time or
	// fails; the default (false) refuses the pull with DENIED until it has.
	FailOpen bool `yaml:"failOpen"`
}

// Default returns the zero-configuration defaults.
func Default() Config {
	t := true
	return Config{
		DataDir: "./tollgate-data",
		Log:     Log{Format: "json", Level: "info"},
		Server: Server{
			Listen:           ":5000",
			AdminListen:      "127.0.0.1:5001",
			ShutdownTimeout:  30 * time.Second,
			MaxManifestBytes: 4 << 20,
		},
		Upstream: Upstream{Timeout: 30 * time.Second, MirrorCacheBytes: 10 << 30},
		Scan: Scan{
			Enabled:         &t,
			TeeBufferBytes:  32 << 20,
			AnalysisTimeout: 5 * time.Minute,
			AnalysisYields:  YieldAuto,
			Limits: Limits{
				MaxEntryBufferBytes: 32 << 20,
				MaxEntryBytes:       1 << 30,
				MaxLayerBytes:       64 << 30,
				MaxEntries:          2_000_000,
				MaxNestingDepth:     8,
				MaxCompressionRatio: 200,
			},
		},
		DB: DB{
			BaseURL:          "https://osv-vulnerabilities.storage.googleapis.com",
			RefreshInterval:  6 * time.Hour,
			MaxDownloadBytes: 2 << 30,
		},
		Scanning: Scanning{
			ScanType: "ENHANCED",
			Rules: []ScanningRule{{
				ScanFrequency:     "CONTINUOUS_SCAN",
				RepositoryFilters: []RepositoryFilter{{Filter: "*", FilterType: "WILDCARD"}},
			}},
			RescanDuration:         "DAYS_14",
			PullDateRescanDuration: "DAYS_14",
			PullDateRescanMode:     "LAST_PULL_DATE",
			SweepInterval:          time.Hour,
		},
		Admin: Admin{Region: "us-east-1"},
	}
}

// Load reads defaults, then the YAML file at path (if non-empty; unknown keys
// are errors), then TOLLGATE_* environment variables from env (os.Environ
// format; nil means the process environment).
func Load(path string, env []string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(b, &c); err != nil {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if env == nil {
		env = os.Environ()
	}
	if err := applyEnv(&c, env); err != nil {
		return c, err
	}
	return c, nil
}

func decodeStrict(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return yamlPaths(err)
	}
	return nil
}

// goTypeRef matches the Go type yaml.v3 names in its errors ("field listn
// not found in type config.Server").
var goTypeRef = regexp.MustCompile(`in type config\.(\w+)`)

// sectionOf maps each configuration struct's Go type name to its YAML path
// ("" for the top level), from the yaml tags.
var sectionOf = func() map[string]string {
	m := map[string]string{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
			if path != "" && !strings.HasSuffix(path, "[]") {
				path += "[]"
			}
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		if _, seen := m[t.Name()]; !seen {
			m[t.Name()] = path
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			walk(f.Type, p)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return m
}()

// yamlPaths rewrites yaml.v3's Go type names into the YAML section they
// decode (`in section "server"`), which is what a user edits.
func yamlPaths(err error) error {
	msg := goTypeRef.ReplaceAllStringFunc(err.Error(), func(s string) string {
		sec, ok := sectionOf[goTypeRef.FindStringSubmatch(s)[1]]
		switch {
		case !ok:
			return s
		case sec == "":
			return "at the top level"
		}
		return fmt.Sprintf("in section %q", sec)
	})
	return &yamlError{msg: msg, err: err}
}

// yamlError is a YAML decoding error with its message in YAML terms; it
// unwraps to yaml.v3's error.
type yamlError struct {
	msg string
	err error
}

func (e *yamlError) Error() string { return e.msg }
func (e *yamlError) Unwrap() error { return e.err }

// envVars maps environment variables onto fields.
var envVars = map[string]func(c *Config, v string) error{
	"TOLLGATE_DATA_DIR":          func(c *Config, v string) error { c.DataDir = v; return nil },
	"TOLLGATE_LISTEN":            func(c *Config, v string) error { c.Server.Listen = v; return nil },
	"TOLLGATE_ADMIN_LISTEN":      func(c *Config, v string) error { c.Server.AdminListen = v; return nil },
	"TOLLGATE_UPSTREAM_URL":      func(c *Config, v string) error { c.Upstream.URL = v; return nil },
	"TOLLGATE_UPSTREAM_USERNAME": func(c *Config, v string) error { c.Upstream.Username = v; return nil },
	"TOLLGATE_UPSTREAM_PASSWORD": func(c *Config, v string) error { c.Upstream.Password = v; return nil },
	"TOLLGATE_LOG_FORMAT":        func(c *Config, v string) error { c.Log.Format = v; return nil },
	"TOLLGATE_LOG_LEVEL":         func(c *Config, v string) error { c.Log.Level = v; return nil },
	"TOLLGATE_ADMIN_TOKEN":       func(c *Config, v string) error { c.Admin.Token = v; return nil },
	"TOLLGATE_DB_BASE_URL":       func(c *Config, v string) error { c.DB.BaseURL = v; return nil },
	"TOLLGATE_UPSTREAM_MIRROR": func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "1", "true", "yes":
			c.Upstream.Mirror = true
		case "0", "false", "no", "":
			c.Upstream.Mirror = false
		default:
			return fmt.Errorf("config: TOLLGATE_UPSTREAM_MIRROR=%q: want true or false", v)
		}
		return nil
	},
}

// otherEnv are TOLLGATE_* variables read elsewhere: the CLI's, and the test
// and benchmark harnesses' (names ending in "_" are prefixes).
var otherEnv = []string{"TOLLGATE_ADMIN_URL", "TOLLGATE_ADMIN_ACCESS_KEY_ID", "TOLLGATE_ADMIN_SECRET_ACCESS_KEY",
	"TOLLGATE_SHARED", "TOLLGATE_BENCH_", "TOLLGATE_FULLDISK_DIR", "TOLLGATE_REGISTRY", "TOLLGATE_RECORDS_KILL_CHILD",
	"TOLLGATE_LIFECYCLE_CRASH_DIR"}

// UnknownEnv returns the TOLLGATE_* variables in env (os.Environ format)
// that nothing reads, sorted: a misspelt TOLLGATE_LOGLEVEL would otherwise
// be ignored without a word. serve logs them as a warning.
func UnknownEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "TOLLGATE_") {
			continue
		}
		if _, ok := envVars[k]; ok {
			continue
		}
		known := false
		for _, o := range otherEnv {
			if k == o || (strings.HasSuffix(o, "_") && strings.HasPrefix(k, o)) {
				known = true
				break
			}
		}
		if !known {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func applyEnv(c *Config, env []string) error {
	var keyID, secret string
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "TOLLGATE_ADMIN_ACCESS_KEY_ID":
			keyID = v
		case "TOLLGATE_ADMIN_SECRET_ACCESS_KEY":
			secret = v
		}
		if f, ok := envVars[k]; ok {
			if err := f(c, v); err != nil {
				return err
			}
		}
	}
	if keyID != "" || secret != "" {
		c.Admin.AccessKeys = append(c.Admin.AccessKeys, AccessKey{AccessKeyID: keyID, SecretAccessKey: secret})
	}
	return nil
}

// Validate reports every problem in c, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("config: "+f, a...)) }
	if c.DataDir == "" {
		bad("dataDir must not be empty")
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format %q: want json or console", c.Log.Format)
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want trace, debug, info, warn or error", c.Log.Level)
	}
	if c.Server.Listen == "" {
		bad("server.listen must not be empty")
	}
	if c.Server.ShutdownTimeout <= 0 {
		bad("server.shutdownTimeout must be positive")
	}
	if c.Server.MaxManifestBytes <= 0 {
		bad("server.maxManifestBytes must be positive")
	}
	if c.Upstream.URL != "" {
		u, err := url.Parse(c.Upstream.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("upstream.url %q: want http(s)://host[:port]", c.Upstream.URL)
		}
	}
	if c.Upstream.MirrorCacheBytes <= 0 {
		bad("upstream.mirrorCacheBytes must be positive")
	}
	if c.Upstream.Timeout <= 0 {
		bad("upstream.timeout must be positive")
	}
	if c.Scan.TeeBufferBytes <= 0 || c.Scan.TeeBufferBytes > 1<<30 {
		bad("scan.teeBufferBytes must be between 1 and 1073741824 (1 GiB)")
	}
	if c.Scan.AnalysisTimeout <= 0 {
		bad("scan.analysisTimeout must be positive")
	}
	switch c.Scan.AnalysisYields {
	case YieldAuto, YieldAlways, YieldNever:
	default:
		bad(fmt.Sprintf("scan.analysisYields must be auto, always or never, not %q", c.Scan.AnalysisYields))
	}
	if c.Scan.Workers < 0 {
		bad("scan.workers must not be negative")
	}
	l := c.Scan.Limits
	if l.MaxEntryBufferBytes <= 0 || l.MaxEntryBytes <= 0 || l.MaxLayerBytes <= 0 || l.MaxEntries <= 0 || l.MaxNestingDepth <= 0 || l.MaxCompressionRatio <= 1 {
		bad("scan.limits: every limit must be positive (maxCompressionRatio > 1)")
	}
	if c.DB.RefreshInterval < 0 {
		bad("db.refreshInterval must not be negative")
	}
	switch c.Scanning.ScanType {
	case "ENHANCED", "BASIC":
	default:
		bad("scanning.scanType %q: want ENHANCED or BASIC", c.Scanning.ScanType)
	}
	for i, r := range c.Scanning.Rules {
		switch r.ScanFrequency {
		case "SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL":
		default:
			bad("scanning.rules[%d].scanFrequency %q: want SCAN_ON_PUSH, CONTINUOUS_SCAN or MANUAL", i, r.ScanFrequency)
		}
		if c.Scanning.ScanType == "BASIC" && r.ScanFrequency == "CONTINUOUS_SCAN" {
			bad("scanning.rules[%d]: CONTINUOUS_SCAN needs scanType ENHANCED", i)
		}
		if c.Scanning.ScanType == "ENHANCED" && r.ScanFrequency == "MANUAL" {
			bad("scanning.rules[%d]: MANUAL needs scanType BASIC", i)
		}
		for j, f := range r.RepositoryFilters {
			if f.Filter == "" || (f.FilterType != "WILDCARD" && f.FilterType != "") {
				bad("scanning.rules[%d].repositoryFilters[%d]: want a non-empty filter of filterType WILDCARD", i, j)
			}
		}
	}
	switch c.Scanning.RescanDuration {
	case "LIFETIME", "DAYS_14", "DAYS_30", "DAYS_60", "DAYS_90", "DAYS_180":
	default:
		bad("scanning.rescanDuration %q: want LIFETIME or DAYS_14/30/60/90/180", c.Scanning.RescanDuration)
	}
	switch c.Scanning.PullDateRescanDuration {
	case "DAYS_14", "DAYS_30", "DAYS_60", "DAYS_90", "DAYS_180":
	default:
		bad("scanning.pullDateRescanDuration %q: want DAYS_14/30/60/90/180", c.Scanning.PullDateRescanDuration)
	}
	switch c.Scanning.PullDateRescanMode {
	case "LAST_PULL_DATE", "LAST_IN_USE_AT":
	default:
		bad("scanning.pullDateRescanMode %q: want LAST_PULL_DATE or LAST_IN_USE_AT", c.Scanning.PullDateRescanMode)
	}
	if c.Scanning.SweepInterval <= 0 {
		bad("scanning.sweepInterval must be positive")
	}
	for i, k := range c.Admin.AccessKeys {
		if k.AccessKeyID == "" || k.SecretAccessKey == "" {
			bad("admin.accessKeys[%d]: both accessKeyId and secretAccessKey are needed", i)
		}
	}
	for i, w := range c.Admin.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("admin.webhooks[%d].url %q: want http(s)://…", i, w.URL)
		}
	}
	for i, p := range c.Policy {
		switch p.Severity {
		case "CRITICAL", "HIGH", "MEDIUM", "LOW":
		default:
			bad("policy[%d].severity %q: want CRITICAL, HIGH, MEDIUM or LOW", i, p.Severity)
		}
		switch {
		case p.ScanTimeout < 0:
			bad("policy[%d].scanTimeout %s must not be negative", i, p.ScanTimeout)
		case p.ScanTimeout > 0 && c.Upstream.Timeout > 0 && p.ScanTimeout >= c.Upstream.Timeout:
			// the manifest request as a whole is bounded by upstream.timeout: a
			// longer wait would end in a 504 instead of the documented DENIED
			bad("policy[%d].scanTimeout %s must be below upstream.timeout %s, which bounds the whole manifest request", i, p.ScanTimeout, c.Upstream.Timeout)
		}
	}
	return errors.Join(errs...)
}

// ScanEnabled reports whether the tee and analysis run.
func (c Config) ScanEnabled() bool { return c.Scan.Enabled == nil || *c.Scan.Enabled }
