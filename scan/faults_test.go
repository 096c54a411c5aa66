package scan_test

// Fault tests (issue 7, "Robustness") for hostile layers: each bad input
// ends the walk with an inventory that says why (a LayerError with a
// reason), never a panic, an unbounded read or unbounded memory. Covered
// elsewhere and not repeated here: a corrupt or truncated gzip layer
// (TestWalkCorruptKeepsFindings), an analyzer panic
// (TestWalkAnalyzerPanicRecovered), the layer-wide caps on small inputs
// (TestWalkLimits), a source that fails mid-read (TestWalkSourceErrorIsNotCacheable).

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// TestFaultZstdBadFrame: a zstd layer whose frame is damaged (flipped bytes
// inside a block, a truncated frame, or a garbage frame after a good one)
// gives a CORRUPT_LAYER LayerError, keeps what was found before the damage,
// sets no diffID and does not panic.
func TestFaultZstdBadFrame(t *testing.T) {
	raw := mkTar(t,
		entry{name: "var/lib/dpkg/status", body: dpkgStatus},
		entry{name: "big", body: string(bytes.Repeat([]byte("abcdefgh12345678"), 1<<14))},
	)
	z := zst(t, raw)
	flipped := append([]byte(nil), z...)
	for i := len(flipped) / 2; i < len(flipped)/2+32; i++ {
		flipped[i] ^= 0xff
	}
	// A second "frame" whose magic is wrong, after a complete good frame.
	badMagic := append(append([]byte(nil), z...), 0x28, 0xb5, 0x2f, 0x00, 1, 2, 3, 4, 5, 6, 7, 8)
	// A second frame with a good magic and a reserved (invalid) descriptor bit.
	badHeader := append(append([]byte(nil), z...), 0x28, 0xb5, 0x2f, 0xfd, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff)
	for _, tc := range []struct {
		name string
		blob []byte
		pkgs int // packages that must survive; -1: do not check
	}{
		{"flipped block bytes", flipped, -1},
		{"truncated frame", z[:len(z)-10], 2},
		{"bad magic after a good frame", badMagic, 2},
		{"bad frame header after a good frame", badHeader, 2},
		{"magic only", []byte{0x28, 0xb5, 0x2f, 0xfd}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			li, err := walk(t, tc.blob, scan.Limits{})
			if err != nil {
				t.Fatalf("walk: %v (bad bytes must not fail the walk)", err)
			}
			if li.Compression != scan.CompressionZstd {
				t.Errorf("compression %q, want zstd", li.Compression)
			}
			if len(li.Errors) == 0 || li.Errors[len(li.Errors)-1].Reason != scan.ReasonCorruptLayer ||
				li.Errors[len(li.Errors)-1].Message == "" {
				t.Fatalf("errors %+v, want a CORRUPT_LAYER with a message", li.Errors)
			}
			if tc.pkgs >= 0 && len(li.Packages) != tc.pkgs {
				t.Errorf("packages %v, want %d kept", names(li), tc.pkgs)
			}
			if li.DiffID != "" {
				t.Error("diffID set for a corrupt layer")
			}
		})
	}
}

// TestFaultGzipBomb: a gzip layer of 1 GiB of zeros (about 1 MiB
// compressed) is stopped by MaxCompressionRatio with the default limits,
// after reading only a bounded prefix of the blob. The bomb is generated
// while it is read, so the test never holds it.
func TestFaultGzipBomb(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestCompression)
		tw := tar.NewWriter(zw)
		const size = 1 << 30
		err := tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		zero := make([]byte, 1<<20)
		for n := 0; err == nil && n < size; n += len(zero) {
			_, err = tw.Write(zero)
		}
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	src := &countReader{r: pr}
	li, err := scan.Walk(context.Background(), digest.Digest("sha256:"+strings.Repeat("b", 64)), src, analyzer.Default(analyzer.Options{}), scan.Limits{})
	pr.CloseWithError(errors.New("test done")) // stops the generator
	var le *scan.LimitError
	if !errors.As(err, &le) || le.Limit != "MaxCompressionRatio" {
		t.Fatalf("err %v, want a MaxCompressionRatio LimitError", err)
	}
	if li == nil || len(li.Errors) == 0 || li.Errors[len(li.Errors)-1].Reason != scan.ReasonLimitExceeded ||
		!strings.Contains(li.Errors[len(li.Errors)-1].Message, "MaxCompressionRatio") {
		t.Fatalf("inventory %+v, want a LIMIT_EXCEEDED error naming MaxCompressionRatio", li)
	}
	if li.DiffID != "" {
		t.Error("diffID set for a layer that was not read to the end")
	}
	// 1 GiB of zeros is ~1 MiB of deflate; the ratio check fires after a
	// few MiB decompressed, so only a small prefix may have been read.
	if src.n > 1<<20 {
		t.Errorf("read %d compressed bytes of the bomb before stopping, want a small prefix", src.n)
	}
	if li.Bytes > 64<<20 {
		t.Errorf("decompressed %d bytes before stopping", li.Bytes)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// nestedJar returns a jar nested depth deep: level i (1 outermost) holds a
// pom.properties for artifact level-i and, below the last level, lib/inner.jar.
func nestedJar(t testing.TB, depth int) []byte {
	var inner []byte
	for lvl := depth; lvl >= 1; lvl-- {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.Create(fmt.Sprintf("META-INF/maven/org.example/level-%d/pom.properties", lvl))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "groupId=org.example\nartifactId=level-%d\nversion=1.0.%d\n", lvl, lvl)
		if inner != nil {
			w, err := zw.Create("lib/inner.jar")
			if err != nil {
				t.Fatal(err)
			}
			w.Write(inner)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		inner = buf.Bytes()
	}
	return inner
}

// TestFaultJarNested20Deep: a jar nested 20 deep is read only to
// MaxNestingDepth levels (the default, and a configured one), reports a
// LIMIT_EXCEEDED LayerError from the java analyzer naming MaxNestingDepth
// and the archive path, keeps the packages of the levels it read, and does
// not panic.
func TestFaultJarNested20Deep(t *testing.T) {
	jar := nestedJar(t, 20)
	layer := gz(t, mkTar(t,
		entry{name: "var/lib/dpkg/status", body: dpkgStatus},
		entry{name: "opt/app/app.jar", body: string(jar)},
	))
	for _, depth := range []int{0, 3} { // 0: the default (8)
		want := depth
		if want == 0 {
			want = scan.DefaultMaxNestingDepth
		}
		t.Run(fmt.Sprintf("depth %d", want), func(t *testing.T) {
			li, err := walk(t, layer, scan.Limits{MaxNestingDepth: depth}, analyzer.Default(analyzer.Options{MaxNestingDepth: depth})...)
			if err != nil {
				t.Fatalf("walk: %v (an entry-level cap must not fail the walk)", err)
			}
			var lims []scan.LayerError
			for _, e := range li.Errors {
				if e.Reason == scan.ReasonLimitExceeded {
					lims = append(lims, e)
				} else {
					t.Errorf("unexpected layer error %+v", e)
				}
			}
			if len(lims) != 1 || lims[0].Analyzer != "java" || lims[0].Path != "opt/app/app.jar" ||
				!strings.Contains(lims[0].Message, "MaxNestingDepth") {
				t.Fatalf("limit errors %+v, want one java MaxNestingDepth on opt/app/app.jar", lims)
			}
			levels := map[string]bool{}
			for _, p := range li.Packages {
				if p.Ecosystem == "Maven" {
					levels[p.Name] = true
				}
			}
			if len(levels) != want {
				t.Errorf("maven packages %v, want the %d outermost levels", levels, want)
			}
			for lvl := 1; lvl <= want; lvl++ {
				if !levels[fmt.Sprintf("org.example:level-%d", lvl)] {
					t.Errorf("level %d missing: %v", lvl, levels)
				}
			}
			if li.DiffID == "" {
				t.Error("the layer itself is intact: diffID must be set")
			}
			if len(names(li)) < 2+want {
				t.Errorf("dpkg packages lost beside the java limit: %v", names(li))
			}
		})
	}
}

// TestFaultMillionEntryTar: a plain tar of 1,000,000 tiny entries, generated
// while it is read, walks to the end under the default limits (MaxEntries is
// 2,000,000) with an exact entry count and no errors, and the inventory it
// keeps is small: the walk's memory does not grow with the entry count.
// With MaxEntries below the count it stops with LIMIT_EXCEEDED instead.
func TestFaultMillionEntryTar(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000-entry tar: takes over a minute under -race on 2 cores")
	}
	const n = 1_000_000
	gen := func() io.Reader {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			var err error
			for i := 0; err == nil && i < n; i++ {
				err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d/%07d", i), Mode: 0o644, Size: 1,
					Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
				if err == nil {
					_, err = tw.Write([]byte{'x'})
				}
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr
	}
	t.Run("default limits", func(t *testing.T) {
		li, err := scan.Walk(context.Background(), digest.Digest("sha256:"+strings.Repeat("c", 64)), gen(), analyzer.Default(analyzer.Options{}), scan.Limits{})
		if err != nil {
			t.Fatalf("walk: %v", err)
		}
		if li.Entries != n || len(li.Errors) != 0 || li.DiffID == "" {
			t.Fatalf("entries %d errors %+v diffID %q, want %d clean", li.Entries, li.Errors, li.DiffID, n)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > 256<<20 {
			t.Errorf("heap %d MiB after a million-entry walk, inventory held", ms.HeapAlloc>>20)
		}
		runtime.KeepAlive(li)
	})
	t.Run("MaxEntries below the count", func(t *testing.T) {
		src := gen()
		li, err := scan.Walk(context.Background(), digest.Digest("sha256:"+strings.Repeat("d", 64)), src, analyzer.Default(analyzer.Options{}), scan.Limits{MaxEntries: 100_000})
		src.(*io.PipeReader).CloseWithError(errors.New("test done"))
		var le *scan.LimitError
		if !errors.As(err, &le) || le.Limit != "MaxEntries" {
			t.Fatalf("err %v, want a MaxEntries LimitError", err)
		}
		if li == nil || len(li.Errors) == 0 || li.Errors[len(li.Errors)-1].Reason != scan.ReasonLimitExceeded ||
			!strings.Contains(li.Errors[len(li.Errors)-1].Message, "MaxEntries") {
			t.Fatalf("inventory %+v, want LIMIT_EXCEEDED naming MaxEntries", li)
		}
	})
}
