package policy

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/tollgate-registry/tollgate/index"
	"github.com/tollgate-registry/tollgate/scan"
)

// An UNSUPPORTED_OS image whose language packages were matched (its
// coverage has lastScannedAt) is evaluated on those findings.
func TestUnsupportedOSWithLanguageFindingsIsEvaluated(t *testing.T) {
	w := newWorld()
	img := digest.FromString("arch-with-lodash")
	now := time.Now()
	w.counts[img] = map[scan.Severity]int{scan.SeverityCritical: 1}
	w.covs[img] = &index.Coverage{Image: img, StatusCode: index.StatusInactive, Reason: scan.ReasonUnsupportedOS, LastScannedAt: &now}
	require.Contains(t, denied(t, admit(newPolicy(w, Rule{Severity: scan.SeverityHigh}), "a", img)), "1 CRITICAL")
	require.Zero(t, w.scanCount(img), "no scan started: its findings are current")
}
