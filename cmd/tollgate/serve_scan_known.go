package main

import (
	"context"
	"crypto/sha256"
	"hash"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// knownTeer stops the tee's analysis of an upload whose first bytes are
// those of a layer already analysed: a client re-uploads a layer it cannot
// mount (another repository, another registry it pushed to before), and
// analysing it again costs the CPU the transfer needs on a small machine
// (docs/performance.md). The digest of an upload is only known at its final
// PUT, so the upload is recognised by a fingerprint: the SHA-256 of its
// first fingerprintBytes, remembered for every committed upload. A match
// whose layer is stored stops the analysis at once (the tee then reports
// the blob as incomplete, and serve's Deferred callback drops the report
// because the layer is known). A fingerprint that matched a different blob
// (same first bytes, other digest) only costs that blob a read from the
// registry by its image scan: nothing wrong is ever committed, the tee
// commits only bytes that hash to the committed digest.
type knownTeer struct {
	inner scan.Teer
	// known reports whether d's inventory is stored (index.Inventories.HasLayer);
	// it runs off the data path.
	known func(ctx context.Context, d digest.Digest) bool

	mu       sync.Mutex
	prints   map[[sha256.Size]byte]digest.Digest // fingerprint → the digest committed with it
	sessions uploadSessions[*printSink]          // each open session's first request's sink
}

// fingerprintBytes is how much of a blob identifies it; blobs shorter than
// this are never skipped (small layers cost little to analyse).
const fingerprintBytes = 64 << 10

// maxPrints bounds the remembered fingerprints (dropped wholesale past it).
const maxPrints = 1 << 16

func newKnownTeer(inner scan.Teer, known func(ctx context.Context, d digest.Digest) bool) *knownTeer {
	return &knownTeer{inner: inner, known: known,
		prints: map[[sha256.Size]byte]digest.Digest{}}
}

func (k *knownTeer) Pull(ctx context.Context, repo string, d digest.Digest, size int64) scan.BlobSink {
	return k.inner.Pull(ctx, repo, d, size) // a pull names its digest: the tee checks it itself
}

func (k *knownTeer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	s := k.inner.Upload(ctx, repo, session, offset)
	if s == nil || offset != 0 {
		return s
	}
	p := &printSink{inner: s, k: k, h: sha256.New()}
	bg := context.WithoutCancel(ctx) // the lookup may outlive the request
	p.stored = func(d digest.Digest) bool { return k.known(bg, d) }
	k.sessions.put(repo, session, p)
	return p
}

func (k *knownTeer) UploadDone(ctx context.Context, repo, session string, d digest.Digest) {
	p, _ := k.sessions.take(repo, session)
	if p != nil && d != "" {
		if fp, ok := p.fingerprint(); ok {
			k.mu.Lock()
			if len(k.prints) >= maxPrints {
				clear(k.prints)
			}
			k.prints[fp] = d
			k.mu.Unlock()
		}
	}
	k.inner.UploadDone(ctx, repo, session, d)
}

// match returns the digest committed with fingerprint fp, if any.
func (k *knownTeer) match(fp [sha256.Size]byte) (digest.Digest, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d, ok := k.prints[fp]
	return d, ok
}

// printSink fingerprints the first bytes of an upload and ends its
// analysis when they are those of a stored layer.
type printSink struct {
	inner  scan.BlobSink
	k      *knownTeer
	stored func(d digest.Digest) bool // knownTeer.known with the request's values

	mu      sync.Mutex
	h       hash.Hash
	n       int
	sum     [sha256.Size]byte
	summed  bool
	skipped bool
	once    sync.Once
}

func (p *printSink) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.skipped {
		p.mu.Unlock()
		return len(b), nil
	}
	if !p.summed {
		take := min(fingerprintBytes-p.n, len(b))
		p.h.Write(b[:take])
		p.n += take
		if p.n == fingerprintBytes {
			copy(p.sum[:], p.h.Sum(nil))
			p.summed, p.h = true, nil
			if d, ok := p.k.match(p.sum); ok {
				go p.skipIfKnown(d) // a store lookup: off the data path
			}
		}
	}
	p.mu.Unlock()
	return p.inner.Write(b)
}

// skipIfKnown ends the analysis when d is stored.
func (p *printSink) skipIfKnown(d digest.Digest) {
	if !p.stored(d) {
		return
	}
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	p.done(false)
}

func (p *printSink) Done(complete bool) { p.done(complete) }

func (p *printSink) done(complete bool) { p.once.Do(func() { p.inner.Done(complete) }) }

// fingerprint is the SHA-256 of the first fingerprintBytes, once they arrived.
func (p *printSink) fingerprint() ([sha256.Size]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sum, p.summed
}
