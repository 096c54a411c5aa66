package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
	"github.com/tollgate-registry/tollgate/scan/match"
)

// findingsFor matches inv against the advisory database in --data-dir
// (<data-dir>/index, opened read-only) for `tollgate scan`. Without advisory
// data it returns no findings and says so on stderr once. Observation times
// are the scan time.
func findingsFor(ctx context.Context, g *globals, inv *scan.Inventory) ([]scan.Finding, error) {
	dir := filepath.Join(g.dataDir, "index")
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		fmt.Fprintf(g.stderr, "tollgate: no advisory database in %s (run `tollgate db update` or `tollgate db import`): packages only\n", g.dataDir)
		return nil, nil
	}
	db, err := index.Open(dir, index.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open advisory database (is `tollgate serve` using %s?): %w", g.dataDir, err)
	}
	defer db.Close()
	fs, err := match.Match(ctx, inv, index.NewAdvisoryStore(db, zerolog.Nop()))
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	for i := range fs {
		fs[i].FirstObservedAt, fs[i].LastObservedAt, fs[i].UpdatedAt = now, now, now
	}
	return fs, nil
}

// failOn is `tollgate scan --fail-on SEVERITY`.
type failOn struct{ severity string }

func (f *failOn) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.severity, "fail-on", "", "exit 1 when an ACTIVE finding at or above this severity exists: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNTRIAGED (any)")
}

// validate checks the flag before any work (a bad value exits 2).
func (f *failOn) validate() error {
	switch scan.Severity(strings.ToUpper(f.severity)) {
	case "", scan.SeverityCritical, scan.SeverityHigh, scan.SeverityMedium, scan.SeverityLow, scan.SeverityInformational, scan.SeverityUntriaged:
		return nil
	}
	return fmt.Errorf("--fail-on %q: want CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNTRIAGED", f.severity)
}

// check returns an exit-code-1 error when fs holds an ACTIVE finding at or
// above the threshold; nil otherwise (or when the flag is unset).
func (f *failOn) check(fs []scan.Finding) error {
	if f.severity == "" {
		return nil
	}
	min := scan.Severity(strings.ToUpper(f.severity))
	n := 0
	for _, x := range fs {
		if x.Status == scan.FindingActive && x.Severity.Rank() >= min.Rank() {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &exitError{code: 1, err: fmt.Errorf("%d active findings at or above %s", n, min)}
}
