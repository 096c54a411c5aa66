package index

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// Rematcher keeps findings current: it matches a scanned image and stores
// its findings, and re-matches stored images when advisories change — only
// the images and packages an AdvisoryDelta concerns, found through the
// package index. It never reads a blob or a layer.
type Rematcher struct {
	Advisories match.Advisories
	Packages   *PkgIndex
	Findings   *FindingStore
	// Workers bounds concurrent image updates (default 2).
	Workers int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnChange, if set, is called by ApplyDelta and All once per image
	// whose findings the re-match changed, after the change is committed,
	// with what changed (created, updated, closed): e.g. to publish
	// "Inspector2 Finding" events (events.Builder.FindingChanges,
	// docs/events.md). Calls are sequential. An error is logged (fields
	// digest, op) and the re-match goes on; it returns the errors joined.
	OnChange func(ctx context.Context, image digest.Digest, rr ReplaceResult) error
	Log      zerolog.Logger
}

// RematchResult summarises a re-match.
type RematchResult struct {
	Examined int             `json:"examined"` // images looked at
	Changed  []digest.Digest `json:"changed"`  // images whose findings changed, sorted
	Created  int             `json:"created"`
	Updated  int             `json:"updated"`
	Closed   int             `json:"closed"`
}

func (r *Rematcher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Image indexes inv's packages, matches inv and replaces the image's
// findings: what `serve` calls when an image's scan completes.
//
// Two scans of one image may run at once (the pull policy's scan before a
// pull and the one its push queued); Badger's optimistic-concurrency
// conflicts between them (badger.ErrConflict) are retried, the whole
// index-match-replace each time (it is idempotent), up to 16 attempts.
func (r *Rematcher) Image(ctx context.Context, inv *scan.Inventory) (ReplaceResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := r.image(ctx, inv)
		if !errors.Is(err, badger.ErrConflict) || attempt >= 16 || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond)
	}
}

func (r *Rematcher) image(ctx context.Context, inv *scan.Inventory) (ReplaceResult, error) {
	if err := r.Packages.IndexImage(ctx, inv); err != nil {
		return ReplaceResult{}, err
	}
	fs, err := match.Match(ctx, inv, r.Advisories)
	if err != nil {
		return ReplaceResult{}, err
	}
	return r.Findings.Replace(ctx, inv.Image, fs, r.now())
}

type imageWork struct {
	image digest.Digest
	keys  []match.PackageKey
	found []scan.Finding
}

// ApplyDelta re-matches, in every indexed image containing one of
// d.Packages, the packages filed under those keys, and replaces just those
// findings (new ones created, vanished ones closed — withdrawn and removed
// advisories included — unchanged ones keep FirstObservedAt).
func (r *Rematcher) ApplyDelta(ctx context.Context, d AdvisoryDelta) (RematchResult, error) {
	work := map[digest.Digest]*imageWork{}
	for _, k := range d.Packages {
		// k may be spelt as an advisory named it before names were
		// normalised (a re-keying import): its images are found under k,
		// their packages and findings filed under the normalised key.
		nk := match.NormalizeKey(k)
		advs, err := r.Advisories.ForPackage(ctx, nk.Ecosystem, nk.Name)
		if err != nil {
			return RematchResult{}, err
		}
		m := match.NewMatcher(nk, advs)
		err = r.Packages.Instances(ctx, k, func(img digest.Digest, pkgs []scan.Package) error {
			w := work[img]
			if w == nil {
				w = &imageWork{image: img}
				work[img] = w
			}
			if !slices.Contains(w.keys, nk) {
				w.keys = append(w.keys, nk)
			}
			for i := range pkgs {
				_, ver, ok := match.LookupKey(&pkgs[i])
				if ok {
					w.found = append(w.found, m.Match(img, &pkgs[i], ver)...)
				}
			}
			return nil
		})
		if err != nil {
			return RematchResult{}, fmt.Errorf("index: rematch %s: %w", k, err)
		}
	}
	items := make([]*imageWork, 0, len(work))
	for _, w := range work {
		items = append(items, w)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].image < items[j].image })
	return r.run(ctx, items, func(ctx context.Context, w *imageWork) (ReplaceRequest, error) {
		return ReplaceRequest{Image: w.image, Keys: w.keys, Found: match.MergeDuplicates(w.found)}, nil
	})
}

// All re-matches every indexed image in full (`tollgate db rematch`),
// from the inventories kept in the package index, and re-indexes the images
// indexed before package names were normalised (match.NormalizeName).
func (r *Rematcher) All(ctx context.Context) (RematchResult, error) {
	imgs, err := r.Packages.Images(ctx)
	if err != nil {
		return RematchResult{}, err
	}
	items := make([]*imageWork, len(imgs))
	for i, img := range imgs {
		items[i] = &imageWork{image: img}
	}
	return r.run(ctx, items, func(ctx context.Context, w *imageWork) (ReplaceRequest, error) {
		inv, stale, err := r.Packages.inventory(ctx, w.image)
		if err != nil {
			return ReplaceRequest{}, err
		}
		if stale {
			if err := r.Packages.IndexImage(ctx, inv); err != nil {
				return ReplaceRequest{}, err
			}
		}
		fs, err := match.Match(ctx, inv, r.Advisories)
		if err != nil {
			return ReplaceRequest{}, err
		}
		return ReplaceRequest{Image: w.image, Found: fs}, nil
	})
}

// rematchChunk is how many images share one read transaction and one
// write batch.
const rematchChunk = 2048

// run prepares each image's replacement (in Workers goroutines: matching
// is CPU work) and applies them chunk by chunk with ReplaceMany.
func (r *Rematcher) run(ctx context.Context, items []*imageWork, prep func(context.Context, *imageWork) (ReplaceRequest, error)) (RematchResult, error) {
	now := r.now()
	n := r.Workers
	if n <= 0 {
		n = 2
	}
	res := RematchResult{Examined: len(items)}
	var changeErrs []error
	for start := 0; start < len(items); start += rematchChunk {
		part := items[start:min(len(items), start+rematchChunk)]
		reqs := make([]ReplaceRequest, len(part))
		errs := make([]error, len(part))
		var wg sync.WaitGroup
		next := make(chan int)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					reqs[i], errs[i] = prep(ctx, part[i])
				}
			}()
		}
		for i := range part {
			next <- i
		}
		close(next)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				return res, fmt.Errorf("index: rematch %s: %w", part[i].image, err)
			}
		}
		rrs, err := r.Findings.ReplaceMany(ctx, reqs, now)
		if err != nil {
			return res, fmt.Errorf("index: rematch: %w", err)
		}
		for i, rr := range rrs {
			if rr.Changed() {
				res.Changed = append(res.Changed, part[i].image)
				res.Created += len(rr.Created)
				res.Updated += len(rr.Updated)
				res.Closed += len(rr.Closed)
				if r.OnChange != nil {
					if err := r.OnChange(ctx, part[i].image, rr); err != nil {
						r.Log.Error().Err(err).Str("op", "rematch").Str("digest", part[i].image.String()).Msg("finding changes not announced")
						changeErrs = append(changeErrs, fmt.Errorf("index: rematch %s: %w", part[i].image, err))
					}
				}
			}
		}
	}
	sort.Slice(res.Changed, func(i, j int) bool { return res.Changed[i] < res.Changed[j] })
	r.Log.Info().Str("op", "rematch").Int("examined", res.Examined).Int("changed", len(res.Changed)).
		Int("created", res.Created).Int("closed", res.Closed).Msg("re-match done")
	if err := ctx.Err(); err != nil {
		changeErrs = append(changeErrs, err)
	}
	return res, errors.Join(changeErrs...)
}
