package scan

import (
	"archive/tar"
	"context"
	"io"
	"sort"
	"strings"
)

// Result is what one analyzer found in one tar entry: packages, and for
// analyzers that know more (os-release, dpkg file lists) layer facts.
type Result struct {
	Packages []Package
	// OSOwned are paths (normalised, no leading slash) that an OS package
	// database says it owns.
	OSOwned []string
	// OS is set by the os-release analyzer.
	OS *OSRelease
}

// EntryAnalyzer is an Analyzer that reports a full Result; Walk calls
// AnalyzeEntry instead of Analyze when an analyzer implements it.
type EntryAnalyzer interface {
	Analyzer
	AnalyzeEntry(ctx context.Context, hdr *tar.Header, r io.Reader) (Result, error)
}

// RandomAccessAnalyzer is an Analyzer that needs random access to the entry
// (RPM databases, zip archives, executables). Walk first reads up to HeadSize
// bytes and asks WantsHead (magic numbers, no buffering yet); only then is the
// entry buffered in memory up to Limits.MaxEntryBufferBytes and spilled to a
// temporary file above it.
type RandomAccessAnalyzer interface {
	Analyzer
	// WantsHead decides from the first min(HeadSize, hdr.Size) bytes.
	WantsHead(hdr *tar.Header, head []byte) bool
	// AnalyzeAt reads the entry through r, size bytes long.
	AnalyzeAt(ctx context.Context, hdr *tar.Header, r io.ReaderAt, size int64) (Result, error)
}

// walkVersion is bumped when Walk records layer facts differently.
const walkVersion = "2"

// HeadSize is how many leading bytes RandomAccessAnalyzer.WantsHead sees.
const HeadSize = 512

// AnalyzersVersion combines the names and versions of as into the layer
// inventory cache key, e.g. "apk@1+dpkg@2+go@1+walk@2". Order does not matter.
func AnalyzersVersion(as []Analyzer) string {
	parts := make([]string, 0, len(as)+1)
	// The walk's own output format (what LayerInventory records besides
	// packages) is part of the key: walk@2 added NonDirs and directories in Paths.
	parts = append(parts, "walk@"+walkVersion)
	for _, a := range as {
		parts = append(parts, a.Name()+"@"+a.Version())
	}
	sort.Strings(parts)
	return strings.Join(parts, "+")
}
