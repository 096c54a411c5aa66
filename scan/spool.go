package scan

import (
	"bytes"
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

func newSpool(max int64, dir string) *spool { return &spool{max: max, dir: dir} }

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
