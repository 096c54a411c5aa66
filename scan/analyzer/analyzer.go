// Package analyzer holds tollgate's package analyzers: one scan.Analyzer per
// package database or manifest format, each driven one tar entry at a time by
// scan.Walk.
//
// Why not osv-scalibr's extractors: scalibr's OS extractors (dpkg, apk, rpm)
// read /etc/os-release through ScanInput.FS while extracting, i.e. they need
// the whole flattened filesystem, whereas a layer's os-release may sit in
// another layer; and each extractor package pulls scalibr's inventory, vex,
// stats and plugin packages into the build. The formats below are small and
// line- or JSON-based, so tollgate parses them itself, carefully, with
// bounded reads, and with a fuzz target for each parser. RPM databases use
// the same library scalibr's rpm extractor uses (github.com/erikvarga/go-rpmdb).
package analyzer

import (
	"archive/tar"
	"bufio"
	"io"
	"strings"

	"github.com/package-url/packageurl-go"

	"github.com/tollgate-registry/tollgate/scan"
)

// Options configures Default. The zero value works.
type Options struct {
	// MaxNestingDepth caps nested archives (jars in wars); 0 means scan's default.
	MaxNestingDepth int
}

// Default returns every analyzer tollgate runs, in a fixed order.
func Default(opts Options) []scan.Analyzer {
	depth := opts.MaxNestingDepth
	if depth <= 0 {
		depth = scan.DefaultMaxNestingDepth
	}
	return []scan.Analyzer{
		OSRelease{},
		Dpkg{},
		Apk{},
		RPM{},
		Binary{},
		NPM{},
		NPMLock{},
		YarnLock{},
		PNPMLock{},
		Python{},
		PythonArchive{},
		PyLock{},
		Composer{},
		DotNet{},
		Gemspec{},
		Java{MaxDepth: depth},
	}
}

// maxTextBytes caps how much of a text metadata file is read (status files of
// big distributions are a few MiB).
const maxTextBytes = 64 << 20

// isRegular reports whether hdr is a regular file.
func isRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA //nolint:staticcheck // old archives
}

// newLineScanner scans r line by line with lines up to 1 MiB.
func newLineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(io.LimitReader(r, maxTextBytes))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	return sc
}

// purl builds a package URL string; qualifiers alternate key, value.
func purl(typ, namespace, name, version string, qualifiers ...string) string {
	if name == "" {
		return ""
	}
	var q packageurl.Qualifiers
	for i := 0; i+1 < len(qualifiers); i += 2 {
		if qualifiers[i+1] != "" {
			q = append(q, packageurl.Qualifier{Key: qualifiers[i], Value: qualifiers[i+1]})
		}
	}
	return packageurl.NewPackageURL(typ, namespace, name, version, q, "").ToString()
}

// langOwned filters paths listed by an OS package database to those that can
// hold language packages or binaries (OSOwned), normalised.
func langOwned(p string) (string, bool) {
	p = scan.CleanPath(p)
	switch {
	case strings.Contains(p, ".dist-info"), strings.Contains(p, ".egg-info"),
		strings.Contains(p, "node_modules/"), strings.HasSuffix(p, ".jar"),
		strings.HasSuffix(p, ".gemspec"), strings.HasSuffix(p, ".deps.json"),
		strings.Contains(p, "bin/"), strings.Contains(p, "libexec/"):
		return p, true
	}
	return "", false
}
