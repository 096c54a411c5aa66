// Package tee implements scan.Teer: it hands copies of blob bytes passing
// through the proxy (pushes and pulls) to scan.Walk in the same pass, through
// a bounded per-blob buffer that detaches, never blocks, when analysis falls
// behind, fails, or memory is short (DESIGN.md rule 1: the transfer is
// sacred). A detached blob is reported through Options.Deferred and analysed
// later from the registry.
//
// One analysis runs per digest at a time: a pull of a digest that is being
// analysed (from another pull, or from a push whose final PUT named it) is
// not teed, and an upload that turns out to have the digest of one in flight
// is dropped at UploadDone; the in-flight analysis serves both. Each analysis
// is bounded by Options.AnalysisTimeout once its transfer is over.
package tee

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"

	"github.com/tollgate-registry/tollgate/scan"
)

// Store is where walked layers are committed; index.Inventories implements it.
type Store interface {
	HasLayer(ctx context.Context, layer digest.Digest, analyzersVersion string) (bool, error)
	PutLayer(ctx context.Context, inv *scan.LayerInventory) error
}

// Options configures New. The zero value works (no analyzers, nothing stored).
type Options struct {
	Analyzers []scan.Analyzer
	Limits    scan.Limits
	// BufferBytes bounds each blob's buffer between the transfer and the
	// analysis (config scan.teeBufferBytes, default 32 MiB); past it the blob
	// is detached. Over loopback an upload outruns gunzip, and a blob that
	// detaches is read again from the registry after its push: 32 MiB keeps
	// the shared Debian layers (20 and 28 MB) in the tee, which cut the
	// manifest-PUT-to-findings p95 from ~450 to ~280 ms on 2 cores
	// (docs/performance.md).
	BufferBytes int64
	// Workers bounds concurrent analyses (config scan.workers, default the
	// number of CPUs); a blob arriving when all are busy is not teed.
	Workers int
	// MaxTotalBytes bounds the bytes buffered by all blobs together
	// (default Workers × BufferBytes, at most DefaultMaxTotalBytes, never
	// below BufferBytes); past it new writes detach their blob. Buffers fill
	// only while an analysis lags its transfer.
	MaxTotalBytes int64
	// AnalysisTimeout bounds one blob's analysis from the moment its
	// transfer is over for the tee (last byte in, or the blob detached) to
	// the end of the walk (config scan.analysisTimeout, default 5 minutes).
	// While bytes still flow the buffer bounds it: an analysis that stops
	// reading detaches its blob. Past it the walk's context is cancelled,
	// the worker slot is freed at once, nothing is committed and the layer
	// is deferred with ReasonTimeout. An analyzer that ignores its context
	// is abandoned: its goroutine runs on (Abandoned counts those) but holds
	// no worker and commits nothing.
	AnalysisTimeout time.Duration
	// Yield, if set, lets transfers go first: the analysis of a layer
	// calls it before each read of teed bytes with what is left of the
	// blob's YieldBudget, and it returns how long it waited (until no blob
	// transfer is in flight, at most max, or until stop is closed: the
	// analysis ended). The blob's own transfer counts, so a layer is then
	// analysed from the buffer once its upload is over; a transfer that
	// outruns the buffer meanwhile detaches its blob as usual. tollgate
	// serve sets it on machines without a spare core (scan.analysisYields):
	// there even an analysis at the lowest CPU priority slowed a loopback
	// push by 20 % (docs/performance.md).
	Yield func(stop <-chan struct{}, max time.Duration) time.Duration
	// YieldBudget bounds one blob's waiting in Yield (default 2 s); past it
	// the analysis runs beside the transfers.
	YieldBudget time.Duration
	// Store receives committed layer inventories; nil drops them.
	Store Store
	// Deferred is told about a layer blob that was not analysed in the
	// transfer (detached, failed, timed out, digest mismatch, not stored),
	// to queue a scan that fetches it from the registry later. reason is
	// for logs and status. It is called at most once per digest while that
	// report stands (15 minutes, or until the digest is committed): not
	// for a digest another analysis has in flight, and a pull of a digest
	// whose report stands is not teed (its registry read is queued).
	Deferred func(ctx context.Context, repo string, d digest.Digest, reason string)
	// Committed, if set, is called after a layer inventory was stored.
	Committed func(ctx context.Context, repo string, inv *scan.LayerInventory)
	// IdleTimeout frees a blob no byte or end arrived for in this long (an
	// abandoned upload session); default 15 minutes.
	IdleTimeout time.Duration
	Logger      zerolog.Logger
}

// DefaultBufferBytes and DefaultMaxTotalBytes are Options' defaults: one
// blob's buffer, and every blob's together (bytes).
const (
	DefaultBufferBytes   = 32 << 20
	DefaultMaxTotalBytes = 128 << 20
)

// DefaultYieldBudget is Options.YieldBudget's default.
const DefaultYieldBudget = 2 * time.Second

// Teer is the scan.Teer of the proxy. Safe for concurrent use.
type Teer struct {
	opts      Options
	av        string
	slots     chan struct{}
	total     atomic.Int64
	abandoned atomic.Int64
	wg        sync.WaitGroup

	free chan []byte // empty slabs kept for reuse: BufferBytes worth

	mu       sync.Mutex
	sessions map[string]*blob // repo + "\x00" + session
	inflight map[digest.Digest]*blob
	reported map[digest.Digest]time.Time // digest → when it was last deferred
}

var _ scan.Teer = (*Teer)(nil)

// New returns a Teer.
func New(opts Options) *Teer {
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 15 * time.Minute
	}
	if opts.AnalysisTimeout <= 0 {
		opts.AnalysisTimeout = 5 * time.Minute
	}
	if opts.YieldBudget <= 0 {
		opts.YieldBudget = DefaultYieldBudget
	}
	if opts.MaxTotalBytes <= 0 {
		opts.MaxTotalBytes = max(opts.BufferBytes, min(int64(opts.Workers)*opts.BufferBytes, DefaultMaxTotalBytes))
	}
	return &Teer{
		opts:     opts,
		av:       scan.AnalyzersVersion(opts.Analyzers),
		slots:    make(chan struct{}, opts.Workers),
		free:     make(chan []byte, max(1, opts.BufferBytes/slabBytes)),
		sessions: map[string]*blob{},
		inflight: map[digest.Digest]*blob{},
		reported: map[digest.Digest]time.Time{},
	}
}

// Reserve fills the free list of buffer slabs (BufferBytes in all) with
// memory it has written to, and returns when it is full. Buffered bytes
// live in these slabs, which are kept for reuse rather than freed; memory
// fresh from the kernel is what made teeing slow: on the development VM,
// page faults on fresh buffers added ~90 ms to a 28 MB push (65 %), a
// reserved buffer ~1 ms (docs/performance.md). Without Reserve the free
// list fills as blobs release their slabs. The process's resident memory
// grows by BufferBytes.
func (t *Teer) Reserve() {
	for len(t.free) < cap(t.free) {
		b := make([]byte, slabBytes)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page: the kernel maps it now
		}
		select {
		case t.free <- b[:0]:
		default:
			return
		}
	}
}

// Wait blocks until every running analysis has finished or been abandoned
// (shutdown, tests). Abandoned walks (see Options.AnalysisTimeout) are not
// waited for.
func (t *Teer) Wait() { t.wg.Wait() }

// Abandoned is the number of analyses whose walk outlived its deadline and
// is still running (an analyzer ignoring its context); 0 when all behave.
func (t *Teer) Abandoned() int64 { return t.abandoned.Load() }

// InFlight reports whether an analysis of d is running and has not yet
// reported (committed or deferred) its result.
func (t *Teer) InFlight(d digest.Digest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight[d] != nil
}

// Reported reports whether a deferral of d stands: it was reported within
// the last 15 minutes and d was not committed since, so the tee will not
// report d again nor tee a pull of it.
func (t *Teer) Reported(d digest.Digest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.standsLocked(d, time.Now())
}

// standsLocked is Reported with t.mu held.
func (t *Teer) standsLocked(d digest.Digest, now time.Time) bool {
	at, ok := t.reported[d]
	return ok && now.Sub(at) < reportedTTL
}

// CancelIdleUploads cancels every upload session no request is delivering
// bytes to right now, and returns how many it cancelled. At shutdown, after
// the listeners stopped, nothing will finish such a session (a client that
// abandoned a chunked upload never sends the final PUT), so its analysis
// would otherwise run until IdleTimeout; cancelled, it ends at once, and
// Wait then waits only for analyses whose bytes are all in. A request that
// later continues a cancelled session is not teed (its layer is scanned
// from the registry).
func (t *Teer) CancelIdleUploads() int {
	var idle []*blob
	t.mu.Lock()
	for k, b := range t.sessions {
		b.mu.Lock()
		if b.active == 0 {
			idle = append(idle, b)
			delete(t.sessions, k)
		}
		b.mu.Unlock()
	}
	t.mu.Unlock()
	for _, b := range idle {
		b.mu.Lock()
		b.detachLocked("")
		b.mu.Unlock()
		b.end("")
	}
	return len(idle)
}

// Detach reasons.
const (
	ReasonBehind     = "analysis fell behind the transfer"
	ReasonBusy       = "all analysis workers busy"
	ReasonMemory     = "tee memory limit reached"
	ReasonGap        = "upload offsets not contiguous"
	ReasonIncomplete = "request body incomplete"
	ReasonMismatch   = "teed bytes do not match the committed digest"
	ReasonFailed     = "analysis failed"
	ReasonTimeout    = "analysis timed out"
	ReasonNotStored  = "layer inventory could not be stored"
)

// reportedTTL is how long a deferral of a digest stands against a repeat
// report (unless the digest is committed); maxReported bounds the set.
const (
	reportedTTL = 15 * time.Minute
	maxReported = 4096
)

// Pull tees the body of a blob GET of dgst; nil when dgst is already
// analysed, being analysed or deferred (Reported), or no worker is free.
func (t *Teer) Pull(ctx context.Context, repo string, dgst digest.Digest, size int64) scan.BlobSink {
	if dgst.Validate() != nil || t.known(ctx, dgst) {
		return nil
	}
	t.mu.Lock()
	if t.inflight[dgst] != nil || t.standsLocked(dgst, time.Now()) {
		t.mu.Unlock()
		return nil // coalesced: the analysis in flight, or the deferred read, serves this pull too
	}
	b := t.start(ctx, repo, dgst)
	if b != nil {
		t.inflight[dgst] = b
	}
	t.mu.Unlock()
	if b == nil {
		t.deferred(ctx, repo, dgst, ReasonBusy, nil)
		return nil
	}
	return &pullSink{b: b}
}

// Upload tees one request of upload session in repo starting at offset.
func (t *Teer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	k := repo + "\x00" + session
	t.mu.Lock()
	b := t.sessions[k]
	if b == nil {
		if offset != 0 {
			t.mu.Unlock()
			return nil // a session whose start we did not see
		}
		b = t.start(ctx, repo, "")
		if b == nil {
			b = &blob{t: t, repo: repo, detached: true, reason: ReasonBusy, final: make(chan digest.Digest, 1)}
		}
		t.sessions[k] = b
	}
	t.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return nil
	}
	if offset != b.next {
		b.detachLocked(ReasonGap)
		return nil
	}
	b.active++
	return &uploadSink{b: b}
}

// UploadDone ends session: commits the walked inventory under dgst when the
// teed bytes hash to dgst, else discards it (and reports a deferred scan).
// When another analysis of dgst is in flight, this one is dropped without a
// report: that one serves both.
func (t *Teer) UploadDone(ctx context.Context, repo, session string, dgst digest.Digest) {
	k := repo + "\x00" + session
	t.mu.Lock()
	b := t.sessions[k]
	delete(t.sessions, k)
	t.mu.Unlock()
	if b == nil {
		if dgst != "" {
			t.deferred(ctx, repo, dgst, ReasonIncomplete, nil)
		}
		return
	}
	b.mu.Lock()
	reason := b.reason
	detached := b.detached
	b.mu.Unlock()
	if !detached && dgst != "" {
		t.mu.Lock()
		if o := t.inflight[dgst]; o != nil && o != b {
			t.mu.Unlock()
			t.opts.Logger.Debug().Str("repo", repo).Str("digest", dgst.String()).Str("op", "tee").
				Msg("upload of a blob already being analysed: the analysis in flight serves it")
			b.mu.Lock()
			b.detachLocked("")
			b.mu.Unlock()
			b.end("")
			return
		}
		t.inflight[dgst] = b
		b.key = dgst
		t.mu.Unlock()
	}
	b.mu.Lock()
	if !b.detached {
		b.closed = true
		b.cond.Broadcast()
	} else if !detached {
		detached, reason = true, b.reason // detached meanwhile (idle timer)
	}
	b.mu.Unlock()
	if detached && dgst != "" && reason != "" {
		t.deferred(ctx, repo, dgst, reason, b)
	}
	b.end(dgst)
}

func (t *Teer) known(ctx context.Context, d digest.Digest) bool {
	if t.opts.Store == nil {
		return false
	}
	ok, err := t.opts.Store.HasLayer(ctx, d, t.av)
	return err == nil && ok
}

// deferred reports d through Options.Deferred unless that would repeat a
// report: another analysis (not self) has d in flight, or d's earlier
// report stands.
func (t *Teer) deferred(ctx context.Context, repo string, d digest.Digest, reason string, self *blob) {
	now := time.Now()
	t.mu.Lock()
	if o := t.inflight[d]; o != nil && o != self {
		t.mu.Unlock()
		return
	}
	if t.standsLocked(d, now) {
		t.mu.Unlock()
		t.opts.Logger.Debug().Str("repo", repo).Str("digest", d.String()).Str("op", "tee").Str("reason", reason).Msg("blob already deferred")
		return
	}
	if len(t.reported) >= maxReported {
		for k, at := range t.reported {
			if now.Sub(at) >= reportedTTL {
				delete(t.reported, k)
			}
		}
		if len(t.reported) >= maxReported {
			clear(t.reported)
		}
	}
	t.reported[d] = now
	t.mu.Unlock()
	t.opts.Logger.Debug().Str("repo", repo).Str("digest", d.String()).Str("op", "tee").Str("reason", reason).Msg("blob deferred")
	if t.opts.Deferred != nil {
		t.opts.Deferred(context.WithoutCancel(ctx), repo, d, reason)
	}
}
