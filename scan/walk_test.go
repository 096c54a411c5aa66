package scan_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

type entry struct {
	name string
	body string
	mode int64
	typ  byte
}

// mkTar writes entries as a tar stream.
func mkTar(t testing.TB, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Mode: mode, Typeflag: typ, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

const dpkgStatus = `Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.20-1~deb12u2

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: removed
Status: deinstall ok config-files
Version: 1.0
`

func walk(t testing.TB, b []byte, lim scan.Limits, as ...scan.Analyzer) (*scan.LayerInventory, error) {
	t.Helper()
	if as == nil {
		as = analyzer.Default(analyzer.Options{})
	}
	return scan.Walk(context.Background(), digest.FromBytes(b), bytes.NewReader(b), as, lim)
}

func names(li *scan.LayerInventory) []string {
	var out []string
	for _, p := range li.Packages {
		out = append(out, p.Name+"@"+p.Version)
	}
	return out
}

func TestWalkCompressionsAndDiffID(t *testing.T) {
	raw := mkTar(t,
		entry{name: "./var/lib/dpkg/status", body: dpkgStatus},
		entry{name: "etc/os-release", body: "ID=debian\nVERSION_ID=\"12\"\n"},
	)
	want := digest.NewDigestFromBytes(digest.SHA256, sha256Sum(raw))
	for _, tc := range []struct {
		name, comp string
		blob       []byte
	}{
		{"plain", scan.CompressionNone, raw},
		{"gzip", scan.CompressionGzip, gz(t, raw)},
		// Concatenated gzip members (RFC 1952 §2.2; pigz, appended layers)
		// are one layer: the split falls inside the dpkg database.
		{"gzip, two members", scan.CompressionGzip, append(gz(t, raw[:700]), gz(t, raw[700:])...)},
		{"zstd", scan.CompressionZstd, zst(t, raw)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			li, err := walk(t, tc.blob, scan.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if li.Compression != tc.comp {
				t.Errorf("compression %s, want %s", li.Compression, tc.comp)
			}
			if li.DiffID != want {
				t.Errorf("diffID %s, want %s", li.DiffID, want)
			}
			if got := names(li); len(got) != 2 || got[0] != "libssl3@3.0.20-1~deb12u2" || got[1] != "zlib1g@1:1.2.13.dfsg-1" {
				t.Errorf("packages %v", got)
			}
			if li.OS == nil || li.OS.ID != "debian" || li.OS.VersionID != "12" {
				t.Errorf("os %+v", li.OS)
			}
			p := li.Packages[0]
			if p.SourceName != "openssl" || p.Path != "var/lib/dpkg/status" || p.Layer != digest.FromBytes(tc.blob) || p.Kind != scan.KindOS {
				t.Errorf("package %+v", p)
			}
			if li.Entries != 2 || li.Bytes != int64(len(raw)) {
				t.Errorf("entries %d bytes %d", li.Entries, li.Bytes)
			}
		})
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestWalkWhiteoutsAndPaths(t *testing.T) {
	li, err := walk(t, mkTar(t,
		entry{name: "usr/bin/.wh.chattr"},
		entry{name: "./etc/skel/.wh..wh..opq"},
		entry{name: "/app//node_modules/../node_modules/x/package.json", body: `{"name":"x","version":"1.0.0"}`},
		entry{name: "../../etc/.wh.passwd"},
	), scan.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(li.Whiteouts) != 2 || li.Whiteouts[0] != "usr/bin/chattr" || li.Whiteouts[1] != "etc/passwd" {
		t.Errorf("whiteouts %v", li.Whiteouts)
	}
	if len(li.OpaqueDirs) != 1 || li.OpaqueDirs[0] != "etc/skel" {
		t.Errorf("opaque %v", li.OpaqueDirs)
	}
	if len(li.Packages) != 1 || li.Packages[0].Path != "app/node_modules/x/package.json" {
		t.Errorf("packages %+v", li.Packages)
	}
}

func TestWalkCorruptKeepsFindings(t *testing.T) {
	raw := mkTar(t,
		entry{name: "var/lib/dpkg/status", body: dpkgStatus},
		entry{name: "big", body: string(bytes.Repeat([]byte("abcdefgh12345678"), 1<<14))},
	)
	z := gz(t, raw)
	corrupt := append([]byte(nil), z...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0xff
	}
	for name, b := range map[string][]byte{
		"corrupt gzip":   corrupt,
		"truncated gzip": z[:len(z)-20],
		"truncated tar":  raw[:len(raw)-3000],
	} {
		t.Run(name, func(t *testing.T) {
			li, err := walk(t, b, scan.Limits{})
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			if len(li.Errors) == 0 || li.Errors[0].Reason != scan.ReasonCorruptLayer {
				t.Fatalf("errors %+v, want CORRUPT_LAYER", li.Errors)
			}
			if len(li.Packages) != 2 {
				t.Errorf("packages found before the damage lost: %v", names(li))
			}
			if li.DiffID != "" {
				t.Error("diffID set for a corrupt layer")
			}
		})
	}
	if li, err := walk(t, []byte("not a layer at all"), scan.Limits{}); err != nil || len(li.Errors) == 0 {
		t.Errorf("garbage: %v %+v", err, li)
	}
}

func TestWalkLimits(t *testing.T) {
	zeros := string(make([]byte, 8<<20))
	many := make([]entry, 50)
	for i := range many {
		many[i] = entry{name: "f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), body: "x"}
	}
	for _, tc := range []struct {
		name  string
		blob  []byte
		lim   scan.Limits
		limit string // "" = entry-level only
	}{
		{"entries", mkTar(t, many...), scan.Limits{MaxEntries: 10}, "MaxEntries"},
		{"layer bytes", mkTar(t, entry{name: "z", body: zeros}), scan.Limits{MaxLayerBytes: 1 << 20}, "MaxLayerBytes"},
		{"ratio", gz(t, mkTar(t, entry{name: "z", body: zeros})), scan.Limits{MaxCompressionRatio: 50}, "MaxCompressionRatio"},
		{"entry bytes", mkTar(t, entry{name: "var/lib/dpkg/status", body: dpkgStatus}), scan.Limits{MaxEntryBytes: 10}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			li, err := walk(t, tc.blob, tc.lim)
			var le *scan.LimitError
			if tc.limit != "" {
				if !errors.As(err, &le) || le.Limit != tc.limit {
					t.Fatalf("err %v, want LimitError %s", err, tc.limit)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if li == nil || len(li.Errors) == 0 || li.Errors[len(li.Errors)-1].Reason != scan.ReasonLimitExceeded {
				t.Fatalf("inventory %+v, want a LIMIT_EXCEEDED error", li)
			}
		})
	}
}

type panicky struct{}

func (panicky) Name() string             { return "panicky" }
func (panicky) Version() string          { return "1" }
func (panicky) Wants(h *tar.Header) bool { return h.Name == "var/lib/dpkg/status" }
func (panicky) Analyze(context.Context, *tar.Header, io.Reader) ([]scan.Package, error) {
	panic("boom")
}

func TestWalkAnalyzerPanicRecovered(t *testing.T) {
	li, err := walk(t, mkTar(t, entry{name: "var/lib/dpkg/status", body: dpkgStatus}), scan.Limits{}, panicky{}, analyzer.Dpkg{})
	if err != nil {
		t.Fatal(err)
	}
	if len(li.Packages) != 2 {
		t.Errorf("dpkg beside a panicking analyzer found %v", names(li))
	}
	if len(li.Errors) != 1 || li.Errors[0].Reason != scan.ReasonAnalyzerPanic || li.Errors[0].Analyzer != "panicky" {
		t.Errorf("errors %+v", li.Errors)
	}
}

// sumRA is a random-access analyzer that reports the sha256 of the entry.
type sumRA struct{}

func (sumRA) Name() string                              { return "sum" }
func (sumRA) Version() string                           { return "1" }
func (sumRA) Wants(h *tar.Header) bool                  { return h.Name == "blob" }
func (sumRA) WantsHead(h *tar.Header, head []byte) bool { return bytes.HasPrefix(head, []byte("HEAD")) }
func (sumRA) Analyze(context.Context, *tar.Header, io.Reader) ([]scan.Package, error) {
	return nil, nil
}
func (sumRA) AnalyzeAt(ctx context.Context, h *tar.Header, r io.ReaderAt, size int64) (scan.Result, error) {
	s := sha256.New()
	if _, err := io.Copy(s, io.NewSectionReader(r, 0, size)); err != nil {
		return scan.Result{}, err
	}
	return scan.Result{Packages: []scan.Package{{Name: "sum", Version: digest.NewDigest(digest.SHA256, s).Encoded()}}}, nil
}

func TestWalkSpoolsToDiskAboveBuffer(t *testing.T) {
	body := "HEAD" + string(bytes.Repeat([]byte("0123456789"), 100_000))
	want := digest.FromString(body).Encoded()
	for _, buf := range []int64{1 << 10, 32 << 20} {
		li, err := walk(t, mkTar(t, entry{name: "blob", body: body}, entry{name: "blob", body: "nope"}),
			scan.Limits{MaxEntryBufferBytes: buf, TempDir: t.TempDir()}, sumRA{})
		if err != nil {
			t.Fatal(err)
		}
		if len(li.Packages) != 1 || li.Packages[0].Version != want {
			t.Errorf("buffer %d: %+v", buf, li.Packages)
		}
	}
}

type failingReader struct{ b []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, f.b[:min(len(f.b), 100)])
	f.b = f.b[n:]
	return n, nil
}

func TestWalkSourceErrorIsNotCacheable(t *testing.T) {
	b := gz(t, mkTar(t, entry{name: "var/lib/dpkg/status", body: dpkgStatus}, entry{name: "x", body: string(make([]byte, 1<<16))}))
	li, err := scan.Walk(context.Background(), "", &failingReader{b[:len(b)/2]}, analyzer.Default(analyzer.Options{}), scan.Limits{})
	if err == nil || li != nil {
		t.Fatalf("source failure gave %v, %+v", err, li)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := scan.Walk(ctx, "", bytes.NewReader(b), nil, scan.Limits{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled walk: %v", err)
	}
}

// watchedReader fails the test if it is read once Walk has returned.
type watchedReader struct {
	r        io.Reader
	returned atomic.Bool
	t        *testing.T
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if w.returned.Load() {
		w.t.Error("source read after Walk returned")
	}
	return w.r.Read(p)
}

// Walk decompresses ahead of the tar reader on another goroutine; whatever
// way it ends (whole layer, corrupt tar midway, a limit), it has stopped
// reading its source when it returns: the tee then reads the rest itself.
func TestWalkStopsReadingAtReturn(t *testing.T) {
	var bb []byte // 1 MiB that gzip cannot shrink (MaxCompressionRatio)
	for i := 0; len(bb) < 1<<20; i++ {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		bb = append(bb, sum[:]...)
	}
	big := string(bb)
	raw := mkTar(t, entry{name: "var/lib/dpkg/status", body: dpkgStatus}, entry{name: "a", body: big}, entry{name: "b", body: big})
	corrupt := append([]byte(nil), raw...)
	bHeader := 512 + (len(dpkgStatus)+511)/512*512 + 512 + len(big)
	copy(corrupt[bHeader:], bytes.Repeat([]byte{0xff}, 512)) // garbage where b's header is
	for name, tc := range map[string]struct {
		b      []byte
		lim    scan.Limits
		reason scan.Reason
	}{
		"whole":   {gz(t, raw), scan.Limits{}, ""},
		"corrupt": {gz(t, corrupt), scan.Limits{}, scan.ReasonCorruptLayer},
		"limit":   {gz(t, raw), scan.Limits{MaxLayerBytes: 3 << 19}, scan.ReasonLimitExceeded},
	} {
		t.Run(name, func(t *testing.T) {
			src := &watchedReader{r: bytes.NewReader(tc.b), t: t}
			li, _ := scan.Walk(context.Background(), "", src, analyzer.Default(analyzer.Options{}), tc.lim)
			src.returned.Store(true)
			if li == nil || len(li.Packages) != 2 {
				t.Fatalf("inventory %+v", li)
			}
			if got := scan.Reason(""); len(li.Errors) > 0 && li.Errors[0].Reason != tc.reason || len(li.Errors) == 0 && tc.reason != got {
				t.Errorf("errors %+v, want %q", li.Errors, tc.reason)
			}
			time.Sleep(20 * time.Millisecond)
		})
	}
}
