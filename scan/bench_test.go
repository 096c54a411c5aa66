package scan_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// genLayer writes a synthetic root filesystem layer to w: a dpkg status,
// node_modules packages, Python dists, and files of compressible text up to
// about total bytes, plus one big "executable" of bigExe bytes (ELF magic,
// no build info) that must be spooled.
func genLayer(w io.Writer, total, bigExe int64) error {
	tw := tar.NewWriter(w)
	rng := rand.New(rand.NewSource(1))
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua package version install")
	text := func(n int) []byte {
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(words[rng.Intn(len(words))])
			if rng.Intn(12) == 0 {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
		}
		return b.Bytes()[:n]
	}
	put := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	var st strings.Builder
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&st, "Package: pkg%d\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.%d-1\nDescription: x\n %s\n\n", i, i, text(200))
	}
	if err := put("var/lib/dpkg/status", 0o644, []byte(st.String())); err != nil {
		return err
	}
	for i := 0; i < 200; i++ {
		if err := put(fmt.Sprintf("app/node_modules/m%d/package.json", i), 0o644, []byte(fmt.Sprintf(`{"name":"m%d","version":"1.0.%d"}`, i, i))); err != nil {
			return err
		}
		if err := put(fmt.Sprintf("usr/lib/python3/dist-packages/p%d-1.0.dist-info/METADATA", i), 0o644, []byte(fmt.Sprintf("Name: p%d\nVersion: 1.0\n\n", i))); err != nil {
			return err
		}
	}
	if bigExe > 0 {
		if err := tw.WriteHeader(&tar.Header{Name: "usr/bin/big", Mode: 0o755, Size: bigExe, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		chunk := append([]byte("\x7fELF"), text(1<<20-4)...)
		for left := bigExe; left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := tw.Write(chunk[:n]); err != nil {
				return err
			}
			left -= n
			chunk[0] = 'x'
		}
	}
	var written int64
	block := text(256 << 10)
	for i := 0; written < total; i++ {
		n := 4<<10 + rng.Intn(250<<10)
		off := rng.Intn(len(block) - n)
		if err := put("usr/share/doc/f"+strconv.Itoa(i), 0o644, block[off:off+n]); err != nil {
			return err
		}
		written += int64(n)
	}
	return tw.Close()
}

var benchLayer struct {
	once sync.Once
	gz   []byte
	raw  int64
}

// gzipLayer is a 256 MiB (uncompressed) synthetic layer, gzip level 6 as docker writes.
func gzipLayer(b *testing.B) []byte {
	benchLayer.once.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		cw := &countW{w: zw}
		if err := genLayer(cw, 256<<20, 0); err != nil {
			panic(err)
		}
		zw.Close()
		benchLayer.gz, benchLayer.raw = buf.Bytes(), cw.n
	})
	return benchLayer.gz
}

type countW struct {
	w io.Writer
	n int64
}

func (c *countW) Write(p []byte) (int, error) { n, err := c.w.Write(p); c.n += int64(n); return n, err }

// BenchmarkGunzip is the baseline: plain klauspost gzip decompression of the layer.
func BenchmarkGunzip(b *testing.B) {
	blob := gzipLayer(b)
	b.SetBytes(benchLayer.raw)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		zr, _ := gzip.NewReader(bytes.NewReader(blob))
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWalkGzip is Walk with every analyzer on the same bytes; its
// throughput ÷ BenchmarkGunzip's is the analysis overhead ratio (goal ≥ 0.8).
func BenchmarkWalkGzip(b *testing.B) {
	blob := gzipLayer(b)
	as := analyzer.Default(analyzer.Options{})
	b.SetBytes(benchLayer.raw)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		li, err := scan.Walk(context.Background(), "", bytes.NewReader(blob), as, scan.Limits{})
		if err != nil || len(li.Packages) != 700 {
			b.Fatalf("%v %d", err, len(li.Packages))
		}
	}
}

// vmHWM returns the process's peak resident set size in bytes (Linux).
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// resetHWM resets the peak RSS so earlier tests in the process do not count
// (Linux ≥ 4.0: writing 5 to /proc/self/clear_refs).
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func streamHuge(tb testing.TB, total, exe int64) *scan.LayerInventory {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(genLayer(pw, total, exe)) }()
	li, err := scan.Walk(context.Background(), "", pr, analyzer.Default(analyzer.Options{}), scan.Limits{TempDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	return li
}

// TestWalkMemoryFlat streams a 2 GiB layer with a 600 MiB executable (spilled
// to disk past the 32 MiB entry buffer) and checks the process's peak RSS
// stays under 300 MB. Skipped with -short.
func TestWalkMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB")
	}
	size := int64(2 << 30)
	if raceOn {
		size = 512 << 20 // the race detector makes this slow; the shape is the same
	}
	runtime.GC()
	resetHWM()
	li := streamHuge(t, size, 600<<20)
	if li.DiffID == "" || len(li.Packages) != 700 || li.Bytes < size {
		t.Fatalf("walk incomplete: %d packages, %d bytes, errors %+v", len(li.Packages), li.Bytes, li.Errors)
	}
	if raceOn {
		t.Logf("peak RSS %d MiB under the race detector (its shadow memory inflates RSS; not checked)", vmHWM()>>20)
	} else if hwm := vmHWM(); hwm > 300<<20 {
		t.Errorf("peak RSS %d MiB, want < 300 MiB", hwm>>20)
	} else {
		t.Logf("peak RSS %d MiB after %d MiB", hwm>>20, li.Bytes>>20)
	}
}

// BenchmarkWalkHugeLayer streams a 5 GiB plain tar layer and reports the
// process's peak RSS (goal < 300 MB).
func BenchmarkWalkHugeLayer(b *testing.B) {
	runtime.GC()
	resetHWM()
	for i := 0; i < b.N; i++ {
		li := streamHuge(b, 5<<30, 1<<30)
		b.SetBytes(li.Bytes)
	}
	b.ReportMetric(float64(vmHWM())/(1<<20), "peakRSS-MiB")
}
