package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// spool holds one tar entry for random access: in memory up to max bytes,
// then in a temporary file. Close (Cancel) removes the file; nothing else is
// ever written to disk, and the entry's own path is never used.
type spool struct {
	max int64
	dir string
	buf []byte
	f   *os.File
	n   int64
}

// newSpool returns a spool that keeps its bytes in buf's storage (reused
// across entries by the walker: no growing and copying per entry), grown to
// sizeHint at once when that fits under max. An entry known (sizeHint, the
// tar header's size) to be larger than max goes to the file from its first
// byte instead of growing a buffer to max and then spilling it.
func newSpool(max int64, dir string, buf []byte, sizeHint int64) *spool {
	if sizeHint > max {
		return &spool{max: 0, dir: dir}
	}
	if int64(cap(buf)) < sizeHint {
		buf = make([]byte, 0, sizeHint)
	}
	return &spool{max: max, dir: dir, buf: buf[:0]}
}

// ReadFrom reads r to its end straight into the buffer's spare capacity
// (one copy, from the tar reader into place), then as Write would.
func (s *spool) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for s.f == nil && len(s.buf) < cap(s.buf) {
		n, err := r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		s.n += int64(n)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	n, err := io.Copy(struct{ io.Writer }{s}, r)
	return total + n, err
}

// buffer returns the in-memory storage for reuse once the spool is done
// with (nil when it spilled to a file).
func (s *spool) buffer() []byte {
	if s.f != nil {
		return nil
	}
	return s.buf[:0]
}

// Write appends p, moving to a temporary file once max is passed.
func (s *spool) Write(p []byte) (int, error) {
	if s.f == nil && s.n+int64(len(p)) <= s.max {
		s.buf = append(s.buf, p...)
		s.n += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "tollgate-spool-*")
		if err != nil {
			return 0, &spoolError{fmt.Errorf("scan: spool: %w", err)}
		}
		s.f = f
		if _, err := f.Write(s.buf); err != nil {
			return 0, &spoolError{fmt.Errorf("scan: spool: %w", err)}
		}
		s.buf = nil
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	if err != nil {
		return n, &spoolError{fmt.Errorf("scan: spool: %w", err)}
	}
	return n, nil
}

// ReaderAt returns the spooled bytes; valid until Close.
func (s *spool) ReaderAt() io.ReaderAt {
	if s.f != nil {
		return s.f
	}
	return bytes.NewReader(s.buf)
}

// Size is the number of bytes spooled.
func (s *spool) Size() int64 { return s.n }

// Close drops the buffer and removes the temporary file, if any.
func (s *spool) Close() error {
	s.buf = nil
	if s.f == nil {
		return nil
	}
	name := s.f.Name()
	err := s.f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	s.f = nil
	return err
}
