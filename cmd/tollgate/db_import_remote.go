package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/proxy/admin"
)

// dbImportRemote is `tollgate db import --admin-url`: a running server
// holds the index's directory lock (Badger), so the CLI cannot open
// --data-dir then; the server imports the paths itself (POST
// /v1/db/import, admin credentials) and queues the rescans the deltas call
// for. Paths are made absolute here and read by the server: run it on the
// server's host (or name paths the server sees).
func dbImportRemote(ctx context.Context, g *globals, cf clientFlags, paths []string, merge bool, results func([]index.UpdateResult) error) error {
	cf.output = "table"
	if cf.timeout <= 0 {
		cf.timeout = 30 * time.Minute
	}
	c, err := newAdminClient(g, &cf)
	if err != nil {
		return err
	}
	abs := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("db import %s: %w", p, err)
		}
		abs = append(abs, a)
	}
	body, err := json.Marshal(admin.DBImportRequest{Paths: abs, Merge: merge})
	if err != nil {
		return err
	}
	b, err := c.do(ctx, http.MethodPost, "/v1/db/import", map[string]string{"Content-Type": "application/json"}, body)
	if err != nil {
		return fmt.Errorf("db import via %s: %w", c.base, err)
	}
	var out admin.DBImportResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("db import via %s: answer: %w", c.base, err)
	}
	if err := results(out.Results); err != nil {
		return err
	}
	// What the local import says on stderr: files that were not advisories
	// (each source of one path carries its path's count), and where the
	// re-matching happens.
	skipped := map[string]int{}
	var origins []string
	for _, r := range out.Results {
		if _, ok := skipped[r.Origin]; !ok {
			origins = append(origins, r.Origin)
		}
		skipped[r.Origin] = max(skipped[r.Origin], r.Skipped)
	}
	for _, o := range origins {
		if skipped[o] > 0 {
			fmt.Fprintf(g.stderr, "%s: %d files skipped (not OSV or secdb)\n", o, skipped[o])
		}
	}
	if len(out.Results) == 0 {
		fmt.Fprintln(g.stderr, "no advisories found under", strings.Join(abs, ", "))
	} else {
		fmt.Fprintln(g.stderr, "the server re-matches the affected images in the background (their coverage lastScannedAt moves as each finishes)")
	}
	return nil
}

// lockedHint explains a directory-lock failure of the local index: a
// running `tollgate serve` holds it.
func lockedHint(err error) error {
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return fmt.Errorf("%w\n(a running `tollgate serve` holds the index: stop it, or go through its admin API: `tollgate db import --admin-url http://ADMIN-ADDR PATH...` imports (and the server re-matches), `tollgate db status --admin-url ...` reports; the server downloads advisories itself every db.refreshInterval)", err)
	}
	return err
}
