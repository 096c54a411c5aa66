package scan

import (
	"context"
	"io"
	"sync"
)

// readahead reads r on a goroutine of its own into a few large buffers, so
// that producing the bytes (decompression) and consuming them (hashing, tar
// parsing, analyzers) run at the same time. Read returns the bytes in order
// and then r's error, or ctx's error once ctx ends. close stops the
// goroutine and waits for it (r is never read after close returns true),
// except once ctx has ended: then it returns false at once and the goroutine
// stops after the read it has in flight. The goroutine calls onExit (the
// decompressor's Close) last.
type readahead struct {
	r      io.Reader
	ctx    context.Context
	onExit func()
	full   chan raChunk
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	cur    []byte
	off    int
	err    error
}

type raChunk struct {
	b   []byte
	err error
}

const (
	readaheadBuffers = 4
	readaheadSize    = 256 << 10
)

func newReadahead(ctx context.Context, r io.Reader, onExit func()) *readahead {
	ra := &readahead{r: r, ctx: ctx, onExit: onExit, full: make(chan raChunk, readaheadBuffers), free: make(chan []byte, readaheadBuffers),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range readaheadBuffers {
		ra.free <- make([]byte, readaheadSize)
	}
	go ra.fill()
	return ra
}

func (ra *readahead) fill() {
	defer func() {
		if ra.onExit != nil {
			ra.onExit()
		}
		close(ra.done)
	}()
	for {
		select {
		case <-ra.stop:
			return
		default:
		}
		var b []byte
		select {
		case b = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err, empty := 0, error(nil), 0
		for n < len(b) && err == nil {
			var m int
			m, err = ra.r.Read(b[n:])
			n += m
			if m == 0 && err == nil {
				if empty++; empty >= 100 {
					err = io.ErrNoProgress
				}
			}
		}
		select {
		case ra.full <- raChunk{b[:n], err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readahead) Read(p []byte) (int, error) {
	for ra.off == len(ra.cur) {
		if ra.cur != nil {
			ra.free <- ra.cur[:cap(ra.cur)] // never blocks: room for every buffer
			ra.cur = nil
		}
		if ra.err != nil {
			return 0, ra.err
		}
		var c raChunk
		select { // bytes already read ahead first, then wait for either
		case c = <-ra.full:
		default:
			select {
			case c = <-ra.full:
			case <-ra.ctx.Done():
				return 0, ra.ctx.Err()
			}
		}
		ra.cur, ra.off = c.b, 0
		if c.err != nil {
			ra.err = c.err
		}
	}
	n := copy(p, ra.cur[ra.off:])
	ra.off += n
	return n, nil
}

// close stops the goroutine and waits until it has returned (after the read
// it has in flight, if any); false, without waiting, once ctx has ended.
func (ra *readahead) close() bool {
	ra.once.Do(func() { close(ra.stop) })
	select {
	case <-ra.done:
		return true
	default:
	}
	select {
	case <-ra.done:
		return true
	case <-ra.ctx.Done():
		return false
	}
}
