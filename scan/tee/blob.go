package tee

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
)

// start takes a worker slot and starts the analysis goroutine; nil when no
// slot is free (the blob is then analysed later). want is the digest of a
// pull (known up front), "" for an upload.
func (t *Teer) start(ctx context.Context, repo string, want digest.Digest) *blob {
	select {
	case t.slots <- struct{}{}:
	default:
		return nil
	}
	b := &blob{t: t, repo: repo, want: want, key: want, final: make(chan digest.Digest, 1), gone: make(chan struct{})}
	b.freeSlot = sync.OnceFunc(func() { <-t.slots })
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
		defer b.freeSlot()
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
	key  digest.Digest // the digest this blob holds in Teer.inflight; guarded by t.mu

	mu       sync.Mutex
	cond     *sync.Cond
	slabs    [][]byte // pooled slabs (slabBytes cap) in order; the last one is being filled
	roff     int      // bytes of slabs[0] the analysis has read
	buffered int64    // bytes written and not yet read
	next     int64    // bytes received so far (the next expected upload offset)
	closed   bool     // the writer has delivered every byte
	active   int      // upload requests in progress (sinks not yet Done)
	detached bool
	reason   string        // why it detached; "" for a silent drop (not a layer)
	gone     chan struct{} // closed at detach

	freeSlot func() // gives the worker slot back (once): at the end, or as soon as the blob is known not to be a layer

	final chan digest.Digest // the committed digest ("" = cancelled)
	idle  *time.Timer
	walk  atomic.Int32 // walkRunning, walkDone, walkAbandoned
}

const (
	walkRunning int32 = iota
	walkDone
	walkAbandoned
)

// end delivers the committed digest ("" = cancelled) once; later calls are no-ops.
func (b *blob) end(d digest.Digest) {
	select {
	case b.final <- d:
	default:
	}
}

var errDetached = errors.New("tee: detached")

// write copies p into the queue, or detaches; it never blocks on analysis.
// The bytes go into slabs from the Teer's free list (see Reserve), so a
// teed blob allocates nothing per write and leaves no garbage behind.
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
	wake := b.buffered == 0
	b.buffered += int64(len(p))
	for len(p) > 0 {
		last := len(b.slabs) - 1
		if last < 0 || len(b.slabs[last]) == cap(b.slabs[last]) {
			b.slabs = append(b.slabs, b.t.getSlab())
			last++
		}
		tail := b.slabs[last]
		n := copy(tail[len(tail):cap(tail)], p)
		b.slabs[last] = tail[:len(tail)+n]
		p = p[n:]
	}
	if wake {
		b.cond.Signal() // the analysis waits only on an empty queue
	}
}

// detachLocked drops the buffer and stops the analysis; b.mu is held.
func (b *blob) detachLocked(reason string) {
	if b.detached {
		return
	}
	b.detached = true
	b.reason = reason
	b.t.total.Add(-b.buffered)
	for _, sl := range b.slabs {
		b.t.putSlab(sl)
	}
	b.slabs, b.roff, b.buffered = nil, 0, 0
	if b.cond != nil {
		b.cond.Broadcast()
	}
	if b.gone != nil {
		close(b.gone)
	}
}

// Read is the analysis side of the queue.
func (b *blob) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.buffered == 0 && !b.closed && !b.detached {
		b.cond.Wait()
	}
	if b.detached {
		return 0, errDetached
	}
	if b.buffered == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && b.buffered > 0 {
		head := b.slabs[0]
		m := copy(p[n:], head[b.roff:])
		n += m
		b.roff += m
		b.buffered -= int64(m)
		// A slab read to its end goes back to the pool unless the writer
		// is still filling it.
		if b.roff == len(head) && (len(b.slabs) > 1 || len(head) == cap(head)) {
			b.t.putSlab(head)
			k := copy(b.slabs, b.slabs[1:]) // keeps the slice's capacity: no allocation per slab
			b.slabs[k] = nil
			b.slabs = b.slabs[:k]
			b.roff = 0
		}
	}
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

// yieldingReader reads the blob for the analysis; once the blob is known to
// be a layer, each read first waits for Options.Yield, within the blob's
// budget.
type yieldingReader struct {
	b     *blob
	stop  <-chan struct{}
	layer bool
	left  time.Duration
}

func (y *yieldingReader) Read(p []byte) (int, error) {
	if y.layer && y.left > 0 && y.b.t.opts.Yield != nil {
		y.left -= y.b.t.opts.Yield(y.stop, y.left)
	}
	return y.b.Read(p)
}

// analyse walks the blob and returns its inventory and the digest of the
// bytes it read; a nil inventory for a blob that is not a layer or could
// not be read whole.
func (b *blob) analyse(ctx context.Context) (*scan.LayerInventory, digest.Digest) {
	stop := make(chan struct{}) // the walk ended, or the blob detached: no more waiting
	go func() {
		select {
		case <-ctx.Done():
		case <-b.gone:
		}
		close(stop)
	}()
	yr := &yieldingReader{b: b, stop: stop, left: b.t.opts.YieldBudget}
	hr := &hashingReader{r: yr, h: sha256.New()}
	br := bufio.NewReaderSize(hr, 4096)
	head, _ := br.Peek(262)
	if !scan.LooksLikeLayer(head) {
		// A config, signature or other artifact: drop it without a trace,
		// and free the worker at once for the layers uploaded beside it
		// (run still waits for the upload's end).
		b.mu.Lock()
		b.detachLocked("")
		b.mu.Unlock()
		b.freeSlot()
		return nil, ""
	}
	yr.layer = true // from here on, transfers go first (Options.Yield)
	li, err := scan.Walk(ctx, b.want, br, b.t.opts.Analyzers, b.t.opts.Limits)
	var le *scan.LimitError
	if err != nil && !errors.As(err, &le) {
		return nil, ""
	}
	// Hash what Walk left unread (after a corrupt stream) to check the digest.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, ""
	}
	return li, digest.NewDigest(digest.SHA256, hr.h)
}

// abandonGrace is how long a walk past its deadline gets to notice its
// cancelled context before it is abandoned.
const abandonGrace = time.Second

type walked struct {
	li  *scan.LayerInventory
	sum digest.Digest
}

// run analyses the blob in a goroutine of its own and waits for it, at most
// AnalysisTimeout after the transfer is over (final digest delivered or
// blob detached); then it stores the result when the teed bytes hash to the
// committed digest, or reports why not. A walk past its deadline has its
// context cancelled and is abandoned: run returns (freeing the worker) and
// nothing the walk produces afterwards is used.
func (b *blob) run(ctx context.Context) {
	t := b.t
	log := t.opts.Logger.With().Str("repo", b.repo).Str("op", "tee").Logger()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan walked, 1)
	go func() {
		li, sum := b.analyse(wctx)
		res <- walked{li, sum}
		if !b.walk.CompareAndSwap(walkRunning, walkDone) {
			t.abandoned.Add(-1) // an abandoned walk came back
		}
	}()
	var (
		w        walked
		final    digest.Digest
		finalCh  = b.final
		gone     = b.gone
		deadline <-chan time.Time
		timedOut bool
	)
	var timer *time.Timer
	arm := func() {
		if timer == nil {
			timer = time.NewTimer(t.opts.AnalysisTimeout)
			deadline = timer.C
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
wait:
	for {
		select {
		case w = <-res:
			break wait
		case final = <-finalCh:
			finalCh = nil
			if final == "" {
				cancel() // cancelled: nothing to analyse
			}
			arm()
		case <-gone:
			gone = nil
			arm()
		case <-deadline:
			timedOut = true
			cancel()
			select { // a walk that honours ctx returns at once
			case w = <-res:
				break wait
			case <-time.After(min(t.opts.AnalysisTimeout, abandonGrace)):
			}
			if b.walk.CompareAndSwap(walkRunning, walkAbandoned) {
				t.abandoned.Add(1)
				log.Warn().Dur("timeout", t.opts.AnalysisTimeout).Msg("layer analysis past its deadline ignores cancellation: abandoned, worker freed")
			} else {
				w = <-res // it returned just now
			}
			break wait
		}
	}
	// The walk is over (or abandoned): the worker is free for other blobs
	// while this one waits for its upload's end (an upload whose client
	// went away may never send it; the idle timer ends the wait).
	b.freeSlot()
	if finalCh != nil {
		final = <-finalCh
	}
	b.idle.Stop()
	b.mu.Lock()
	detached, reason := b.detached, b.reason
	if !detached {
		b.detachLocked("done") // free anything left
	}
	b.mu.Unlock()
	defer b.release()
	switch {
	case final == "":
		return // cancelled upload or failed pull: nothing to analyse later
	case detached:
		if reason != "" && reason != "done" && b.want != "" {
			t.deferred(ctx, b.repo, final, reason, b) // uploads report at UploadDone
		}
		return
	case timedOut:
		log.Warn().Str("digest", final.String()).Dur("timeout", t.opts.AnalysisTimeout).Msg("layer analysis timed out; deferred")
		t.deferred(ctx, b.repo, final, ReasonTimeout, b)
		return
	case w.li == nil:
		t.deferred(ctx, b.repo, final, ReasonFailed, b)
		return
	case w.sum != final:
		log.Warn().Str("digest", final.String()).Str("teed", w.sum.String()).Msg("teed bytes do not match; discarded")
		t.deferred(ctx, b.repo, final, ReasonMismatch, b)
		return
	}
	li := w.li
	li.Digest = final
	for i := range li.Packages {
		li.Packages[i].Layer = final
	}
	if t.opts.Store != nil {
		if err := t.opts.Store.PutLayer(ctx, li); err != nil {
			log.Warn().Err(err).Str("digest", final.String()).Msg("layer inventory not stored; deferred")
			t.deferred(ctx, b.repo, final, ReasonNotStored, b)
			return
		}
	}
	t.mu.Lock()
	delete(t.reported, final) // stored: a later failure may be reported again
	t.mu.Unlock()
	log.Debug().Str("digest", final.String()).Int("packages", len(li.Packages)).Msg("layer analysed in transfer")
	if t.opts.Committed != nil {
		t.opts.Committed(ctx, b.repo, li)
	}
}

// release gives up b's place in Teer.inflight, after its result was
// committed or reported.
func (b *blob) release() {
	t := b.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if b.key != "" && t.inflight[b.key] == b {
		delete(t.inflight, b.key)
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

// slabBytes is the size of the tee's buffers.
const slabBytes = 256 << 10

// getSlab takes a slab from t's free list, or allocates one.
func (t *Teer) getSlab() []byte {
	select {
	case b := <-t.free:
		return b[:0]
	default:
		return make([]byte, 0, slabBytes)
	}
}

// putSlab returns b to t's free list; past its capacity b is left to the
// garbage collector.
func (t *Teer) putSlab(b []byte) {
	if cap(b) != slabBytes {
		return
	}
	select {
	case t.free <- b[:0]:
	default:
	}
}
