package embedded

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

// The reader gets, in order, the bytes of Writes and of handed-over
// sources, then EOF; each writer call returns only once its share was read.
func TestHandoffPipeDeliversWritesAndSources(t *testing.T) {
	src := make([]byte, 3<<20+17)
	_, _ = rand.Read(src)
	p := newHandoffPipe()
	type res struct {
		n   int64
		err error
	}
	wrote := make(chan res, 3)
	go func() {
		n, err := p.write([]byte("head:"))
		wrote <- res{int64(n), err}
		m, err := p.readFrom(iotest.HalfReader(bytes.NewReader(src)))
		wrote <- res{m, err}
		n, err = p.write([]byte(":tail"))
		wrote <- res{int64(n), err}
		p.closeWrite(nil)
	}()
	got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(p, 5)))
	if err != nil || string(got) != "head:" {
		t.Fatalf("first bytes %q, %v", got, err)
	}
	rest, err := io.ReadAll(p)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	want := append(append([]byte{}, src...), ":tail"...)
	if !bytes.Equal(rest, want) {
		t.Fatalf("read %d bytes, want %d in order", len(rest), len(want))
	}
	for i, n := range []int64{5, int64(len(src)), 5} {
		if r := <-wrote; r.n != n || r.err != nil {
			t.Fatalf("writer call %d returned %d, %v; want %d, nil", i, r.n, r.err, n)
		}
	}
}

// A source's read error goes back to the handler's ReadFrom; the body goes
// on and ends with the handler's close error.
func TestHandoffPipeSourceErrorAndCloseError(t *testing.T) {
	p := newHandoffPipe()
	boom, gone := errors.New("disk read failed"), errors.New("handler failed")
	got := make(chan error, 1)
	go func() {
		_, err := p.readFrom(io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom)))
		got <- err
		p.closeWrite(gone)
	}()
	b, err := io.ReadAll(p)
	if string(b) != "abc" || !errors.Is(err, gone) {
		t.Fatalf("read %q, %v; want \"abc\", %v", b, err, gone)
	}
	if err := <-got; !errors.Is(err, boom) {
		t.Fatalf("ReadFrom returned %v, want %v", err, boom)
	}
}

// A reader that closes releases a writer waiting on it, and later writes
// fail at once: a client that goes away never leaves the handler blocked.
func TestHandoffPipeCloseReleasesWriter(t *testing.T) {
	p := newHandoffPipe()
	blocked := make(chan error, 1)
	go func() {
		_, err := p.readFrom(bytes.NewReader(make([]byte, 1<<20)))
		blocked <- err
	}()
	buf := make([]byte, 1000)
	if _, err := p.Read(buf); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("ReadFrom after Close returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer stayed blocked after the reader closed")
	}
	if _, err := p.write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write after Close: %v", err)
	}
	if _, err := p.Read(buf); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Read after Close: %v", err)
	}
}
