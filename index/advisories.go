package index

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan/match"
)

// Advisory keyspace. Each source (a base ecosystem: "Go", "PyPI",
// "AlmaLinux", "Alpine") lives in one generation; an import writes a new
// generation beside the live one and flips the source's pointer in one
// small transaction, so readers see the old data until the flip and a failed
// import changes nothing.
//
//	adv/<gen>/<ecosystem>/<name>/<id>   empty: the advisory affects the package (escaped components)
//	ads/b/<gen>/<id>                    the advisory (once, however many packages it affects)
//	ads/src/<source>                    AdvisorySource: live generation, counts, newest modified
//	ads/h/<gen>/<id>                    advisoryDigest: content hash, modified, packages (for deltas)
//	ads/stg/<gen>                       generation being staged (cleaned if an import dies)
//	ads/old/<gen>                       generation retired, being deleted
const (
	pfxAdvSource = pfxAdvMeta + "src/"
	pfxAdvHash   = pfxAdvMeta + "h/"
	pfxAdvBody   = pfxAdvMeta + "b/"
	pfxAdvStage  = pfxAdvMeta + "stg/"
	pfxAdvOld    = pfxAdvMeta + "old/"
)

// AdvisorySource is the metadata of one imported source (ads/src/<source>).
type AdvisorySource struct {
	Source         string    `json:"source"`
	Generation     string    `json:"generation"`
	Ecosystems     []string  `json:"ecosystems"` // base ecosystems present
	Count          int       `json:"count"`      // advisories, withdrawn included
	Withdrawn      int       `json:"withdrawn"`
	Packages       int       `json:"packages"` // distinct (ecosystem, name) pairs
	NewestModified time.Time `json:"newestModified"`
	ImportedAt     time.Time `json:"importedAt"` // last successful import (changed or not)
	ChangedAt      time.Time `json:"changedAt"`  // last import that changed data
	Origin         string    `json:"origin,omitempty"`
	// ETag and LastModified of the last download, for conditional requests.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// KeyScheme is the package-key scheme of the generation's adv/ keys:
	// 0 = names as the feed spells them (before 2026-11), 1 = names
	// normalised by match.NormalizeName (PEP 503 for PyPI, lowercase for
	// NuGet and Packagist). The next import of the source re-keys a
	// scheme-0 generation; until then ForPackage looks under both spellings.
	KeyScheme int `json:"keyScheme,omitempty"`
}

// advKeyScheme is the current AdvisorySource.KeyScheme.
const advKeyScheme = 1

// Age is how long ago the source was last imported, at now.
func (s AdvisorySource) Age(now time.Time) time.Duration { return now.Sub(s.ImportedAt) }

// AdvisoryDelta is what one import changed in one source. Packages lists
// every (ecosystem, name) pair whose advisories changed (old and new
// affected packages of changed, withdrawn and removed advisories, new ones of
// added advisories), sorted: the packages whose images must be re-matched.
type AdvisoryDelta struct {
	Source    string             `json:"source"`
	Added     []string           `json:"added,omitempty"`
	Changed   []string           `json:"changed,omitempty"`
	Withdrawn []string           `json:"withdrawn,omitempty"`
	Removed   []string           `json:"removed,omitempty"` // absent from a replacing import
	Packages  []match.PackageKey `json:"packages,omitempty"`
}

// Empty reports whether the import changed nothing.
func (d AdvisoryDelta) Empty() bool {
	return len(d.Added)+len(d.Changed)+len(d.Withdrawn)+len(d.Removed) == 0
}

// ImportOptions tunes one import.
type ImportOptions struct {
	// Merge keeps advisories of the source that the import does not name
	// (single-file imports); otherwise the import replaces the source.
	Merge        bool
	Origin       string // URL or path, shown by status
	ETag         string
	LastModified string
	Now          time.Time // zero means time.Now()
}

type advisoryDigest struct {
	Hash      string             `json:"h"`
	Modified  time.Time          `json:"m"`
	Withdrawn bool               `json:"w,omitempty"`
	Packages  []match.PackageKey `json:"p"`
}

// AdvisoryStore stores OSV advisories by affected package and implements
// match.Advisories. Safe for concurrent use; imports are serialised.
type AdvisoryStore struct {
	db  *DB
	log zerolog.Logger
	mu  sync.Mutex // one import at a time

	// cache holds decoded advisories by "<generation>/<id>" (a generation
	// never changes, so entries never go stale), at most cacheMax; it is
	// emptied when full.
	cacheMu sync.Mutex
	cache   map[string]match.Advisory
}

// cacheMax bounds the decoded-advisory cache (entries).
const cacheMax = 8192

// NewAdvisoryStore returns the advisory store of db.
func NewAdvisoryStore(db *DB, log zerolog.Logger) *AdvisoryStore {
	return &AdvisoryStore{db: db, log: log}
}

var _ match.Advisories = (*AdvisoryStore)(nil)

// esc escapes one key component ('/' and other specials become %XX).
func esc(s string) string { return url.QueryEscape(s) }

func advPrefix(gen, eco, name string) []byte {
	return key(pfxAdvisory, gen, esc(eco), esc(name)) // no trailing '/': added by callers
}

// ForPackage returns the live advisories filed under (ecosystem, name),
// withdrawn ones included (Match skips them). name is compared normalised
// (match.NormalizeName): "Jinja2" finds the advisories for "jinja2". One prefix scan per source
// carrying the base ecosystem (normally one). Decoded advisories are cached
// and shared: callers must not modify them.
func (s *AdvisoryStore) ForPackage(ctx context.Context, ecosystem, name string) ([]match.Advisory, error) {
	var out []match.Advisory
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		srcs, err := sourcesTxn(txn)
		if err != nil {
			return err
		}
		base := match.BaseEcosystem(ecosystem)
		for _, src := range srcs {
			if !containsStr(src.Ecosystems, base) {
				continue
			}
			names := []string{match.NormalizeName(ecosystem, name)}
			if src.KeyScheme < advKeyScheme && name != names[0] {
				names = append(names, name) // not re-keyed yet: names as the feed spelt them
			}
			var ids []string
			for _, n := range names {
				p := append(advPrefix(src.Generation, ecosystem, n), '/')
				err := scanPrefix(txn, p, true, func(it *badger.Item) error {
					if id := string(it.Key()[len(p):]); !containsStr(ids, id) {
						ids = append(ids, id)
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			for _, id := range ids {
				ck := src.Generation + "/" + id
				if a, ok := s.cached(ck); ok {
					out = append(out, a)
					continue
				}
				var a match.Advisory
				if err := getJSON(txn, key(pfxAdvBody, src.Generation, id), &a); err != nil {
					return err
				}
				s.remember(ck, a)
				out = append(out, a)
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("index: advisories for %s/%s: %w", ecosystem, name, err)
	}
	return out, nil
}

func (s *AdvisoryStore) cached(k string) (match.Advisory, bool) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	a, ok := s.cache[k]
	return a, ok
}

func (s *AdvisoryStore) remember(k string, a match.Advisory) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cache == nil || len(s.cache) >= cacheMax {
		s.cache = make(map[string]match.Advisory, 1024)
	}
	s.cache[k] = a
}

// Sources lists every imported source's metadata, sorted by name.
func (s *AdvisoryStore) Sources(ctx context.Context) ([]AdvisorySource, error) {
	var out []AdvisorySource
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		var err error
		out, err = sourcesTxn(txn)
		return err
	})
	return out, err
}

func sourcesTxn(txn *badger.Txn) ([]AdvisorySource, error) {
	var out []AdvisorySource
	err := scanPrefix(txn, []byte(pfxAdvSource), false, func(it *badger.Item) error {
		var src AdvisorySource
		if err := it.Value(func(b []byte) error { return decode(b, &src) }); err != nil {
			return err
		}
		out = append(out, src)
		return nil
	})
	return out, err
}

// Import makes advs the content of source (or merges them in, with
// opts.Merge) atomically and returns the delta against the previous content.
// Advisories are compared by content hash (which covers `modified`). An
// import that changes nothing rewrites nothing but the source's ImportedAt
// (and ETag). Duplicate ids in advs: the last wins. Errors leave the live
// data untouched.
func (s *AdvisoryStore) Import(ctx context.Context, source string, advs []match.Advisory, opts ImportOptions) (AdvisoryDelta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := opts.Now
	if now.IsZero() {
		now = time.Now().UTC()
	}
	delta := AdvisoryDelta{Source: source}
	if source == "" || strings.Contains(source, "/") {
		return delta, fmt.Errorf("index: import: bad source name %q", source)
	}
	if err := s.cleanup(ctx); err != nil {
		return delta, err
	}
	var old *AdvisorySource
	oldDigests := map[string]advisoryDigest{}
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		var src AdvisorySource
		err := getJSON(txn, key(pfxAdvSource, source), &src)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		old = &src
		return scanPrefix(txn, key(pfxAdvHash, src.Generation, ""), false, func(it *badger.Item) error {
			var d advisoryDigest
			if err := it.Value(func(b []byte) error { return decode(b, &d) }); err != nil {
				return err
			}
			id := string(it.Key()[len(pfxAdvHash)+len(src.Generation)+1:])
			oldDigests[id] = d
			return nil
		})
	})
	if err != nil {
		return delta, fmt.Errorf("index: import %s: read current: %w", source, err)
	}

	next := map[string]*match.Advisory{}
	for i := range advs {
		if err := advs[i].Validate(); err != nil {
			return delta, fmt.Errorf("index: import %s: %w", source, err)
		}
		next[advs[i].ID] = &advs[i]
	}
	if opts.Merge && old != nil {
		// Carry over what the import does not name.
		if err := s.db.bdb.View(func(txn *badger.Txn) error {
			return scanPrefix(txn, key(pfxAdvBody, old.Generation, ""), false, func(it *badger.Item) error {
				k := string(it.Key())
				id := k[strings.LastIndexByte(k, '/')+1:]
				if next[id] != nil {
					return nil
				}
				var a match.Advisory
				if err := it.Value(func(b []byte) error { return decode(b, &a) }); err != nil {
					return err
				}
				next[id] = &a
				return nil
			})
		}); err != nil {
			return delta, fmt.Errorf("index: import %s: read current: %w", source, err)
		}
	}

	digests := make(map[string]advisoryDigest, len(next))
	pkgs := map[match.PackageKey]bool{}
	touch := func(ks []match.PackageKey) {
		for _, k := range ks {
			pkgs[k] = true
		}
	}
	meta := AdvisorySource{Source: source, ImportedAt: now, ChangedAt: now, Origin: opts.Origin, ETag: opts.ETag, LastModified: opts.LastModified, KeyScheme: advKeyScheme}
	ecos := map[string]bool{}
	allPkgs := map[match.PackageKey]bool{}
	for id, a := range next {
		d := advisoryDigest{Hash: a.Hash(), Modified: a.Modified, Withdrawn: a.IsWithdrawn(), Packages: packagesOf(a)}
		digests[id] = d
		for _, k := range d.Packages {
			ecos[match.BaseEcosystem(k.Ecosystem)] = true
			allPkgs[k] = true
		}
		meta.Count++
		if d.Withdrawn {
			meta.Withdrawn++
		}
		if a.Modified.After(meta.NewestModified) {
			meta.NewestModified = a.Modified
		}
		o, had := oldDigests[id]
		switch {
		case !had && d.Withdrawn:
			// New and already withdrawn: nothing to match or close.
		case !had:
			delta.Added = append(delta.Added, id)
			touch(d.Packages)
		case o.Hash == d.Hash && slices.Equal(o.Packages, d.Packages):
		case o.Hash == d.Hash:
			// Same content filed under other keys (a generation written
			// before names were normalised): re-key it, and re-match
			// both spellings' images.
			delta.Changed = append(delta.Changed, id)
			touch(d.Packages)
			touch(o.Packages)
		case d.Withdrawn && !o.Withdrawn:
			delta.Withdrawn = append(delta.Withdrawn, id)
			touch(d.Packages)
			touch(o.Packages)
		default:
			delta.Changed = append(delta.Changed, id)
			touch(d.Packages)
			touch(o.Packages)
		}
	}
	for id, o := range oldDigests {
		if _, ok := next[id]; !ok {
			delta.Removed = append(delta.Removed, id)
			touch(o.Packages)
		}
	}
	for e := range ecos {
		meta.Ecosystems = append(meta.Ecosystems, e)
	}
	sort.Strings(meta.Ecosystems)
	meta.Packages = len(allPkgs)
	for k := range pkgs {
		delta.Packages = append(delta.Packages, k)
	}
	sortDelta(&delta)

	if delta.Empty() && old != nil {
		old.ImportedAt, old.Origin = now, opts.Origin
		old.KeyScheme = advKeyScheme // every key already in normalised form
		if opts.ETag != "" || opts.LastModified != "" {
			old.ETag, old.LastModified = opts.ETag, opts.LastModified
		}
		err := s.db.update(func(txn *badger.Txn) error { return setJSON(txn, key(pfxAdvSource, source), old) })
		return delta, err
	}

	gen := strconv.FormatInt(now.UnixNano(), 36)
	if old != nil && gen <= old.Generation {
		gen = old.Generation + "x"
	}
	meta.Generation = gen
	if err := s.stage(ctx, gen, next, digests); err != nil {
		s.dropGeneration(gen, pfxAdvStage)
		return AdvisoryDelta{Source: source}, fmt.Errorf("index: import %s: %w", source, err)
	}
	err = s.db.update(func(txn *badger.Txn) error {
		if old != nil {
			if err := txn.Set(key(pfxAdvOld, old.Generation), nil); err != nil {
				return err
			}
		}
		if err := txn.Delete(key(pfxAdvStage, gen)); err != nil {
			return err
		}
		return setJSON(txn, key(pfxAdvSource, source), meta)
	})
	if err != nil {
		s.dropGeneration(gen, pfxAdvStage)
		return AdvisoryDelta{Source: source}, fmt.Errorf("index: import %s: commit: %w", source, err)
	}
	if old != nil {
		s.dropGeneration(old.Generation, pfxAdvOld)
	}
	s.log.Info().Str("op", "advisory-import").Str("source", source).Int("count", meta.Count).
		Int("added", len(delta.Added)).Int("changed", len(delta.Changed)).Int("withdrawn", len(delta.Withdrawn)).
		Int("removed", len(delta.Removed)).Msg("advisories imported")
	return delta, nil
}

func sortDelta(d *AdvisoryDelta) {
	sort.Strings(d.Added)
	sort.Strings(d.Changed)
	sort.Strings(d.Withdrawn)
	sort.Strings(d.Removed)
	sort.Slice(d.Packages, func(i, j int) bool {
		a, b := d.Packages[i], d.Packages[j]
		if a.Ecosystem != b.Ecosystem {
			return a.Ecosystem < b.Ecosystem
		}
		return a.Name < b.Name
	})
}

// packagesOf returns the (ecosystem, normalised name) keys a affects, in
// order of first appearance.
func packagesOf(a *match.Advisory) []match.PackageKey {
	var out []match.PackageKey
	seen := map[match.PackageKey]bool{}
	for _, af := range a.Affected {
		k := match.NormalizeKey(match.PackageKey{Ecosystem: af.Package.Ecosystem, Name: af.Package.Name})
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// stage writes a generation with a write batch (no transaction size limit).
func (s *AdvisoryStore) stage(ctx context.Context, gen string, next map[string]*match.Advisory, digests map[string]advisoryDigest) error {
	if err := s.db.update(func(txn *badger.Txn) error { return txn.Set(key(pfxAdvStage, gen), nil) }); err != nil {
		return err
	}
	wb := s.db.newWriteBatch()
	defer wb.Cancel()
	for id, a := range next {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := encode(a)
		if err != nil {
			return err
		}
		if err := wb.Set(key(pfxAdvBody, gen, id), b); err != nil {
			return err
		}
		for _, k := range digests[id].Packages {
			if err := wb.Set(key(pfxAdvisory, gen, esc(k.Ecosystem), esc(k.Name), id), nil); err != nil {
				return err
			}
		}
		db, err := encode(digests[id])
		if err != nil {
			return err
		}
		if err := wb.Set(key(pfxAdvHash, gen, id), db); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// dropGeneration deletes a generation's keys, then its marker.
func (s *AdvisoryStore) dropGeneration(gen, markerPfx string) {
	for _, p := range [][]byte{key(pfxAdvisory, gen, ""), key(pfxAdvBody, gen, ""), key(pfxAdvHash, gen, "")} {
		if err := deletePrefix(s.db.bdb, p); err != nil {
			s.log.Warn().Err(err).Str("op", "advisory-cleanup").Str("generation", gen).Msg("delete generation")
			return
		}
	}
	_ = s.db.update(func(txn *badger.Txn) error { return txn.Delete(key(markerPfx, gen)) })
}

// cleanup removes generations left by imports that died before or after
// their flip.
func (s *AdvisoryStore) cleanup(ctx context.Context) error {
	var stale [][2]string
	err := s.db.bdb.View(func(txn *badger.Txn) error {
		for _, p := range []string{pfxAdvStage, pfxAdvOld} {
			err := scanPrefix(txn, []byte(p), true, func(it *badger.Item) error {
				stale = append(stale, [2]string{string(it.Key()[len(p):]), p})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, g := range stale {
		s.dropGeneration(g[0], g[1])
	}
	return err
}

// deletePrefix deletes every key under prefix with write batches.
func deletePrefix(db *badger.DB, prefix []byte) error {
	for {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			return scanPrefix(txn, prefix, true, func(it *badger.Item) error {
				keys = append(keys, it.KeyCopy(nil))
				if len(keys) >= 50_000 {
					return errStop
				}
				return nil
			})
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		wb := db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
	}
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
