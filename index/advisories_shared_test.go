package index

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// sharedDir returns ../shared (or $TOLLGATE_SHARED); it skips loudly when
// absent, and fails under CI=true.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TOLLGATE_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "vulndata")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared test material missing at %q (TOLLGATE_SHARED): %v", dir, err)
		}
		t.Skipf("SKIPPING: shared test material missing at %q (set TOLLGATE_SHARED): %v", dir, err)
	}
	return dir
}

func TestImportAllSharedVulndata(t *testing.T) {
	if testing.Short() {
		t.Skip("imports ~13,000 advisory files")
	}
	ctx := context.Background()
	shared := sharedDir(t)
	store := NewAdvisoryStore(openTestDB(t), zerolog.Nop())
	u := &Updater{Store: store, Log: zerolog.Nop()}
	rs, ld, err := u.Import(ctx, filepath.Join(shared, "vulndata"), false)
	require.NoError(t, err)
	counts := map[string]int{}
	for _, r := range rs {
		counts[r.Source] = r.Count
		t.Logf("source %-10s %5d advisories, delta added %d", r.Source, r.Count, len(r.Delta.Added))
	}
	// Go 4,789 records, PyPI 2,661, AlmaLinux 3,237+1,783 files of which 34
	// are in both folders, Alpine: one advisory per CVE across v3.3–v3.11.
	require.Equal(t, 4789, counts["Go"])
	require.Equal(t, 2661, counts["PyPI"])
	require.Equal(t, 3237+1783-34, counts["AlmaLinux"], "34 records are in both folders, byte for byte")
	require.Greater(t, counts["Alpine"], 1000)
	require.Len(t, counts, 4, "sources: %v", counts)

	// What is skipped, and why: Debian DSA/DLA text lists, the nodejs
	// security-wg JSON set, licences and SOURCES.md.
	reasons := map[string]int{}
	for _, s := range ld.Skipped {
		switch {
		case strings.Contains(s.Path, "/npm/"):
			reasons["npm"]++
		case strings.Contains(s.Path, "/debian/"):
			reasons["debian"]++
		default:
			reasons["other"]++
		}
	}
	t.Logf("skipped: %v", reasons)
	require.Equal(t, 469, reasons["npm"], "467 advisories + index.json + LICENSE.md")
	require.Equal(t, 2, reasons["debian"])

	// Stored and served: the secdb's openssl in v3.11 and a Go module.
	got, err := store.ForPackage(ctx, "Alpine:v3.11", "openssl")
	require.NoError(t, err)
	require.NotEmpty(t, got)
	got, err = store.ForPackage(ctx, "Go", "github.com/gin-gonic/gin")
	require.NoError(t, err)
	require.NotEmpty(t, got)
	got, err = store.ForPackage(ctx, "AlmaLinux:9", "openssl-libs")
	require.NoError(t, err)
	require.NotEmpty(t, got)

	// Importing the same data again changes nothing (Go, to keep it short).
	rs, _, err = u.Import(ctx, filepath.Join(shared, "vulndata", "go"), false)
	require.NoError(t, err)
	for _, r := range rs {
		require.True(t, r.Delta.Empty(), "%s: re-import changed %+v", r.Source, r.Delta)
	}
}
