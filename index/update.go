package index

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan/match"
)

// DefaultEcosystems returns the osv.dev ecosystems tollgate scans, as named
// in the bucket layout <base>/<ecosystem>/all.zip.
func DefaultEcosystems() []string {
	return []string{
		"Debian", "Ubuntu", "Alpine", "AlmaLinux", "Rocky Linux", "Red Hat", "SUSE", "openSUSE",
		"Wolfi", "Chainguard", "Go", "npm", "PyPI", "Maven", "RubyGems", "crates.io", "NuGet", "Packagist",
	}
}

// Updater keeps the advisory store current from OSV feeds and applies each
// import's delta to the stored findings. `tollgate serve` runs Run in a
// goroutine; `tollgate db update` calls Update once.
type Updater struct {
	Store *AdvisoryStore
	// Rematcher, if set, re-matches the images each delta concerns.
	Rematcher  *Rematcher
	BaseURL    string   // osv.dev layout; e.g. https://osv-vulnerabilities.storage.googleapis.com
	Ecosystems []string // default DefaultEcosystems()
	MaxBytes   int64    // per archive; 0 = no limit
	Interval   time.Duration
	Client     *http.Client
	TempDir    string
	// Progress, if set, returns a progress callback for one ecosystem's download.
	Progress func(ecosystem string) func(read, total int64)
	// OnUpdate, if set, gets every Run round's results (with their deltas),
	// failed rounds included: e.g. lifecycle's OnAdvisoryDeltas, when the
	// Updater runs without its own Rematcher.
	OnUpdate func(ctx context.Context, rs []UpdateResult)
	Log      zerolog.Logger
}

// UpdateResult is the outcome for one source.
type UpdateResult struct {
	Source      string         `json:"source"`
	Origin      string         `json:"origin"`
	NotModified bool           `json:"notModified,omitempty"`
	Count       int            `json:"count"`
	Skipped     int            `json:"skipped"`
	Delta       AdvisoryDelta  `json:"delta"`
	Rematch     *RematchResult `json:"rematch,omitempty"`
	Err         string         `json:"error,omitempty"`
}

// Update downloads every configured ecosystem's all.zip (conditionally) and
// imports what changed. A failed ecosystem leaves its data as it was and is
// reported in its result; the returned error joins the failures.
func (u *Updater) Update(ctx context.Context) ([]UpdateResult, error) {
	ecos := u.Ecosystems
	if len(ecos) == 0 {
		ecos = DefaultEcosystems()
	}
	srcs, err := u.Store.Sources(ctx)
	if err != nil {
		return nil, err
	}
	state := map[string]AdvisorySource{}
	for _, s := range srcs {
		state[s.Source] = s
	}
	var out []UpdateResult
	var errs []error
	for _, eco := range ecos {
		rs, err := u.updateOne(ctx, eco, state[eco])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", eco, err))
			rs = append(rs, UpdateResult{Source: eco, Err: err.Error()})
			u.Log.Warn().Err(err).Str("op", "advisory-update").Str("source", eco).Msg("advisory update failed; keeping previous data")
		}
		out = append(out, rs...)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("index: advisory update: %w", errors.Join(errs...))
	}
	return out, nil
}

func (u *Updater) updateOne(ctx context.Context, eco string, prev AdvisorySource) ([]UpdateResult, error) {
	src := strings.TrimRight(u.BaseURL, "/") + "/" + url.PathEscape(eco) + "/all.zip"
	opts := match.FetchOptions{Client: u.Client, ETag: prev.ETag, LastModified: prev.LastModified, MaxBytes: u.MaxBytes, Dir: u.TempDir}
	if u.Progress != nil {
		opts.Progress = u.Progress(eco)
	}
	f, err := match.Fetch(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	if f.NotModified {
		// The feed answered "unchanged": the data is as fresh as an import
		// that changed nothing, so its ImportedAt (the age status and
		// /metrics show) moves on as such an import's would.
		if err := u.Store.touchImported(ctx, eco, time.Now().UTC()); err != nil {
			return nil, err
		}
		return []UpdateResult{{Source: eco, Origin: src, NotModified: true, Count: prev.Count}}, nil
	}
	defer os.Remove(f.Path)
	zf, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer zf.Close()
	ld, err := match.LoadZip(ctx, zf, f.Size)
	if err != nil {
		return nil, err
	}
	if _, ok := ld.Sources[eco]; !ok && len(ld.Sources) == 0 {
		// An empty archive replaces the source with nothing.
		ld.Sources[eco] = nil
	}
	return u.importLoaded(ctx, ld, ImportOptions{Origin: src, ETag: f.ETag, LastModified: f.LastModified}, nil)
}

// Import loads PATH (directory, zip, or single file; see match.LoadPath)
// and imports each source it holds. A single file merges into its source;
// a directory or zip replaces the sources it holds unless merge is set.
func (u *Updater) Import(ctx context.Context, path string, merge bool) ([]UpdateResult, *match.Loaded, error) {
	return u.NewImportBatch(merge).Import(ctx, path)
}

// ImportBatch imports several paths as one import (`tollgate db import
// DIR1 DIR2`, POST /v1/db/import with several paths): a source's first
// appearance in the batch replaces it as Import would, and its later
// appearances add to it, so the batch leaves each source holding the union
// of its paths' advisories (a later path's copy of an advisory wins).
// Not safe for concurrent use.
type ImportBatch struct {
	u     *Updater
	merge bool
	seen  map[string]bool
}

// NewImportBatch starts a batch; merge as for Import.
func (u *Updater) NewImportBatch(merge bool) *ImportBatch {
	return &ImportBatch{u: u, merge: merge, seen: map[string]bool{}}
}

// Import imports path into the batch; results and errors as Updater.Import.
func (b *ImportBatch) Import(ctx context.Context, path string) ([]UpdateResult, *match.Loaded, error) {
	ld, err := match.LoadPath(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	merge := b.merge
	if st, err := os.Stat(path); err == nil && !st.IsDir() && !strings.EqualFold(strings.TrimPrefix(pathExt(path), "."), "zip") {
		merge = true
	}
	rs, err := b.u.importLoaded(ctx, ld, ImportOptions{Origin: path, Merge: merge}, b.seen)
	return rs, ld, err
}

func pathExt(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 && !strings.ContainsRune(p[i:], '/') {
		return p[i:]
	}
	return ""
}

// importLoaded imports each source of ld; a source in seen (a batch's
// earlier path had it) is merged, and every source imported is added to
// seen (nil: no batch).
func (u *Updater) importLoaded(ctx context.Context, ld *match.Loaded, opts ImportOptions, seen map[string]bool) ([]UpdateResult, error) {
	var out []UpdateResult
	for _, name := range ld.SourceNames() {
		advs := ld.Sources[name]
		o := opts
		if seen != nil {
			o.Merge = o.Merge || seen[name]
			seen[name] = true
		}
		d, err := u.Store.Import(ctx, name, advs, o)
		if err != nil {
			return out, err
		}
		r := UpdateResult{Source: name, Origin: opts.Origin, Count: len(advs), Skipped: len(ld.Skipped), Delta: d}
		if u.Rematcher != nil && !d.Empty() {
			rr, err := u.Rematcher.ApplyDelta(ctx, d)
			if err != nil {
				return append(out, r), err
			}
			r.Rematch = &rr
		}
		out = append(out, r)
	}
	return out, nil
}

// Run updates now and then every Interval (default 6 h) until ctx ends.
// Failures are logged and retried at the next tick; stale data keeps
// serving (its age shows in Sources). It returns ctx's error.
func (u *Updater) Run(ctx context.Context) error {
	iv := u.Interval
	if iv <= 0 {
		iv = 6 * time.Hour
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		rs, err := u.Update(ctx)
		if u.OnUpdate != nil && len(rs) > 0 {
			u.OnUpdate(ctx, rs)
		}
		if err == nil {
			n := 0
			for _, r := range rs {
				if !r.NotModified {
					n++
				}
			}
			u.Log.Info().Str("op", "advisory-update").Int("sources", len(rs)).Int("changed", n).Msg("advisory update done")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// touchImported sets source's ImportedAt to now, as an import that changed
// nothing does, without reading or rewriting its advisories (a conditional
// download answered 304). A source that does not exist is left absent.
func (s *AdvisoryStore) touchImported(ctx context.Context, source string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.bdb.Update(func(txn *badger.Txn) error {
		var src AdvisorySource
		if err := getJSON(txn, key(pfxAdvSource, source), &src); err != nil {
			return err
		}
		src.ImportedAt = now
		return setJSON(txn, key(pfxAdvSource, source), &src)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("index: advisory source %s: %w", source, err)
	}
	return nil
}
