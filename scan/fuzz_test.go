package scan_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/analyzer"
)

// FuzzWalk feeds arbitrary layer bytes (seeds in testdata/fuzz/FuzzWalk:
// gzip, zstd and plain tars with package databases and whiteouts) to Walk
// with every analyzer and small limits: it must never panic, must return an
// inventory for in-memory input, and must never report a path that is not
// normalised.
func FuzzWalk(f *testing.F) {
	raw := mkTar(f,
		entry{name: "var/lib/dpkg/status", body: dpkgStatus},
		entry{name: "app/node_modules/x/package.json", body: `{"name":"x","version":"1.0.0"}`},
		entry{name: "./usr/bin/.wh.chattr"},
		entry{name: "etc/.wh..wh..opq"},
	)
	f.Add(raw)
	f.Add(gz(f, raw))
	f.Add(zst(f, raw))
	as := analyzer.Default(analyzer.Options{})
	f.Fuzz(func(t *testing.T, b []byte) {
		li, err := scan.Walk(context.Background(), "", bytes.NewReader(b), as,
			scan.Limits{MaxEntryBufferBytes: 1 << 10, MaxLayerBytes: 64 << 20, MaxEntries: 1000, TempDir: t.TempDir()})
		if li == nil {
			t.Fatalf("no inventory for in-memory input: %v", err)
		}
		for _, p := range append(append(li.Whiteouts, li.OpaqueDirs...), li.Paths...) {
			if p != scan.CleanPath(p) {
				t.Fatalf("path %q not normalised", p)
			}
		}
	})
}
