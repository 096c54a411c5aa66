package match

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tollgate-registry/tollgate/scan"
)

// BenchmarkMatchGoStatic matches go-static's 14 Go packages against the
// shared Go advisories held in memory (the store's cost is in bench/match).
func BenchmarkMatchGoStatic(b *testing.B) {
	shared := sharedDir(b)
	ld, err := LoadPath(context.Background(), filepath.Join(shared, "vulndata/go/osv"))
	if err != nil {
		b.Fatal(err)
	}
	mem := NewMemory(ld.Sources["Go"])
	inv := goStaticInventory(b, shared)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Match(context.Background(), inv, mem); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateDpkg evaluates one dpkg version against a two-range entry.
func BenchmarkEvaluateDpkg(b *testing.B) {
	af := Affected{Package: AffectedPackage{Ecosystem: "Debian:12", Name: "openssl"}, Ranges: []Range{
		{Type: RangeEcosystem, Events: []Event{{Introduced: "0"}, {Fixed: "3.0.11-1~deb12u1"}, {Introduced: "3.0.13-1"}, {Fixed: "3.0.20-1~deb12u3"}}},
	}}
	for b.Loop() {
		if !af.Evaluate("Debian:12", "3.0.20-1~deb12u2").Affected {
			b.Fatal("not affected")
		}
	}
}

var _ = scan.KindOS
