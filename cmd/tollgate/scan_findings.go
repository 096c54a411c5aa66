package main

import (
	"context"

	"github.com/tollgate-registry/tollgate/scan"
)

// findingsFor matches inv against the advisory database for `tollgate scan`.
// Stub: the matcher (scan/match) replaces this body; it returns no findings.
func findingsFor(ctx context.Context, g *globals, inv *scan.Inventory) ([]scan.Finding, error) {
	return nil, nil
}
