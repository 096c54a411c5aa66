//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestKillDuringScans kills a real `tollgate serve` with SIGKILL while the
// scans of freshly pushed images are under way, restarts it on the same data
// directory and checks what a user relies on: every acknowledged push is
// still recorded, every image finishes its scan (no job lost), and the
// findings are the same set as an uninterrupted run with no duplicates.
func TestKillDuringScans(t *testing.T) {
	shared := sharedDir(t)
	dataDir := t.TempDir()
	cfg := writeConfig(t, "")
	first := startServer(t, dataDir, "--config", cfg)
	skipUnlessScanning(t, first)
	first.importAdvisories(t, false, filepath.Join(shared, "vulndata", "go"))

	images := loadSharedImages(t, shared)
	for _, si := range images {
		si.push(t, first.Registry)
	}
	if depth, ok := first.metric(t, "tollgate_scan_queue_depth"); ok {
		t.Logf("scan queue depth at the kill: %v", depth)
	}
	first.kill()

	second := startServer(t, dataDir, "--config", cfg)
	checkRecords(t, second, images, false)

	want := manifests(t, images)
	var refs []string
	for _, m := range want {
		refs = append(refs, m.ref())
	}
	cov := second.waitCoverage(t, refs, scanWait, func(coveredImage) bool { return true })
	var goStatic scanned
	for _, m := range want {
		if ci := cov[m.ref()]; ci.StatusCode != "ACTIVE" || ci.Reason != "SUCCESSFUL" || ci.LastScannedAt == 0 {
			t.Errorf("%s after kill -9 and restart: coverage %s/%s lastScannedAt %v, want ACTIVE/SUCCESSFUL", m.ref(), ci.StatusCode, ci.Reason, ci.LastScannedAt)
		}
		if m.Repo == "shared/go-static" {
			goStatic = m
		}
	}

	// No duplicate findings: one finding per (vulnerability, package, version).
	seen := map[string]int{}
	gotIDs := map[string]bool{}
	for _, f := range second.findingsStatus(t, goStatic.ref(), "all") {
		for _, p := range f.PackageVulnerabilityDetails.VulnerablePackages {
			seen[fmt.Sprintf("%s %s@%s %s", f.PackageVulnerabilityDetails.VulnerabilityID, p.Name, p.Version, f.Status)]++
		}
		for _, id := range f.ids() {
			if strings.HasPrefix(id, "GO-") {
				gotIDs[id] = true
			}
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("finding %s listed %d times after the restart", k, n)
		}
	}
	sameSet(t, "go-static Go advisory ids after kill -9", keys(gotIDs), osvMatches(t, filepath.Join(shared, "images", "go-static.expected", "osv-matches.tsv")))
}
