// Package tee implements scan.Teer: it hands copies of blob bytes passing
// through the proxy (pushes and pulls) to scan.Walk in the same pass, through
// a bounded per-blob buffer that detaches, never blocks, when analysis falls
// behind, fails, or memory is short (DESIGN.md rule 1: the transfer is
// sacred). A detached blob is reported through Options.Deferred and analysed
// later from the registry.
package tee

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
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
	// analysis (config scan.teeBufferBytes, default 8 MiB); past it the blob
	// is detached.
	BufferBytes int64
	// Workers bounds concurrent analyses (config scan.workers, default the
	// number of CPUs); a blob arriving when all are busy is not teed.
	Workers int
	// MaxTotalBytes bounds the bytes buffered by all blobs together
	// (default Workers × BufferBytes); past it new writes detach their blob.
	MaxTotalBytes int64
	// Store receives committed layer inventories; nil drops them.
	Store Store
	// Deferred is told about a layer blob that was not analysed in the
	// transfer (detached, failed, digest mismatch), to queue a scan that
	// fetches it from the registry later. reason is for logs and status.
	Deferred func(ctx context.Context, repo string, d digest.Digest, reason string)
	// Committed, if set, is called after a layer inventory was stored.
	Committed func(ctx context.Context, repo string, inv *scan.LayerInventory)
	// IdleTimeout frees a blob no byte or end arrived for in this long (an
	// abandoned upload session); default 15 minutes.
	IdleTimeout time.Duration
	Logger      zerolog.Logger
}

// Teer is the scan.Teer of the proxy. Safe for concurrent use.
type Teer struct {
	opts  Options
	av    string
	slots chan struct{}
	total atomic.Int64
	wg    sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*blob // repo + "\x00" + session
	inflight map[digest.Digest]bool
}

var _ scan.Teer = (*Teer)(nil)

// New returns a Teer.
func New(opts Options) *Teer {
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = 8 << 20
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 15 * time.Minute
	}
	if opts.MaxTotalBytes <= 0 {
		opts.MaxTotalBytes = int64(opts.Workers) * opts.BufferBytes
	}
	return &Teer{
		opts:     opts,
		av:       scan.AnalyzersVersion(opts.Analyzers),
		slots:    make(chan struct{}, opts.Workers),
		sessions: map[string]*blob{},
		inflight: map[digest.Digest]bool{},
	}
}

// Wait blocks until every running analysis has finished (shutdown, tests).
func (t *Teer) Wait() { t.wg.Wait() }

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
)

// Pull tees the body of a blob GET of dgst; nil when dgst is already
// analysed or being analysed, or no worker is free.
func (t *Teer) Pull(ctx context.Context, repo string, dgst digest.Digest, size int64) scan.BlobSink {
	if dgst.Validate() != nil || t.known(ctx, dgst) {
		return nil
	}
	t.mu.Lock()
	if t.inflight[dgst] {
		t.mu.Unlock()
		return nil
	}
	t.inflight[dgst] = true
	t.mu.Unlock()
	b := t.start(ctx, repo, dgst)
	if b == nil {
		t.mu.Lock()
		delete(t.inflight, dgst)
		t.mu.Unlock()
		t.deferred(ctx, repo, dgst, ReasonBusy)
		return nil
	}
	return &pullSink{b: b}
}

// Upload tees one request of upload session in repo starting at offset.
func (t *Teer) Upload(ctx context.Context, repo, session string, offset int64) scan.BlobSink {
	k := repo + "\x00" + session
	t.mu.Lock()
	b := t.sessions[k]
	t.mu.Unlock()
	if b == nil {
		if offset != 0 {
			return nil // a session whose start we did not see
		}
		b = t.start(ctx, repo, "")
		t.mu.Lock()
		if b == nil {
			b = &blob{t: t, repo: repo, detached: true, reason: ReasonBusy, final: make(chan digest.Digest, 1)}
		}
		t.sessions[k] = b
		t.mu.Unlock()
	}
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
func (t *Teer) UploadDone(ctx context.Context, repo, session string, dgst digest.Digest) {
	k := repo + "\x00" + session
	t.mu.Lock()
	b := t.sessions[k]
	delete(t.sessions, k)
	t.mu.Unlock()
	if b == nil {
		if dgst != "" {
			t.deferred(ctx, repo, dgst, ReasonIncomplete)
		}
		return
	}
	b.mu.Lock()
	reason := b.reason
	detached := b.detached
	if !detached {
		b.closed = true
		b.cond.Broadcast()
	}
	b.mu.Unlock()
	if detached && dgst != "" && reason != "" {
		t.deferred(ctx, repo, dgst, reason)
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

func (t *Teer) deferred(ctx context.Context, repo string, d digest.Digest, reason string) {
	t.opts.Logger.Debug().Str("repo", repo).Str("digest", d.String()).Str("op", "tee").Str("reason", reason).Msg("blob deferred")
	if t.opts.Deferred != nil {
		t.opts.Deferred(context.WithoutCancel(ctx), repo, d, reason)
	}
}

// start takes a worker slot and starts the analysis goroutine; nil when no
// slot is free (the blob is then analysed later).
func (t *Teer) start(ctx context.Context, repo string, want digest.Digest) *blob {
	select {
	case t.slots <- struct{}{}:
	default:
		return nil
	}
	b := &blob{t: t, repo: repo, want: want, final: make(chan digest.Digest, 1)}
	b.cond = sync.NewCond(&b.mu)
	b.idle = time.AfterFunc(t.opts.IdleTimeout, func() {
		b.mu.Lock()
		b.detachLocked("")
		b.mu.Unlock()
		b.end("")
		t.mu.Lock()
		for k, s := range t.sessions {
			if s == b {
				delete(t.sessions, k)
			}
		}
		t.mu.Unlock()
	})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.slots }()
		b.run(context.WithoutCancel(ctx))
	}()
	return b
}

// blob is one teed blob: a bounded queue of copied chunks between the
// transfer (writer) and the analysis goroutine (reader).
type blob struct {
	t    *Teer
	repo string
	want digest.Digest // pulls: known up front

	mu       sync.Mutex
	cond     *sync.Cond
	chunks   [][]byte
	buffered int64
	next     int64 // bytes received so far (the next expected upload offset)
	closed   bool  // the writer has delivered every byte
	active   int   // upload requests in progress (sinks not yet Done)
	detached bool
	reason   string // why it detached; "" for a silent drop (not a layer)

	final chan digest.Digest // the committed digest ("" = cancelled)
	idle  *time.Timer
}

// end delivers the committed digest ("" = cancelled) once; later calls are no-ops.
func (b *blob) end(d digest.Digest) {
	select {
	case b.final <- d:
	default:
	}
}

var errDetached = errors.New("tee: detached")

// write copies p into the queue, or detaches; it never blocks on analysis.
func (b *blob) write(p []byte) {
	if len(p) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next += int64(len(p))
	if b.detached {
		return
	}
	b.idle.Reset(b.t.opts.IdleTimeout)
	if b.buffered+int64(len(p)) > b.t.opts.BufferBytes {
		b.detachLocked(ReasonBehind)
		return
	}
	if b.t.total.Add(int64(len(p))) > b.t.opts.MaxTotalBytes {
		b.t.total.Add(-int64(len(p)))
		b.detachLocked(ReasonMemory)
		return
	}
	c := make([]byte, len(p))
	copy(c, p)
	b.chunks = append(b.chunks, c)
	b.buffered += int64(len(p))
	b.cond.Signal()
}

// detachLocked drops the buffer and stops the analysis; b.mu is held.
func (b *blob) detachLocked(reason string) {
	if b.detached {
		return
	}
	b.detached = true
	b.reason = reason
	b.t.total.Add(-b.buffered)
	b.chunks, b.buffered = nil, 0
	if b.cond != nil {
		b.cond.Broadcast()
	}
}

// Read is the analysis side of the queue.
func (b *blob) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.chunks) == 0 && !b.closed && !b.detached {
		b.cond.Wait()
	}
	if b.detached {
		return 0, errDetached
	}
	if len(b.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.chunks[0])
	if n == len(b.chunks[0]) {
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
	} else {
		b.chunks[0] = b.chunks[0][n:]
	}
	b.buffered -= int64(n)
	b.t.total.Add(-int64(n))
	return n, nil
}

// hashingReader hashes what the analysis consumed (the compressed blob).
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

// run analyses the blob, then waits for the committed digest and stores the
// result when the teed bytes hash to it.
func (b *blob) run(ctx context.Context) {
	t := b.t
	log := t.opts.Logger.With().Str("repo", b.repo).Str("op", "tee").Logger()
	hr := &hashingReader{r: b, h: sha256.New()}
	br := bufio.NewReaderSize(hr, 4096)
	head, _ := br.Peek(262)
	var li *scan.LayerInventory
	var err error
	if !scan.LooksLikeLayer(head) {
		// A config, signature or other artifact: drop it without a trace.
		b.mu.Lock()
		if !b.detached {
			b.detachLocked("")
		}
		b.mu.Unlock()
	} else {
		li, err = scan.Walk(ctx, b.want, br, t.opts.Analyzers, t.opts.Limits)
		var le *scan.LimitError
		if err != nil && !errors.As(err, &le) {
			li = nil
		}
		if li != nil {
			// Hash what Walk left unread (after a corrupt stream) to check the digest.
			if _, derr := io.Copy(io.Discard, br); derr != nil {
				li = nil
			}
		}
	}
	final := <-b.final
	b.idle.Stop()
	if b.want != "" {
		t.mu.Lock()
		delete(t.inflight, b.want)
		t.mu.Unlock()
	}
	b.mu.Lock()
	detached, reason := b.detached, b.reason
	if !detached {
		b.detachLocked("done") // free anything left
	}
	b.mu.Unlock()
	switch {
	case final == "":
		return // cancelled upload or failed pull: nothing to analyse later
	case detached:
		if reason != "" && reason != "done" {
			// Uploads report at UploadDone; pulls here.
			if b.want != "" {
				t.deferred(ctx, b.repo, final, reason)
			}
		}
		return
	case li == nil:
		t.deferred(ctx, b.repo, final, ReasonFailed)
		return
	}
	sum := digest.NewDigest(digest.SHA256, hr.h)
	if sum != final {
		log.Warn().Str("digest", final.String()).Str("teed", sum.String()).Msg("teed bytes do not match; discarded")
		t.deferred(ctx, b.repo, final, ReasonMismatch)
		return
	}
	li.Digest = final
	for i := range li.Packages {
		li.Packages[i].Layer = final
	}
	if t.opts.Store != nil {
		if err := t.opts.Store.PutLayer(ctx, li); err != nil {
			log.Warn().Err(err).Str("digest", final.String()).Msg("layer inventory not stored")
			t.deferred(ctx, b.repo, final, ReasonFailed)
			return
		}
	}
	log.Debug().Str("digest", final.String()).Int("packages", len(li.Packages)).Msg("layer analysed in transfer")
	if t.opts.Committed != nil {
		t.opts.Committed(ctx, b.repo, li)
	}
}

// pullSink is the sink of a blob GET: Done(true) commits under the known digest.
type pullSink struct {
	b    *blob
	once sync.Once
}

func (s *pullSink) Write(p []byte) (int, error) { s.b.write(p); return len(p), nil }

func (s *pullSink) Done(complete bool) {
	s.once.Do(func() {
		b := s.b
		b.mu.Lock()
		if complete {
			b.closed = true
			b.cond.Broadcast()
		} else {
			b.detachLocked(ReasonIncomplete)
		}
		b.mu.Unlock()
		if complete {
			b.end(b.want)
		} else {
			b.end("")
		}
	})
}

// uploadSink is one PATCH/PUT request's share of an upload session.
type uploadSink struct {
	b    *blob
	once sync.Once
}

func (s *uploadSink) Write(p []byte) (int, error) { s.b.write(p); return len(p), nil }

func (s *uploadSink) Done(complete bool) {
	s.once.Do(func() {
		s.b.mu.Lock()
		s.b.active--
		if !complete {
			s.b.detachLocked(ReasonIncomplete)
		}
		s.b.mu.Unlock()
	})
}
