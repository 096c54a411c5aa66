package scan

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// Compression names as recorded in LayerInventory.Compression.
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// DetectCompression recognises a layer's compression from its first bytes:
// gzip (1f 8b), zstd (28 b5 2f fd), otherwise "none" (plain tar, or not a
// layer at all: see LooksLikeLayer).
func DetectCompression(head []byte) string {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return CompressionGzip
	case len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		return CompressionZstd
	}
	return CompressionNone
}

// LooksLikeLayer reports whether head (the first bytes of a blob, at least
// 262 when the blob is that long) can start a layer: gzip, zstd, or a tar
// header ("ustar" magic at offset 257). JSON configs, signatures and other
// artifacts answer false.
func LooksLikeLayer(head []byte) bool {
	if DetectCompression(head) != CompressionNone {
		return true
	}
	return len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar"))
}

// Walk reads one layer blob r (gzip, zstd or plain tar, recognised from the
// bytes) in a single sequential pass, offers each entry to as by its
// normalised header, reads only wanted entries, and returns the layer's
// inventory with whiteouts, opaque directories and the diffID (sha256 of the
// uncompressed tar, set only when the whole stream was read cleanly).
//
// Bad input never fails the walk: a corrupt gzip/zstd stream or truncated tar
// gives a CORRUPT_LAYER LayerError, an analyzer error ANALYZER_ERROR, an
// analyzer panic ANALYZER_PANIC, and what was found before stands. A
// layer-wide cap (MaxLayerBytes, MaxEntries, MaxCompressionRatio) returns the
// partial inventory together with a *LimitError. An error reading r itself, or
// ctx ending, returns a nil inventory and the error: the result is not a
// property of the blob and must not be cached.
func Walk(ctx context.Context, layer digest.Digest, r io.Reader, as []Analyzer, lim Limits) (*LayerInventory, error) {
	lim = lim.WithDefaults()
	inv := &LayerInventory{
		Digest:           layer,
		AnalyzersVersion: AnalyzersVersion(as),
		AnalyzedAt:       time.Now().UTC(),
	}
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(4)
	if src.err != nil {
		return nil, fmt.Errorf("scan: read layer %s: %w", layer, src.err)
	}
	inv.Compression = DetectCompression(head)
	var ur io.Reader
	var closeZ func() // the decompressor's Close
	switch inv.Compression {
	case CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			if src.err != nil {
				return nil, fmt.Errorf("scan: read layer %s: %w", layer, src.err)
			}
			inv.Errors = append(inv.Errors, LayerError{Reason: ReasonCorruptLayer, Message: "gzip: " + err.Error()})
			return inv, nil
		}
		closeZ = func() { _ = zr.Close() }
		ur = zr
	case CompressionZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			inv.Errors = append(inv.Errors, LayerError{Reason: ReasonCorruptLayer, Message: "zstd: " + err.Error()})
			return inv, nil
		}
		closeZ = zr.Close
		ur = zr
	default:
		ur = br
	}
	h := sha256.New()
	cr := &countingReader{alive: ctx.Err, r: ur, src: src, lim: lim, compressed: inv.Compression != CompressionNone}
	// Decompression runs ahead on a goroutine of its own, so that it overlaps
	// with hashing, tar parsing and the analyzers (on two cores the walk then
	// goes about as fast as plain decompression). settle stops it and waits
	// for its read in flight before cr's state is read or Walk returns; once
	// ctx has ended it does not wait (a stalled source must not hold a
	// cancelled walk), and the goroutine closes the decompressor itself.
	var rd io.Reader = cr
	settle := func() bool { return true }
	if closeZ != nil {
		ra := newReadahead(ctx, cr, closeZ)
		settle = ra.close
		defer ra.close()
		rd = ra
	}
	tr := tar.NewReader(io.TeeReader(rd, h))
	w := walker{inv: inv, as: as, lim: lim}
	clean := true
	// failed settles the reader and turns err into Walk's result: a source
	// or context failure (not cacheable), a limit, or CORRUPT_LAYER.
	var entriesLimit *LimitError
	failed := func(err error, where string) (fatal error, limit *LimitError) {
		clean = false
		if !settle() {
			return fmt.Errorf("scan: walk: %w", ctx.Err()), nil
		}
		if ferr := cr.fatal(); ferr != nil {
			return ferr, nil
		}
		if limit = cr.limit; entriesLimit != nil {
			limit = entriesLimit
		}
		if limit != nil {
			inv.Bytes = cr.n
			inv.Errors = append(inv.Errors, LayerError{Reason: ReasonLimitExceeded, Message: limit.Error()})
			return nil, limit
		}
		inv.Errors = append(inv.Errors, LayerError{Reason: ReasonCorruptLayer, Path: where, Message: err.Error()})
		return nil, nil
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			inv.Entries++
			if inv.Entries > lim.MaxEntries {
				entriesLimit = &LimitError{Limit: "MaxEntries", Max: float64(lim.MaxEntries)}
				err = entriesLimit
			}
		}
		if err == nil {
			err = w.entry(ctx, hdr, tr)
		}
		if err != nil {
			if ferr, limit := failed(err, w.last); ferr != nil {
				return nil, ferr
			} else if limit != nil {
				return inv, limit
			}
			break
		}
	}
	if clean {
		// Read the tar's end padding and the compressor's trailer: the diffID
		// covers every byte, and gzip verifies its CRC only at the end.
		if _, err := io.Copy(h, rd); err != nil {
			if ferr, limit := failed(err, ""); ferr != nil {
				return nil, ferr
			} else if limit != nil {
				return inv, limit
			}
		}
	}
	if !settle() {
		return nil, fmt.Errorf("scan: walk: %w", ctx.Err())
	}
	inv.Bytes = cr.n
	if clean {
		inv.DiffID = digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	}
	return inv, nil
}

// sourceReader remembers the first error of the blob source, to tell a
// failed transfer (not cacheable) from corrupt bytes (a property of the blob).
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

// countingReader counts uncompressed bytes and enforces the layer-wide caps.
type countingReader struct {
	alive      func() error // ctx.Err of the Walk call
	r          io.Reader
	src        *sourceReader
	lim        Limits
	compressed bool
	n          int64
	limit      *LimitError
	ctxErr     error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit != nil {
		return 0, c.limit
	}
	if err := c.alive(); err != nil {
		c.ctxErr = err
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.lim.MaxLayerBytes {
		c.limit = &LimitError{Limit: "MaxLayerBytes", Max: float64(c.lim.MaxLayerBytes)}
		return n, c.limit
	}
	if c.compressed && c.n > 1<<20 && float64(c.n) > c.lim.MaxCompressionRatio*float64(max(c.src.n, 1)) {
		c.limit = &LimitError{Limit: "MaxCompressionRatio", Max: c.lim.MaxCompressionRatio}
		return n, c.limit
	}
	return n, err
}

// fatal returns the error that makes a walk's result uncacheable, if any.
func (c *countingReader) fatal() error {
	if c.ctxErr != nil {
		return fmt.Errorf("scan: walk: %w", c.ctxErr)
	}
	if c.src.err != nil {
		return fmt.Errorf("scan: read layer: %w", c.src.err)
	}
	return nil
}

// walker carries one Walk's per-entry state.
type walker struct {
	inv  *LayerInventory
	as   []Analyzer
	lim  Limits
	last string
	head [HeadSize]byte
	// spoolBuf is the in-memory spool storage, reused from entry to entry.
	spoolBuf []byte
}

const whiteoutPrefix = ".wh."
const opaqueMarker = ".wh..wh..opq"

// entry handles one tar entry; a returned error is a read error of the
// stream (the analyzers' own errors are recorded, never returned).
func (w *walker) entry(ctx context.Context, hdr *tar.Header, tr io.Reader) error {
	name := CleanPath(hdr.Name)
	w.last = name
	if name == "" {
		return nil
	}
	base := path.Base(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		dir := path.Dir(name)
		if dir == "." {
			dir = ""
		}
		if base == opaqueMarker {
			w.inv.OpaqueDirs = append(w.inv.OpaqueDirs, dir)
		} else if target := base[len(whiteoutPrefix):]; target != "" {
			w.inv.Whiteouts = append(w.inv.Whiteouts, CleanPath(dir+"/"+target))
		}
		return nil
	}
	// Analyzers see a copy with the normalised name (no I/O in Wants).
	h := *hdr
	h.Name = name
	switch h.Typeflag {
	case tar.TypeDir:
		// A directory where an analyzer would read a file supersedes a lower
		// layer's package file there (overlayfs shows the directory).
		rq := h
		rq.Typeflag, rq.Size, rq.Mode = tar.TypeReg, 0, h.Mode&^0o111
		for _, a := range w.as {
			if safeWants(a, &rq) {
				w.inv.Paths = append(w.inv.Paths, name)
				break
			}
		}
		return nil
	case tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		w.inv.NonDirs = append(w.inv.NonDirs, name)
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
		if mayHoldPackages(name) {
			w.inv.NonDirs = append(w.inv.NonDirs, name)
		}
	}
	// A link at a path where a package file would be wanted still replaces
	// that file for the merge: ask as if it were a regular file, then record
	// the path without reading.
	q := &h
	if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
		rq := h
		rq.Typeflag = tar.TypeReg
		q = &rq
	}
	var wanters []Analyzer
	for _, a := range w.as {
		if safeWants(a, q) {
			wanters = append(wanters, a)
		}
	}
	if len(wanters) == 0 {
		return nil
	}
	w.inv.Paths = append(w.inv.Paths, name)
	if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA { //nolint:staticcheck // old archives use TypeRegA
		return nil
	}
	if h.Size > w.lim.MaxEntryBytes {
		w.inv.Errors = append(w.inv.Errors, LayerError{Path: name, Reason: ReasonLimitExceeded,
			Message: (&LimitError{Limit: "MaxEntryBytes", Max: float64(w.lim.MaxEntryBytes), Path: name}).Error()})
		return nil
	}
	// One streaming analyzer: hand it the tar reader directly.
	if len(wanters) == 1 {
		if _, ra := wanters[0].(RandomAccessAnalyzer); !ra {
			w.run(ctx, wanters[0], &h, io.LimitReader(tr, h.Size), nil)
			return nil
		}
	}
	hn := int(min(int64(HeadSize), h.Size))
	head := w.head[:hn]
	if _, err := io.ReadFull(tr, head); err != nil {
		return err
	}
	streams, ras := wanters[:0:0], []RandomAccessAnalyzer(nil)
	for _, a := range wanters {
		if ra, ok := a.(RandomAccessAnalyzer); ok {
			if safeWantsHead(ra, &h, head) {
				ras = append(ras, ra)
			}
			continue
		}
		streams = append(streams, a)
	}
	switch {
	case len(ras) == 0 && len(streams) == 0:
		return nil
	case len(ras) == 0 && len(streams) == 1:
		w.run(ctx, streams[0], &h, io.MultiReader(bytes.NewReader(head), io.LimitReader(tr, h.Size-int64(hn))), nil)
		return nil
	}
	sp := newSpool(w.lim.MaxEntryBufferBytes, w.lim.TempDir, w.spoolBuf, h.Size)
	defer func() {
		if b := sp.buffer(); b != nil {
			w.spoolBuf = b
		}
		_ = sp.Close()
	}()
	_, _ = sp.Write(head)
	if _, err := io.Copy(sp, io.LimitReader(tr, h.Size-int64(hn))); err != nil {
		var se *spoolError
		if errors.As(err, &se) {
			w.inv.Errors = append(w.inv.Errors, LayerError{Path: name, Reason: ReasonInternalError, Message: err.Error()})
			return nil
		}
		return err
	}
	ra := sp.ReaderAt()
	for _, a := range streams {
		w.run(ctx, a, &h, io.NewSectionReader(ra, 0, sp.Size()), nil)
	}
	for _, a := range ras {
		w.run(ctx, a, &h, nil, ra)
	}
	return nil
}

type spoolError struct{ err error }

func (e *spoolError) Error() string { return e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }

// run calls one analyzer on one entry, recovering panics, and records the result.
func (w *walker) run(ctx context.Context, a Analyzer, h *tar.Header, r io.Reader, ra io.ReaderAt) {
	res, err := func() (res Result, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = &panicError{v: p, stack: debug.Stack()}
			}
		}()
		hc := *h
		switch {
		case ra != nil:
			return a.(RandomAccessAnalyzer).AnalyzeAt(ctx, &hc, ra, h.Size)
		default:
			if ea, ok := a.(EntryAnalyzer); ok {
				return ea.AnalyzeEntry(ctx, &hc, r)
			}
			pkgs, err := a.Analyze(ctx, &hc, r)
			return Result{Packages: pkgs}, err
		}
	}()
	if err != nil {
		reason := ReasonAnalyzerError
		var pe *panicError
		var le *LimitError
		switch {
		case errors.As(err, &pe):
			reason = ReasonAnalyzerPanic
		case errors.As(err, &le):
			reason = ReasonLimitExceeded
		}
		w.inv.Errors = append(w.inv.Errors, LayerError{Analyzer: a.Name(), Path: h.Name, Reason: reason, Message: err.Error()})
	}
	for _, p := range res.Packages {
		if p.Path == "" {
			p.Path = h.Name
		}
		if p.Analyzer == "" {
			p.Analyzer = a.Name()
		}
		if p.Kind == "" {
			p.Kind = KindLang
		}
		p.Layer = w.inv.Digest
		w.inv.Packages = append(w.inv.Packages, p)
	}
	w.inv.OSOwned = append(w.inv.OSOwned, res.OSOwned...)
	if res.OS != nil && (w.inv.OS == nil || res.OS.Path == "etc/os-release") {
		w.inv.OS = res.OS
	}
}

type panicError struct {
	v     any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("analyzer panic: %v", e.v) }

func safeWants(a Analyzer, h *tar.Header) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return a.Wants(h)
}

func safeWantsHead(a RandomAccessAnalyzer, h *tar.Header, head []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return a.WantsHead(h, head)
}
