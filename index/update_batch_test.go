package index

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// `tollgate db import DIR1 DIR2` is one import: a source both directories
// hold keeps the advisories of both (it kept only DIR2's, and reported
// DIR1's as removed), while a later single import still replaces.
func TestImportBatchUnionsASourceAcrossPaths(t *testing.T) {
	ctx := context.Background()
	dir1, dir2 := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir1, "a.json"), []byte(osvGo1), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir2, "b.json"), []byte(osvGo2), 0o644))
	store := NewAdvisoryStore(openTestDB(t), zerolog.Nop())
	u := &Updater{Store: store, Log: zerolog.Nop()}

	b := u.NewImportBatch(false)
	_, _, err := b.Import(ctx, dir1)
	require.NoError(t, err)
	rs, _, err := b.Import(ctx, dir2)
	require.NoError(t, err)
	require.Equal(t, []string{"GO-2099-0002"}, rs[0].Delta.Added)
	require.Empty(t, rs[0].Delta.Removed)
	srcs, err := store.Sources(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, srcs[0].Count)

	// A new command (a new batch) with DIR2 alone replaces Go with it.
	rs, _, err = u.NewImportBatch(false).Import(ctx, dir2)
	require.NoError(t, err)
	require.Equal(t, []string{"GO-2099-0001"}, rs[0].Delta.Removed)
}
