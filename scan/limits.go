package scan

import (
	"fmt"
	"os"
)

// Limits bound the memory and work of one Walk. The zero value of each field
// means its default (the same defaults as config.Limits); the zero Limits works.
type Limits struct {
	// MaxEntryBufferBytes is how much of one entry is held in memory before it
	// spills to a temporary file (default 32 MiB).
	MaxEntryBufferBytes int64
	// MaxEntryBytes is the largest entry analysed at all (default 1 GiB);
	// larger wanted entries are skipped with a LIMIT_EXCEEDED LayerError.
	MaxEntryBytes int64
	// MaxLayerBytes caps the uncompressed bytes read from one layer (default 64 GiB).
	MaxLayerBytes int64
	// MaxEntries caps tar entries per layer (default 2,000,000).
	MaxEntries int64
	// MaxNestingDepth caps nested archives, e.g. jars in wars (default 8).
	MaxNestingDepth int
	// MaxCompressionRatio caps uncompressed/compressed bytes (default 200);
	// checked once more than 1 MiB has been decompressed.
	MaxCompressionRatio float64
	// TempDir holds spooled entries; empty means os.TempDir().
	TempDir string
}

// Default limits, as in config.Default().
const (
	DefaultMaxEntryBufferBytes = 32 << 20
	DefaultMaxEntryBytes       = 1 << 30
	DefaultMaxLayerBytes       = 64 << 30
	DefaultMaxEntries          = 2_000_000
	DefaultMaxNestingDepth     = 8
	DefaultMaxCompressionRatio = 200
)

// WithDefaults returns l with every zero or negative field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxEntryBufferBytes <= 0 {
		l.MaxEntryBufferBytes = DefaultMaxEntryBufferBytes
	}
	if l.MaxEntryBytes <= 0 {
		l.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if l.MaxLayerBytes <= 0 {
		l.MaxLayerBytes = DefaultMaxLayerBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxNestingDepth <= 0 {
		l.MaxNestingDepth = DefaultMaxNestingDepth
	}
	if l.MaxCompressionRatio <= 1 {
		l.MaxCompressionRatio = DefaultMaxCompressionRatio
	}
	if l.TempDir == "" {
		l.TempDir = os.TempDir()
	}
	return l
}

// LimitError reports a Limits cap that was hit. Walk returns it (with the
// partial inventory) for layer-wide caps; entry-level caps appear only as a
// LIMIT_EXCEEDED LayerError.
type LimitError struct {
	Limit string  // the Limits field name, e.g. "MaxLayerBytes"
	Max   float64 // the cap
	Path  string  // the entry, when the cap is per entry
}

func (e *LimitError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("scan: limit %s (%g) exceeded at %s", e.Limit, e.Max, e.Path)
	}
	return fmt.Sprintf("scan: limit %s (%g) exceeded", e.Limit, e.Max)
}
