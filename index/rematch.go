package index

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

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
	Log zerolog.Logger
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
func (r *Rematcher) Image(ctx context.Context, inv *scan.Inventory) (ReplaceResult, error) {
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
		advs, err := r.Advisories.ForPackage(ctx, k.Ecosystem, k.Name)
		if err != nil {
			return RematchResult{}, err
		}
		err = r.Packages.Instances(ctx, k, func(img digest.Digest, pkgs []scan.Package) error {
			w := work[img]
			if w == nil {
				w = &imageWork{image: img}
				work[img] = w
			}
			w.keys = append(w.keys, k)
			for i := range pkgs {
				_, ver, ok := match.LookupKey(&pkgs[i])
				if ok {
					w.found = append(w.found, match.MatchPackage(img, &pkgs[i], k, ver, advs)...)
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
	return r.run(ctx, items, func(ctx context.Context, w *imageWork, now time.Time) (ReplaceResult, error) {
		return r.Findings.ReplaceFor(ctx, w.image, w.keys, match.MergeDuplicates(w.found), now)
	})
}

// All re-matches every indexed image in full (`tollgate db rematch`),
// from the inventories kept in the package index.
func (r *Rematcher) All(ctx context.Context) (RematchResult, error) {
	imgs, err := r.Packages.Images(ctx)
	if err != nil {
		return RematchResult{}, err
	}
	items := make([]*imageWork, len(imgs))
	for i, img := range imgs {
		items[i] = &imageWork{image: img}
	}
	return r.run(ctx, items, func(ctx context.Context, w *imageWork, now time.Time) (ReplaceResult, error) {
		inv, err := r.Packages.Inventory(ctx, w.image)
		if err != nil {
			return ReplaceResult{}, err
		}
		fs, err := match.Match(ctx, inv, r.Advisories)
		if err != nil {
			return ReplaceResult{}, err
		}
		return r.Findings.Replace(ctx, w.image, fs, now)
	})
}

func (r *Rematcher) run(ctx context.Context, items []*imageWork, do func(context.Context, *imageWork, time.Time) (ReplaceResult, error)) (RematchResult, error) {
	now := r.now()
	n := r.Workers
	if n <= 0 {
		n = 2
	}
	var (
		mu       sync.Mutex
		res      = RematchResult{Examined: len(items)}
		firstErr error
		wg       sync.WaitGroup
	)
	ch := make(chan *imageWork)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range ch {
				rr, err := do(ctx, w, now)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("index: rematch %s: %w", w.image, err)
				}
				if rr.Changed() {
					res.Changed = append(res.Changed, w.image)
					res.Created += len(rr.Created)
					res.Updated += len(rr.Updated)
					res.Closed += len(rr.Closed)
				}
				mu.Unlock()
			}
		}()
	}
	for _, w := range items {
		if ctx.Err() != nil {
			break
		}
		ch <- w
	}
	close(ch)
	wg.Wait()
	sort.Slice(res.Changed, func(i, j int) bool { return res.Changed[i] < res.Changed[j] })
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	r.Log.Info().Str("op", "rematch").Int("examined", res.Examined).Int("changed", len(res.Changed)).
		Int("created", res.Created).Int("closed", res.Closed).Msg("re-match done")
	return res, firstErr
}
