package main

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan"
)

// prefetcher analyses a layer the tee did not (it fell behind the upload,
// memory was short, its analysis failed) from the registry as soon as the
// tee reports it, instead of when the image scan reaches it after the
// manifest PUT: the push's manifest usually follows its last layer within
// milliseconds, and the scan would otherwise start reading that layer only
// then. The image scan waits for the prefetch through teeWaits (the entry
// stays open until the prefetch ends) and then finds the layer stored.
//
// One prefetch reads at a time (the others queue), and it reads only while
// no blob transfer is in progress, up to maxPrefetchYield of pauses per
// layer (yieldingFetcher): on a small machine the transfers keep the CPU.
type prefetcher struct {
	asm   *scan.Assembler // its cache is the plain inventory store (no teeWaits)
	f     scan.BlobFetcher
	waits *teeWaits
	log   zerolog.Logger
	sem   chan struct{}

	mu      sync.Mutex
	queued  int
	stopped bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// maxPrefetches bounds the prefetches queued or running; past it a layer
// is left to its image scan.
const maxPrefetches = 64

func newPrefetcher(asm *scan.Assembler, f scan.BlobFetcher, waits *teeWaits, log zerolog.Logger) *prefetcher {
	return &prefetcher{asm: asm, f: f, waits: waits, log: log, sem: make(chan struct{}, 1), stop: make(chan struct{})}
}

// start prefetches layer d of repo when an image scan would wait for it
// (the tee saw it start like a layer: teeWaits has it); it reports whether
// it did. The prefetch ends d's wait in every case.
func (p *prefetcher) start(ctx context.Context, repo string, d digest.Digest) bool {
	if !p.waits.has(d) {
		return false
	}
	p.mu.Lock()
	if p.stopped || p.queued >= maxPrefetches {
		p.mu.Unlock()
		return false
	}
	p.queued++
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer p.waits.finish(d)
		defer func() {
			p.mu.Lock()
			p.queued--
			p.mu.Unlock()
		}()
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-p.sem }()
		start := time.Now()
		log := p.log.With().Str("op", "prefetch").Str("repo", repo).Str("layer", d.String()).Logger()
		if _, err := p.asm.Layer(ctx, repo, p.f, d); err != nil {
			log.Debug().Err(err).Msg("layer prefetch failed; the image scan reads it")
			return
		}
		log.Debug().Dur("took", time.Since(start)).Msg("layer analysed from the registry after its upload")
	}()
	return true
}

// close stops the prefetches and waits for them (a serve closer).
func (p *prefetcher) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// has reports whether d is being waited for.
func (w *teeWaits) has(d digest.Digest) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.pending[d]
	return ok
}
